package natsjs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/eventstore/storetest"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

func open(t testing.TB, cfg natsjs.Config) *natsjs.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsjs.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openEmbedded(t testing.TB) *natsjs.Store {
	t.Helper()
	return open(t, natsjs.Config{DataDir: t.TempDir()})
}

// startServer runs a nats-server with a TCP listener on a free port, the
// way an external server is reached.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	return natstest.StartServer(t)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func events(prefix string, n int) []eventstore.Event {
	out := make([]eventstore.Event, n)
	for i := range out {
		id := prefix + "-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)
		out[i] = eventstore.Event{ID: id, Type: "TestEvent", Data: []byte(`{"id":"` + id + `"}`)}
	}
	return out
}

// Every case gets its own embedded server and data dir.
func TestConformanceEmbedded(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) eventstore.Store { return openEmbedded(t) })
}

// One external server and one store shared by all cases, reached by URL,
// with a non-default stream and subject prefix.
func TestConformanceExternal(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	s := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}, Stream: "EXT_EVENTS", SubjectPrefix: "ext.hist"})
	storetest.Run(t, func(*testing.T) eventstore.Store { return s })
}

// Another process's append leaves this store's cached head stale; the
// server's expected-sequence check must catch it.
func TestTwoStoresOneServer(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	a := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}})
	b := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}})
	ctx := ctxFor(t)

	if _, err := a.Append(ctx, "s", eventstore.NoStream, events("a0", 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Append(ctx, "s", eventstore.At(0), events("b1", 1)...); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Append(ctx, "s", eventstore.At(0), events("a-stale", 1)...); !errors.Is(err, eventstore.ErrConflict) {
		t.Fatalf("append on a stale cached head: %v, want ErrConflict", err)
	}
	if _, err := b.Append(ctx, "s", eventstore.Any, events("b2", 1)...); err != nil {
		t.Fatal(err)
	}
	res, err := a.Append(ctx, "s", eventstore.Any, events("a3", 1)...)
	if err != nil || res.Records[0].Revision != 3 {
		t.Fatalf("Any on a stale cached head: %+v, %v; want revision 3", res, err)
	}

	// Both stores race with Any on one stream.
	var wg sync.WaitGroup
	errs := make(chan error, 2*20)
	for i, s := range []*natsjs.Store{a, b} {
		wg.Go(func() {
			for j := range 20 {
				if _, err := s.Append(ctx, "race", eventstore.Any, events("race-"+string(rune('A'+i))+"-"+strings.Repeat("j", j+1), 2)...); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("racing Any appends: %v", err)
	}
	if _, err := eventstore.Verify(ctx, a, "race", nil); err != nil {
		t.Fatal(err)
	}
	if recs, err := b.Read(ctx, "race", 0, 1000); err != nil || len(recs) != 80 {
		t.Fatalf("race stream: %d records, %v; want 80", len(recs), err)
	}

	// Both stores race to record one id in different streams: one wins.
	for round := range 10 {
		ev := events("contested-"+strings.Repeat("r", round+1), 1)
		var got [2]error
		var wg sync.WaitGroup
		for i, s := range []*natsjs.Store{a, b} {
			wg.Go(func() {
				_, got[i] = s.Append(ctx, "claim-"+string(rune('A'+i)), eventstore.Any, ev...)
			})
		}
		wg.Wait()
		wins := 0
		for _, err := range got {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, eventstore.ErrDuplicateID):
				t.Fatalf("round %d: %v, want ErrDuplicateID for the loser", round, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d stores recorded the id, want 1 (%v)", round, wins, got)
		}
	}
}

func TestReopenKeepsHistory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := ctxFor(t)
	s := open(t, natsjs.Config{DataDir: dir, SyncAlways: true})
	first, err := s.Append(ctx, "kept", eventstore.NoStream, events("k", 3)...)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, natsjs.Config{DataDir: dir})
	recs, err := s.Read(ctx, "kept", 0, 10)
	if err != nil || len(recs) != 3 || recs[2].Hash != first.Records[2].Hash {
		t.Fatalf("after reopen: %d records, %v", len(recs), err)
	}
	again, err := s.Append(ctx, "kept", eventstore.Any, events("k", 3)...)
	if err != nil || again.Appended != 0 || again.Records[1].Position != first.Records[1].Position {
		t.Fatalf("retry after reopen: %+v, %v; want the original records", again, err)
	}
	if _, err := s.Append(ctx, "kept", eventstore.At(2), events("k2", 2)...); err != nil {
		t.Fatal(err)
	}
	head, err := eventstore.Verify(ctx, s, "kept", nil)
	if err != nil || head.Revision != 4 {
		t.Fatalf("verify after reopen: %+v, %v", head, err)
	}
}

func TestAdapterLimits(t *testing.T) {
	t.Parallel()
	s := openEmbedded(t)
	ctx := ctxFor(t)
	big := events("big", 1)
	big[0].Data = make([]byte, eventstore.MaxEventBytes+1)
	if _, err := s.Append(ctx, "limits", eventstore.Any, big...); !errors.Is(err, eventstore.ErrTooLarge) {
		t.Fatalf("event of MaxEventBytes+1: %v, want ErrTooLarge", err)
	}
	for _, ev := range []eventstore.Event{
		{ID: "line\nbreak", Type: "T"},
		{ID: " padded", Type: "T"},
		{ID: "ok-id", Type: ""},
		{ID: "ok-id", Type: "T\r\n"},
	} {
		if _, err := s.Append(ctx, "limits", eventstore.Any, ev); !errors.Is(err, eventstore.ErrInvalid) {
			t.Fatalf("event %q/%q: %v, want ErrInvalid", ev.ID, ev.Type, err)
		}
	}
	if _, err := s.Append(ctx, "limits", eventstore.Any); !errors.Is(err, eventstore.ErrInvalid) {
		t.Fatalf("no events: %v, want ErrInvalid", err)
	}
	// One id twice in a call: the same event once, or a conflict.
	ev := events("twice", 1)[0]
	res, err := s.Append(ctx, "twice", eventstore.NoStream, ev, ev)
	if err != nil || res.Appended != 1 || res.Records[0].Position != res.Records[1].Position {
		t.Fatalf("same event twice in one append: %+v, %v", res, err)
	}
	other := ev
	other.Data = []byte("other")
	if _, err := s.Append(ctx, "twice-b", eventstore.Any, events("new", 1)[0], other, other); !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Fatalf("recorded id again in a batch: %v, want ErrDuplicateID", err)
	}
}

func TestOpenConfig(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	for name, cfg := range map[string]natsjs.Config{
		"embedded without data dir": {},
		"embedded with replicas":    {DataDir: t.TempDir(), Replicas: 3},
		"bad stream name":           {DataDir: t.TempDir(), Stream: "A.B"},
		"bad prefix":                {DataDir: t.TempDir(), SubjectPrefix: "a.*"},
	} {
		if _, err := natsjs.Open(ctx, cfg); !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	_, err := natsjs.Open(ctx, natsjs.Config{URLs: []string{"nats://127.0.0.1:1"}})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("unreachable server: %v, want ErrUnavailable", err)
	}
}

func TestPingAndClose(t *testing.T) {
	t.Parallel()
	s := openEmbedded(t)
	ctx := ctxFor(t)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	if _, err := s.Append(ctx, "p", eventstore.NoStream, events("p", 1)...); err != nil {
		t.Fatal(err)
	}
	got := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		var once sync.Once
		done <- s.Subscribe(ctx, 0, func(context.Context, []eventstore.Record) error {
			once.Do(func() { close(got) })
			return nil
		})
	}()
	select {
	case <-got:
	case err := <-done:
		t.Fatalf("subscription ended early: %v", err)
	case <-ctx.Done():
		t.Fatal("no batch")
	}
	s.Close()
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("subscription on a closed store: %v, want ErrUnavailable", err)
		}
	case <-ctx.Done():
		t.Fatal("subscription did not end on Close")
	}
	if err := s.Ping(ctx); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("ping after close: %v, want ErrUnavailable", err)
	}
	if _, err := s.Append(ctx, "p", eventstore.Any, events("p2", 1)...); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("append after close: %v, want ErrUnavailable", err)
	}
}

// A batch shared by several appends is refused when one of them is stale;
// every append must still land exactly once.
func TestSharedBatchWithStaleAppend(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	a := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}})
	b := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}})
	ctx := ctxFor(t)
	const n = 32
	name := func(i int) string { return "stale-" + strings.Repeat("s", i+1) }
	for i := range n {
		if _, err := a.Append(ctx, name(i), eventstore.NoStream, events(name(i)+"-a", 1)...); err != nil {
			t.Fatal(err)
		}
		// a's cached head of the stream is now behind.
		if _, err := b.Append(ctx, name(i), eventstore.Any, events(name(i)+"-b", 1)...); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range n {
		wg.Go(func() {
			if _, err := a.Append(ctx, name(i), eventstore.Any, events(name(i)+"-c", 2)...); err != nil {
				errs <- err
			}
		})
		wg.Go(func() {
			if _, err := a.Append(ctx, name(i)+"-fresh", eventstore.NoStream, events(name(i)+"-f", 2)...); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("append: %v", err)
	}
	for i := range n {
		for st, want := range map[string]uint64{name(i): 3, name(i) + "-fresh": 1} {
			head, err := eventstore.Verify(ctx, b, st, nil)
			if err != nil || head.Revision != want {
				t.Fatalf("%s: head %+v, %v; want revision %d", st, head, err, want)
			}
		}
	}
}
