package main

import (
	"context"
	"fmt"
)

// subcommand runs one of a command's subcommands (`mailslotctl mail list`):
// the usage text for none, for help and, on stderr with a usage error, for
// one it does not know.
func subcommand(ctx context.Context, e env, name, usage string, args []string, cmds map[string]func(context.Context, env, []string) error) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return errUsage
	}
	if run, ok := cmds[args[0]]; ok {
		return run(ctx, e, args[1:])
	}
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	}
	fmt.Fprint(e.stderr, usage)
	return fmt.Errorf("%w: unknown %s command %q", errUsage, name, args[0])
}

// named runs f for the subcommand called name, for commands that share one
// function (`mail retry` and `mail cancel`).
func named(name string, f func(context.Context, env, string, []string) error) func(context.Context, env, []string) error {
	return func(ctx context.Context, e env, args []string) error { return f(ctx, e, name, args) }
}
