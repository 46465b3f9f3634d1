package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/query"
)

// idList is a repeatable --id.
type idList []string

func (l *idList) String() string     { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error { *l = append(*l, v); return nil }

// erase removes the payloads of a target's records, through the HTTP API
// (--url: the token's identity is recorded) or straight in the store.
func erase(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, e := newFlags("erase", getenv, stderr)
	var cfg config
	var target, reason string
	var ids idList
	var remote remoteFlags
	fs.StringVar(&target, "target", "", "the targetId whose records to erase")
	fs.Var(&ids, "id", "an activity id to erase (repeat; none: every record of the target)")
	fs.StringVar(&reason, "reason", "", "why: kept in the stream with who and when")
	remote.bind(e)
	e.str(&cfg.DataDir, "data-dir", "DATA_DIR", "./data", "data directory of the embedded event store")
	e.str(&cfg.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store URL (empty = embedded)")
	e.str(&cfg.TargetIDFormat, "target-id-format", "TARGET_ID_FORMAT", "uuid", "targetId format: uuid or opaque")
	cfg.EventStoreSync, cfg.EventStoreRepl, cfg.LogLevel, cfg.LogFormat = "default", 1, "warn", "text"
	if err := e.parse(args); err != nil {
		return err
	}
	if target == "" || strings.TrimSpace(reason) == "" {
		fmt.Fprintln(stderr, "erase: give --target ID and --reason TEXT (and --id ID… to erase only those)")
		return errUsage
	}
	var res audit.EraseResult
	var err error
	if remote.url != "" {
		res, err = remote.client().Erase(ctx, target, ids, reason)
	} else {
		res, err = eraseInStore(ctx, cfg, target, ids, reason, stderr)
	}
	var bad *activity.ValidationError
	var he *audit.HTTPError
	switch {
	case errors.As(err, &bad):
		fmt.Fprintf(stderr, "erase: %v\n", bad)
		return errUsage
	case errors.Is(err, query.ErrNotFound), errors.Is(err, audit.ErrStreamNotFound):
		return fmt.Errorf("%w: %q has no records", errNoStream, target)
	case errors.As(err, &he) && he.Status < 500:
		fmt.Fprintf(stderr, "erase: %v\n", he)
		return errUsage
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "OK %s: %s erased%s, %d erased before\n", res.TargetID, plural(len(res.Erased), "record"), revisions(res), res.Already)
	return nil
}

func revisions(res audit.EraseResult) string {
	if len(res.Erased) == 0 {
		return ""
	}
	revs := make([]string, len(res.Erased))
	for i, r := range res.Erased {
		revs[i] = fmt.Sprint(r.Revision)
	}
	return " (revisions " + strings.Join(revs, ", ") + ")"
}

// eraseInStore erases with direct store access; the erasure names the
// operating-system user and host as who.
func eraseInStore(ctx context.Context, cfg config, target string, ids []string, reason string, stderr io.Writer) (audit.EraseResult, error) {
	v, err := activity.NewValidator(activity.Rules{TargetIDFormat: activity.TargetIDFormat(cfg.TargetIDFormat)})
	if err != nil {
		return audit.EraseResult{}, fmt.Errorf("TARGET_ID_FORMAT: %w", err)
	}
	s, err := openStore(ctx, cfg, newLogger(cfg, stderr))
	if err != nil {
		return audit.EraseResult{}, err
	}
	defer s.Close()
	key := make([]byte, 32) // cursors sign nothing here
	if _, err := rand.Read(key); err != nil {
		return audit.EraseResult{}, err
	}
	cursors, err := query.NewCursors(key)
	if err != nil {
		return audit.EraseResult{}, err
	}
	svc, err := audit.New(auditStore(s), audit.Options{Cursors: cursors, Validator: v})
	if err != nil {
		return audit.EraseResult{}, err
	}
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	return svc.Erase(ctx, audit.EraseRequest{TargetID: target, IDs: ids, Reason: reason, By: "cli:" + who + "@" + host})
}
