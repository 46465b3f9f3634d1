package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/council/activityhistory/audit"

	"github.com/council/activityhistory/eventstore"
)

func verify(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, e := newFlags("verify", getenv, stderr)
	var cfg config
	var target string
	var all bool
	var remote remoteFlags
	fs.StringVar(&target, "target", "", "verify the stream of this targetId")
	fs.BoolVar(&all, "all", false, "verify every stream (direct store access only)")
	remote.bind(e)
	fs.StringVar(&remote.expectHead, "expect-head", "", "with --url: a head saved earlier, REVISION:HASH, that the stream must still hold")
	e.str(&cfg.DataDir, "data-dir", "DATA_DIR", "./data", "data directory of the embedded event store")
	e.str(&cfg.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store URL (empty = embedded)")
	cfg.EventStoreSync, cfg.EventStoreRepl, cfg.LogLevel, cfg.LogFormat = "default", 1, "warn", "text"
	if err := e.parse(args); err != nil {
		return err
	}
	if (target == "") == !all {
		fmt.Fprintln(stderr, "verify: give exactly one of --target ID or --all")
		return errUsage
	}
	if remote.url != "" {
		if all {
			fmt.Fprintln(stderr, "verify: --all needs direct store access; with --url give --target ID")
			return errUsage
		}
		return verifyRemote(ctx, remote, target, stdout, stderr)
	}
	if remote.expectHead != "" {
		fmt.Fprintln(stderr, "verify: --expect-head goes with --url")
		return errUsage
	}
	log := newLogger(cfg, stderr)
	s, err := openStore(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()

	if target != "" {
		return verifyOne(ctx, s, target, stdout)
	}
	return verifyAll(ctx, s, stdout, stderr)
}

// Optional methods of a store, beyond eventstore.Store.
type (
	// headKeeper records every stream's head outside the stream, so that
	// removal of the newest records is found too (natsjs does).
	headKeeper interface {
		Heads(ctx context.Context, fn func(eventstore.Head) error) error
	}
	positioner interface {
		LastPosition(ctx context.Context) (uint64, error)
	}
)

func verifyOne(ctx context.Context, s store, target string, stdout io.Writer) error {
	var expected *eventstore.Head
	var err error
	against := ""
	if hk, ok := s.(audit.Heads); ok {
		expected, err = hk.Head(ctx, target)
		if errors.Is(err, eventstore.ErrNotFound) {
			expected, err = nil, nil
		}
		against = ", checked against its recorded head if any"
	}
	var c eventstore.Chain
	if err == nil {
		c, err = eventstore.VerifyStream(ctx, s, target, expected)
	}
	head := c.Head
	var chainErr *eventstore.ChainError
	if errors.Is(err, eventstore.ErrNotFound) && !errors.As(err, &chainErr) {
		return fmt.Errorf("%w: %q has no records and no recorded head", errNoStream, target)
	}
	if err != nil {
		fmt.Fprintf(stdout, "FAIL %s: %v\n", target, err)
		return errors.New("verification failed")
	}
	fmt.Fprintf(stdout, "OK %s: %d records%s, head %s%s\n", target, head.Revision+1, erasedNote(c.Erased), head.Hash, against)
	return nil
}

// erasedNote says which revisions had their payloads erased, if any.
func erasedNote(revs []uint64) string {
	if len(revs) == 0 {
		return ""
	}
	s := make([]string, len(revs))
	for i, r := range revs {
		s[i] = strconv.FormatUint(r, 10)
	}
	return fmt.Sprintf(" (%d erased: revisions %s)", len(revs), strings.Join(s, ", "))
}

// verifyAll replays every stream once, in global order, checking each
// stream's chain as its records go by, and each stream against its
// recorded head when the store keeps them: a stream must reach its head,
// and a head whose stream has no records left is a failure too.
func verifyAll(ctx context.Context, s store, stdout, stderr io.Writer) error {
	p, ok := s.(positioner)
	if !ok {
		return errors.New("this event store cannot tell its last position; verify streams one by one with --target")
	}
	failed := map[string]error{}
	fail := func(stream string, err error) {
		if _, dup := failed[stream]; !dup {
			failed[stream] = err
			fmt.Fprintf(stdout, "FAIL %s: %v\n", stream, err)
		}
	}
	// Heads before the position: every head recorded by then is of a
	// record at or before it.
	var recorded map[string]eventstore.Head
	if hk, ok := s.(headKeeper); ok {
		recorded = map[string]eventstore.Head{}
		err := hk.Heads(ctx, func(h eventstore.Head) error {
			recorded[h.Stream] = h
			return nil
		})
		if !errors.Is(err, eventstore.ErrChainBroken) && err != nil {
			return fmt.Errorf("read recorded heads: %w", err)
		}
		for _, e := range chainErrors(err) {
			fail(e.Stream, e)
		}
		fmt.Fprintf(stderr, "%s\n", plural(len(recorded), "recorded head"))
	}
	end, err := p.LastPosition(ctx)
	if err != nil {
		return err
	}
	heads := map[string]*eventstore.Head{}
	chains := map[string]*eventstore.Chain{}
	byRead := map[string]bool{}  // verified by reading the stream: it has erased records
	reached := map[string]bool{} // the record of the recorded head was seen
	erased := 0
	var seen uint64
	last := time.Now()
	done := errors.New("done")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	check := func(r eventstore.Record) {
		if _, bad := failed[r.Stream]; bad || byRead[r.Stream] {
			return
		}
		c := chains[r.Stream]
		if c == nil {
			c = &eventstore.Chain{Stream: r.Stream}
			chains[r.Stream] = c
		}
		var ce *eventstore.ChainError
		err := c.Add([]eventstore.Record{r})
		if errors.As(err, &ce) && r.Revision > ce.Revision {
			// Erased records are gone from the global order: read the
			// stream, which serves them in place.
			var expected *eventstore.Head
			if rh, ok := recorded[r.Stream]; ok {
				expected = &rh
			}
			vc, err := eventstore.VerifyStream(ctx, s, r.Stream, expected)
			if err != nil {
				fail(r.Stream, err)
				return
			}
			byRead[r.Stream], reached[r.Stream], heads[r.Stream] = true, true, vc.Head
			erased += len(vc.Erased)
			return
		}
		if err != nil {
			fail(r.Stream, err)
			return
		}
		h := c.Head
		heads[r.Stream] = h
		if rh, ok := recorded[r.Stream]; ok && rh.Revision == r.Revision {
			if r.Hash != rh.Hash || r.Position != rh.Position {
				fail(r.Stream, &eventstore.ChainError{Stream: r.Stream, Revision: r.Revision,
					Reason: fmt.Sprintf("record (position %d) differs from the recorded head (position %d)", r.Position, rh.Position)})
				return
			}
			reached[r.Stream] = true
		}
	}
	if end > 0 {
		err = s.Subscribe(ctx, 0, func(ctx context.Context, batch []eventstore.Record) error {
			for _, r := range batch {
				if r.Position > end {
					return done
				}
				seen++
				check(r)
				if r.Position == end {
					return done
				}
			}
			if time.Since(last) > time.Second {
				last = time.Now()
				fmt.Fprintf(stderr, "verified %s of %s (position %d of %d)\n", plural(int(seen), "record"), plural(len(heads), "stream"), batch[len(batch)-1].Position, end)
			}
			return nil
		})
		if err != nil && !errors.Is(err, done) {
			return err
		}
	}
	names := make([]string, 0, len(recorded))
	for name := range recorded {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rh := recorded[name]
		_, bad := failed[name]
		switch h := heads[name]; {
		case bad || reached[name]:
		case h == nil:
			fail(name, &eventstore.ChainError{Stream: name, Revision: 0,
				Reason: fmt.Sprintf("no records, but the head is recorded at revision %d", rh.Revision)})
		default:
			fail(name, &eventstore.ChainError{Stream: name, Revision: h.Revision + 1,
				Reason: fmt.Sprintf("records after revision %d are missing (head recorded at %d)", h.Revision, rh.Revision)})
		}
	}
	streams := len(failed)
	unrecorded := 0
	for name := range heads {
		if _, bad := failed[name]; !bad {
			streams++
		}
		if _, ok := recorded[name]; !ok && recorded != nil {
			unrecorded++
		}
	}
	fmt.Fprintf(stderr, "verified %s in %s\n", plural(int(seen), "record"), plural(streams, "stream"))
	if erased > 0 {
		fmt.Fprintf(stderr, "%s erased by erasure records (payloads removed, chains intact)\n", plural(erased, "record"))
	}
	if unrecorded > 0 {
		// Written before heads were kept, or the writer stopped between
		// the append and the head update: checked by their chain alone.
		fmt.Fprintf(stderr, "%s no recorded head; their chains were checked\n", plural(unrecorded, "stream")+map[bool]string{true: " has", false: " have"}[unrecorded == 1])
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %s failed verification", len(failed), plural(streams, "stream"))
	}
	fmt.Fprintf(stdout, "OK all %s\n", plural(streams, "stream"))
	return nil
}

// errNoStream is a --target that names no stream: exit 2, not 1, so that a
// typo is told apart from a failed verification.
var errNoStream = errors.New("no such stream")

// plural is "1 stream", "2 streams".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// chainErrors lists the chain errors in err, which may be joined.
func chainErrors(err error) []*eventstore.ChainError {
	var out []*eventstore.ChainError
	var ce *eventstore.ChainError
	switch e := err.(type) {
	case nil:
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			out = append(out, chainErrors(inner)...)
		}
	default:
		if errors.As(err, &ce) {
			out = append(out, ce)
		}
	}
	return out
}
