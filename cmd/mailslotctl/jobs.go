package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
)

// changeJobs retries or cancels (op) each of ids, printing each job's new
// state, and fails naming the jobs it could not change. what names the
// queue ("image", "mail"); hint turns a store error into its fix.
func changeJobs(ctx context.Context, e env, op, what string, ids []int64,
	change func(ctx context.Context, id int64) (state string, err error), hint func(error) error) error {
	var failed []string
	for _, id := range ids {
		state, err := change(ctx, id)
		if err != nil {
			fmt.Fprintf(e.stderr, "%s job %d: %v\n", what, id, hint(err))
			failed = append(failed, strconv.FormatInt(id, 10))
			continue
		}
		fmt.Fprintf(e.stdout, "%s job %d is %s\n", what, id, state)
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not %s %s jobs %s", op, what, strings.Join(failed, ", "))
	}
	return nil
}
