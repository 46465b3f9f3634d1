package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/eventstore"
)

// remoteFlags are the flags of replay and verify over the HTTP API.
type remoteFlags struct {
	url, token, expectHead string
}

func (r *remoteFlags) bind(e *envFlags) {
	e.fs.StringVar(&r.url, "url", "", "the service's base URL: replay and verify through its HTTP API")
	e.str(&r.token, "token", "AH_TOKEN", "", "bearer token of an audit group member")
}

func (r remoteFlags) client() *audit.Client {
	return &audit.Client{BaseURL: r.url, Token: r.token}
}

// verifyRemote recomputes a stream's chain from what the service replays.
// Exit codes: 0 verified, 1 verification failed, 2 usage or no stream.
func verifyRemote(ctx context.Context, r remoteFlags, target string, stdout, stderr io.Writer) error {
	var expected *eventstore.Head
	if r.expectHead != "" {
		var err error
		if expected, err = audit.ParseHead(r.expectHead); err != nil {
			fmt.Fprintln(stderr, "verify:", err)
			return errUsage
		}
	}
	res, err := r.client().VerifyRemote(ctx, target, expected)
	var ce *eventstore.ChainError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(stdout, "FAIL %s: revision %d: %s\n", target, ce.Revision, ce.Reason)
		return errors.New("verification failed")
	case errors.Is(err, audit.ErrStreamNotFound):
		fmt.Fprintf(stderr, "verify: %s: %v\n", target, err)
		return fmt.Errorf("%w: %w", errUsage, err)
	case err != nil:
		return err
	case res.Head == nil:
		fmt.Fprintf(stdout, "FAIL %s: the server replays no records\n", target)
		return errors.New("verification failed")
	}
	against := ""
	if expected != nil {
		against = fmt.Sprintf(", holds the expected head %d:%s", expected.Revision, expected.Hash)
	}
	fmt.Fprintf(stdout, "OK %s: %d records recomputed%s, head %d:%s%s\n", target, res.Records, erasedNote(res.Erased), res.Head.Revision, res.Head.Hash, against)
	return nil
}

// replay prints a stream's records as the service replays them.
func replay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var r remoteFlags
	var target, format string
	var from uint64
	r.bind(e)
	fs.StringVar(&target, "target", "", "the targetId whose stream to replay")
	fs.Uint64Var(&from, "from", 0, "first revision to replay")
	fs.StringVar(&format, "format", "table", "ndjson (one record per line, as the API sends it) or table")
	if err := e.parse(args); err != nil {
		return err
	}
	if r.url == "" || target == "" || (format != "ndjson" && format != "table") {
		fmt.Fprintln(stderr, "replay: give --url URL --target ID, and --format ndjson or table")
		return errUsage
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if format == "table" {
		fmt.Fprintln(tw, "REVISION\tPOSITION\tRECORDED AT\tID\tTYPE\tHASH\tPAYLOAD")
	}
	err := r.client().Replay(ctx, target, from, func(_ string, page []audit.WireRecord) error {
		for _, w := range page {
			if format == "ndjson" {
				b, err := json.Marshal(w)
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
				continue
			}
			payload := "kept"
			if w.Erased {
				payload = "erased, digest " + w.Digest
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\n", w.Revision, w.Position, w.RecordedAt.Format("2006-01-02T15:04:05.000Z07:00"), w.ID, w.Type, w.Hash, payload)
		}
		return tw.Flush()
	})
	if errors.Is(err, audit.ErrStreamNotFound) {
		fmt.Fprintf(stderr, "replay: %s: %v\n", target, err)
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return err
}
