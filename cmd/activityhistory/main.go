// Command activityhistory is the one binary of Activity History: the
// service (serve), and the tools around it (token, verify, load).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, errUsage) {
		fmt.Fprintln(os.Stderr, "activityhistory:", err)
	}
	if err != nil {
		os.Exit(exitCode(err))
	}
}

var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, errNoStream) {
		return 2
	}
	return 1
}

const usage = `activityhistory — records every activity against a council entity and serves its history.

Usage:
  activityhistory serve  [flags]   run the service (roles: command, query, projector)
  activityhistory token  [flags]   mint a development JWT
  activityhistory verify [flags]   verify the hash chain of one stream or all of them
                                   (--url: through the HTTP API, recomputing every hash here)
  activityhistory replay [flags]   print a stream's records through the HTTP API
  activityhistory erase  [flags]   erase the payloads of a target's records (--url: through the HTTP API)
  activityhistory load   [flags]   drive a running service with writers and readers; report throughput and latency
  activityhistory rebuild [flags]  rebuild the Redis read model as a new generation while the service serves, then switch to it
  activityhistory dlq list|replay  list or re-drive dead-lettered entity events
  activityhistory help             this text

Run "activityhistory <command> -h" for the flags of a command. Every flag of serve
can also be set by the environment variable named in its help.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if err := runCommand(ctx, args, getenv, stdout, stderr); !errors.Is(err, errHelp) {
		return err
	}
	return nil
}

func runCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "verify":
		return verify(ctx, args[1:], getenv, stdout, stderr)
	case "replay":
		return replay(ctx, args[1:], getenv, stdout, stderr)
	case "erase":
		return erase(ctx, args[1:], getenv, stdout, stderr)
	case "load":
		return load(ctx, args[1:], getenv, stdout, stderr)
	case "rebuild":
		return rebuild(ctx, args[1:], getenv, stderr)
	case "dlq":
		return dlq(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
