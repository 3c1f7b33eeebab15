package main

import (
	"context"
	"fmt"
)

// subcommand runs one verb of a command (challenge set, properties show…).
type subcommand func(ctx context.Context, e env, args []string) error

// runSubcommand runs the verb args[0] names among verbs, printing usage
// for help and refusing, with usage on stderr, a missing or unknown verb.
func runSubcommand(ctx context.Context, e env, args []string, command, usage string, verbs map[string]subcommand) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	if run, ok := verbs[args[0]]; ok {
		return run(ctx, e, args[1:])
	}
	fmt.Fprint(e.stderr, usage)
	return fmt.Errorf("%w: unknown %s command %q", errUsage, command, args[0])
}
