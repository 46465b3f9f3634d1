package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/council/activityhistory/eventstore"
)

func verify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var cfg config
	var target string
	var all bool
	fs.StringVar(&target, "target", "", "verify the stream of this targetId")
	fs.BoolVar(&all, "all", false, "verify every stream")
	e.str(&cfg.DataDir, "data-dir", "DATA_DIR", "./data", "data directory of the embedded event store")
	e.str(&cfg.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store URL (empty = embedded)")
	cfg.EventStoreSync, cfg.EventStoreRepl, cfg.LogLevel, cfg.LogFormat = "default", 1, "warn", "text"
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	if err := errors.Join(e.errs...); err != nil {
		return err
	}
	if (target == "") == !all {
		fmt.Fprintln(stderr, "verify: give exactly one of --target ID or --all")
		return errUsage
	}
	log := newLogger(cfg, stderr)
	s, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()

	if target != "" {
		head, err := eventstore.Verify(ctx, s, target, nil)
		if err != nil {
			fmt.Fprintf(stdout, "FAIL %s: %v\n", target, err)
			return fmt.Errorf("verification failed")
		}
		fmt.Fprintf(stdout, "OK %s: %d records, head %s\n", target, head.Revision+1, head.Hash)
		return nil
	}
	return verifyAll(ctx, s, stdout, stderr)
}

// verifyAll replays every stream once, in global order, checking each
// stream's chain as its records go by.
func verifyAll(ctx context.Context, s store, stdout, stderr io.Writer) error {
	p, ok := s.(interface {
		LastPosition(ctx context.Context) (uint64, error)
	})
	if !ok {
		return errors.New("this event store cannot tell its last position; verify streams one by one with --target")
	}
	end, err := p.LastPosition(ctx)
	if err != nil {
		return err
	}
	heads := map[string]*eventstore.Head{}
	failed := map[string]error{}
	var seen uint64
	last := time.Now()
	done := errors.New("done")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if end > 0 {
		err = s.Subscribe(ctx, 0, func(ctx context.Context, batch []eventstore.Record) error {
			for _, r := range batch {
				if r.Position > end {
					return done
				}
				seen++
				if _, bad := failed[r.Stream]; bad {
					continue
				}
				h, err := eventstore.VerifyRecords(r.Stream, []eventstore.Record{r}, heads[r.Stream])
				if err != nil {
					failed[r.Stream] = err
					fmt.Fprintf(stdout, "FAIL %s: %v\n", r.Stream, err)
					continue
				}
				heads[r.Stream] = h
				if r.Position == end {
					return done
				}
			}
			if time.Since(last) > time.Second {
				last = time.Now()
				fmt.Fprintf(stderr, "verified %d records of %d streams (position %d of %d)\n", seen, len(heads), batch[len(batch)-1].Position, end)
			}
			return nil
		})
		if err != nil && !errors.Is(err, done) {
			return err
		}
	}
	fmt.Fprintf(stderr, "verified %d records in %d streams\n", seen, len(heads)+len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d streams failed verification", len(failed), len(heads)+len(failed))
	}
	fmt.Fprintf(stdout, "OK all %d streams\n", len(heads))
	return nil
}
