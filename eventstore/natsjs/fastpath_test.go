package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

// waitIndexed waits until id has an id-index entry and returns it.
func waitIndexed(t *testing.T, url string, s *natsjs.Store, id string) map[string]any {
	t.Helper()
	for {
		if e := idIndex(t, url, s, id); e != nil {
			return e
		}
		select {
		case <-ctxFor(t).Done():
			t.Fatalf("%s never indexed", id)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// idIndex returns the id-index entry of id, nil when there is none.
func idIndex(t *testing.T, url string, s *natsjs.Store, id string) map[string]any {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctxFor(t), "ACTIVITY")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctxFor(t), s.IDSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var e map[string]any
	if err := json.Unmarshal(m.Data, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// A writer that stops after storing an event, with no indexer running:
// the indexer of another process writes the entry, after which the id is
// refused in other streams beyond the duplicate window.
func TestRepairerIndexesCrashedAppend(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	url := ns.ClientURL()
	// A short duplicate window, so that only the index can refuse the id.
	cfg := natsjs.TamperableConfig(natsjs.Config{URLs: []string{url}}, 100*time.Millisecond)
	ctx := ctxFor(t)
	crashed := open(t, natsjs.WithoutRepairer(cfg))
	if _, err := crashed.Append(ctx, "crash", eventstore.NoStream, events("before", 1)...); err != nil {
		t.Fatal(err)
	}
	ev := events("crash", 1)[0]
	rec, err := crashed.AppendUnindexed(ctx, "crash", ev)
	if err != nil {
		t.Fatal(err)
	}
	crashed.Close()
	if e := idIndex(t, url, crashed, ev.ID); e != nil {
		t.Fatalf("index entry before any repair: %v", e)
	}

	s := open(t, cfg)
	e := waitIndexed(t, url, s, ev.ID)
	for s.Indexed() < 2 && ctx.Err() == nil { // counted after the ack
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.Indexed(); n != 2 {
		t.Fatalf("indexer wrote %d entries, want 2 (the crashed store's two events)", n)
	}
	if e["stream"] != "crash" || e["seq"] != float64(rec.Position) || e["revision"] != float64(1) {
		t.Fatalf("index entry %v, want stream crash, revision 1, seq %d", e, rec.Position)
	}
	time.Sleep(300 * time.Millisecond) // past the duplicate window
	if _, err := s.Append(ctx, "crash-other", eventstore.Any, ev); !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Fatalf("crashed event's id in another stream: %v, want ErrDuplicateID", err)
	}
	if _, err := s.Read(ctx, "crash-other", 0, 10); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("read the refused stream: %v, want ErrNotFound", err)
	}
	res, err := s.Append(ctx, "crash", eventstore.Any, ev)
	if err != nil || res.Appended != 0 || res.Records[0].Position != rec.Position || res.Records[0].Hash != rec.Hash {
		t.Fatalf("retry of the crashed event: %+v, %v; want its record at %d", res, err, rec.Position)
	}
	if _, err := s.Verify(ctx, "crash"); err != nil {
		t.Fatal(err)
	}
	if n := s.IndexConflicts(); n != 0 {
		t.Fatalf("%d index conflicts", n)
	}
}

// A retry of an append that stopped before its index entry, with no
// indexer anywhere: found as the stream's head, within the duplicate
// window and past it, and indexed then.
func TestRetryAfterCrashBeforeIndex(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	url := ns.ClientURL()
	cfg := natsjs.WithoutRepairer(natsjs.TamperableConfig(natsjs.Config{URLs: []string{url}}, 100*time.Millisecond))
	ctx := ctxFor(t)
	crashed := open(t, cfg)
	for _, c := range []struct {
		name  string
		pause time.Duration
	}{{"within-window", 0}, {"past-window", 300 * time.Millisecond}} {
		ev := events(c.name, 1)[0]
		rec, err := crashed.AppendUnindexed(ctx, c.name, ev)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(c.pause)
		s := open(t, cfg) // another process: nothing cached
		res, err := s.Append(ctx, c.name, eventstore.Any, ev)
		if err != nil || res.Appended != 0 || res.Records[0].Position != rec.Position || res.Records[0].RecordedAt.IsZero() {
			t.Fatalf("%s: retry %+v, %v; want the stored record at %d", c.name, res, err, rec.Position)
		}
		if e := idIndex(t, url, s, ev.ID); e == nil || e["seq"] != float64(rec.Position) {
			t.Fatalf("%s: index entry after the retry: %v", c.name, e)
		}
		if _, err := s.Append(ctx, c.name+"-other", eventstore.Any, ev); !errors.Is(err, eventstore.ErrDuplicateID) {
			t.Fatalf("%s: id in another stream: %v, want ErrDuplicateID", c.name, err)
		}
		if h, err := s.Verify(ctx, c.name); err != nil || h.Revision != 0 {
			t.Fatalf("%s: verify %+v, %v", c.name, h, err)
		}
		other := ev
		other.Data = []byte(`{"other":true}`)
		if _, err := s.Append(ctx, c.name, eventstore.Any, other); !errors.Is(err, eventstore.ErrDuplicateID) {
			t.Fatalf("%s: id with other data: %v, want ErrDuplicateID", c.name, err)
		}
	}
}

// One id appended at once to several new streams, through one process and
// through two, with single-event appends as publishes and as batches: exactly one append records it, the others get
// ErrDuplicateID, and the whole stream holds it once.
func TestSameIDToNewStreamsAtOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		stores func(t *testing.T) []*natsjs.Store
	}{
		{"embedded", func(t *testing.T) []*natsjs.Store { return []*natsjs.Store{openEmbedded(t)} }},
		{"two-processes", func(t *testing.T) []*natsjs.Store {
			url := startServer(t).ClientURL()
			return []*natsjs.Store{open(t, natsjs.Config{URLs: []string{url}}), open(t, natsjs.Config{URLs: []string{url}})}
		}},
		{"cluster", func(t *testing.T) []*natsjs.Store {
			c := startCluster(t)
			return []*natsjs.Store{openCluster(t, c), open(t, natsjs.Config{URLs: c.urls(), Replicas: 3})}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			stores := c.stores(t)
			sameIDRace(t, stores, 40, 8)
		})
	}
}

func sameIDRace(t *testing.T, stores []*natsjs.Store, rounds, writers int) {
	ctx := ctxFor(t)
	for round := range rounds {
		id := fmt.Sprintf("contested-%d", round)
		ev := eventstore.Event{ID: id, Type: "TestEvent", Data: []byte(`{"round":` + fmt.Sprint(round) + `}`)}
		errs := make([]error, writers)
		var start, done sync.WaitGroup
		start.Add(1)
		for w := range writers {
			done.Go(func() {
				start.Wait()
				_, errs[w] = stores[w%len(stores)].Append(ctx, fmt.Sprintf("claim-%d-%d", round, w), eventstore.Any, ev)
			})
		}
		start.Done()
		done.Wait()
		won := -1
		for w, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: writers %d and %d both recorded %s", round, won, w, id)
			case err == nil:
				won = w
			case !errors.Is(err, eventstore.ErrDuplicateID):
				t.Fatalf("round %d writer %d: %v, want ErrDuplicateID", round, w, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: nobody recorded %s (%v)", round, id, errs)
		}
		for w := range writers {
			_, err := stores[0].Read(ctx, fmt.Sprintf("claim-%d-%d", round, w), 0, 10)
			if w != won && !errors.Is(err, eventstore.ErrNotFound) {
				t.Fatalf("round %d: loser %d's stream: %v, want ErrNotFound", round, w, err)
			}
		}
	}
	// Every event in the store, each id once.
	last, err := stores[0].LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	stop := errors.New("at the end")
	err = stores[0].Subscribe(ctx, 0, func(_ context.Context, batch []eventstore.Record) error {
		for _, r := range batch {
			seen[r.ID]++
			if r.Position >= last {
				return stop
			}
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("scan: %v", err)
	}
	for round := range rounds {
		if n := seen[fmt.Sprintf("contested-%d", round)]; n != 1 {
			t.Fatalf("contested-%d is recorded %d times", round, n)
		}
	}
	if len(seen) != rounds {
		t.Fatalf("%d ids in the store, want %d", len(seen), rounds)
	}
	for _, s := range stores {
		if n := s.IndexConflicts(); n != 0 {
			t.Fatalf("%d index conflicts", n)
		}
	}
}

// The indexer saves how far it has got in the heads bucket, where Heads
// does not take it for a head; a store opened later finds an unindexed
// event written after the checkpoint.
func TestRepairerCheckpoint(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	url := ns.ClientURL()
	ctx := ctxFor(t)
	s := open(t, natsjs.RepairEvery(natsjs.Config{URLs: []string{url}}, 20*time.Millisecond))
	var last uint64
	for i := range 5 {
		res, err := s.Append(ctx, fmt.Sprintf("cp-%d", i), eventstore.NoStream, events(fmt.Sprintf("cp-%d", i), 1+i%2)...)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position()
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "ACTIVITY_HEADS")
	if err != nil {
		t.Fatal(err)
	}
	for {
		e, err := kv.Get(ctx, natsjs.RepairCheckpointKey)
		if err == nil && string(e.Value()) == fmt.Sprint(last) {
			break
		}
		if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("checkpoint not at %d: %v", last, e)
		case <-time.After(20 * time.Millisecond):
		}
	}
	n := 0
	if err := s.Heads(ctx, func(h eventstore.Head) error { n++; return nil }); err != nil || n != 5 {
		t.Fatalf("Heads beside the checkpoint: %d heads, %v; want 5", n, err)
	}
	if s.Indexed() != 7 || s.IndexConflicts() != 0 {
		t.Fatalf("entries %d, conflicts %d; want 7 and none", s.Indexed(), s.IndexConflicts())
	}

	// An unindexed event after the checkpoint: a second store resumes
	// there and indexes it.
	crashed := open(t, natsjs.WithoutRepairer(natsjs.Config{URLs: []string{url}}))
	ev := events("cp-late", 1)[0]
	s.Close()
	if _, err := crashed.AppendUnindexed(ctx, "cp-late", ev); err != nil {
		t.Fatal(err)
	}
	later := open(t, natsjs.RepairEvery(natsjs.Config{URLs: []string{url}}, 20*time.Millisecond))
	if e := waitIndexed(t, url, later, ev.ID); e["stream"] != "cp-late" {
		t.Fatalf("index entry of the late event: %v", e)
	}
}

// The indexer indexes only events whose content matches their hash: a
// forged message must not claim an id for good.
func TestRepairerSkipsForgedEvents(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	forged := nats.NewMsg(r.s.EventSubject("forged"))
	forged.Header.Set(jetstream.MsgIDHeader, "forged-id")
	forged.Header.Set("Ah-Revision", "0")
	forged.Header.Set("Ah-Type", "TestEvent")
	forged.Header.Set("Ah-Prev-Hash", eventstore.GenesisHash)
	forged.Header.Set("Ah-Hash", hashOf("forged"))
	forged.Data = []byte(`{"forged":true}`)
	r.publish(t, forged)
	// An unindexed event after it: once it is repaired, the forged one
	// has been looked at.
	ev := events("after-forged", 1)[0]
	if _, err := r.s.AppendUnindexed(ctx, "after-forged", ev); err != nil {
		t.Fatal(err)
	}
	for r.s.Indexed() == 0 {
		select {
		case <-ctx.Done():
			t.Fatal("nothing indexed")
		case <-time.After(20 * time.Millisecond):
		}
	}
	url := r.js.Conn().ConnectedUrl()
	if e := idIndex(t, url, r.s, "forged-id"); e != nil {
		t.Fatalf("forged event indexed: %v", e)
	}
	if e := idIndex(t, url, r.s, ev.ID); e == nil {
		t.Fatal("event after the forged one not indexed")
	}
	if n := r.s.Indexed(); n != 1 {
		t.Fatalf("%d entries written, want 1", n)
	}
	// Only the server's duplicate window (10 minutes) still holds the
	// forged message's id; the index never will.
	if _, err := r.s.Append(ctx, "real", eventstore.NoStream, eventstore.Event{ID: "forged-id", Type: "TestEvent", Data: []byte("{}")}); !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Fatalf("append of the forged message's id within the window: %v, want ErrDuplicateID", err)
	}
}

// Heads are recorded from what the indexer read, not per append: twenty
// appends to two streams cost two head writes, made (with the periodic
// flush an hour away) when Head asks, and a checkpoint not at all.
func TestHeadsRecordedOncePerFlush(t *testing.T) {
	t.Parallel()
	ns := startServer(t)
	s := open(t, natsjs.RepairEvery(natsjs.Config{URLs: []string{ns.ClientURL()}}, time.Hour))
	ctx := ctxFor(t)
	var want [2]eventstore.Record
	for i := range 20 {
		res, err := s.Append(ctx, fmt.Sprintf("few-%d", i%2), eventstore.Any, events(fmt.Sprintf("few-%d", i), 1)...)
		if err != nil {
			t.Fatal(err)
		}
		want[i%2] = res.Records[0]
	}
	bucket := natstest.NewTamperer(t, ns.ClientURL(), "KV_ACTIVITY_HEADS").Stream
	writes := func() uint64 {
		info, err := bucket.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info.State.LastSeq
	}
	for s.Indexed() < 20 && ctx.Err() == nil { // the indexer read them all
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if n := writes(); n != 0 {
		t.Fatalf("%d head writes before any was asked for, want none yet", n)
	}
	for i, w := range want {
		h, err := s.Head(ctx, w.Stream)
		if err != nil || h.Revision != 9 || h.Hash != w.Hash || h.Position != w.Position {
			t.Fatalf("head %d: %+v, %v; want revision 9 at %d", i, h, err, w.Position)
		}
	}
	if n := writes(); n != 2 {
		t.Fatalf("%d head writes, want 2 (one per stream)", n)
	}
}
