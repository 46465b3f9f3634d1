// Command ahbench measures the activityhistory binary over HTTP with an
// outside load generator, beside the raw parts underneath it in the same
// run, and prints one table (`make bench`).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/council/activityhistory/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ahbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ahbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("bin", "bin/activityhistory", "the activityhistory binary to measure")
	tools := fs.String("tools", "bin", "directory where vegeta is installed (go install) when missing")
	quick := fs.Bool("quick", false, "tiny volumes: check that every step works, measure nothing")
	activities := fs.Int("activities", 0, "activities preloaded into the read target (default 1,000,000; quick 2,000)")
	duration := fs.Duration("duration", 0, "length of each load run (default 10s; quick 1s)")
	noPG := fs.Bool("no-postgres", false, "skip the PostgreSQL peer even when psql is present")
	work := fs.String("work-dir", "", "keep data and logs here (default: a temp dir, removed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := bench.Full()
	if *quick {
		cfg = bench.Quick()
	}
	if *activities > 0 {
		cfg.Activities = *activities
	}
	if *duration > 0 {
		cfg.Duration = *duration
	}
	cfg.Postgres = cfg.Postgres && !*noPG
	cfg.Bin, cfg.WorkDir, cfg.Log = *bin, *work, stderr
	if _, err := os.Stat(cfg.Bin); err != nil {
		return fmt.Errorf("the binary to measure: %w (make build)", err)
	}
	var err error
	if cfg.Vegeta, err = bench.InstallVegeta(ctx, *tools); err != nil {
		return err
	}
	start := time.Now()
	if err := bench.Run(ctx, cfg, stdout); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "ahbench: done in %s\n", time.Since(start).Round(time.Second))
	return nil
}
