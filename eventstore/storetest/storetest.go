// Package storetest is the conformance suite of eventstore.Store: every
// adapter runs Run against its own backend.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/council/activityhistory/eventstore"
)

// wait bounds every wait for a subscription or an append.
const wait = 30 * time.Second

// Run runs the suite against stores made by newStore. Every case runs in
// parallel with its own stream names and event ids (a random suffix), so
// newStore may hand every case the same store, or each its own. Records
// returned by Append must equal those Read and Subscribe return, field for
// field, RecordedAt included.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Helper()
	cases := []struct {
		name string
		run  func(t *testing.T, s eventstore.Store, u uniq)
	}{
		{"AppendAndRead", testAppendAndRead},
		{"RecordData", testRecordData},
		{"ReadPages", testReadPages},
		{"ReadMissing", testReadMissing},
		{"ExpectedRevision", testExpectedRevision},
		{"ConcurrentExpected", testConcurrentExpected},
		{"ConcurrentAny", testConcurrentAny},
		{"RetrySameID", testRetrySameID},
		{"SameIDOtherData", testSameIDOtherData},
		{"SameIDOtherStream", testSameIDOtherStream},
		{"MixedRetry", testMixedRetry},
		{"SubscribeFromStart", testSubscribeFromStart},
		{"SubscribeFromMiddle", testSubscribeFromMiddle},
		{"SubscribeLive", testSubscribeLive},
		{"SubscribeCancel", testSubscribeCancel},
		{"SubscribeHandlerError", testSubscribeHandlerError},
		{"SubscribeRestart", testSubscribeRestart},
		{"MaxPayload", testMaxPayload},
		{"StreamNames", testStreamNames},
		{"Limits", testLimits},
		{"InvalidArguments", testInvalidArguments},
		{"Verify", testVerify},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newStore(t), newUniq(t))
		})
	}
}

// uniq names streams and events of one case.
type uniq struct {
	suffix string
	mu     *sync.Mutex
	n      *int
}

func newUniq(t *testing.T) uniq {
	return uniq{suffix: rand.Text()[:12], mu: &sync.Mutex{}, n: new(int)}
}

func (u uniq) stream(name string) string { return name + "-" + u.suffix }

// events makes n events with fresh ids.
func (u uniq) events(n int) []eventstore.Event {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]eventstore.Event, n)
	for i := range out {
		*u.n++
		id := fmt.Sprintf("ev-%s-%d", u.suffix, *u.n)
		out[i] = eventstore.Event{ID: id, Type: "TestEvent", Data: []byte(`{"n":` + fmt.Sprint(*u.n) + `,"id":"` + id + `"}`)}
	}
	return out
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 2*wait)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s eventstore.Store, stream string, exp eventstore.ExpectedRevision, evs ...eventstore.Event) eventstore.AppendResult {
	t.Helper()
	res, err := s.Append(ctxFor(t), stream, exp, evs...)
	if err != nil {
		t.Fatalf("append %d events to %q: %v", len(evs), stream, err)
	}
	if len(res.Records) != len(evs) {
		t.Fatalf("append to %q: %d records for %d events", stream, len(res.Records), len(evs))
	}
	return res
}

func mustRead(t *testing.T, s eventstore.Store, stream string, from uint64, limit int) []eventstore.Record {
	t.Helper()
	recs, err := s.Read(ctxFor(t), stream, from, limit)
	if err != nil {
		t.Fatalf("read %q from %d: %v", stream, from, err)
	}
	return recs
}

func wantErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// sameRecords fails unless got and want hold the same records in order.
func sameRecords(t *testing.T, what string, got, want []eventstore.Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Type != w.Type || g.Stream != w.Stream || g.Revision != w.Revision ||
			g.Position != w.Position || !g.RecordedAt.Equal(w.RecordedAt) || !bytes.Equal(g.Data, w.Data) ||
			g.PrevHash != w.PrevHash || g.Hash != w.Hash {
			t.Fatalf("%s: record %d differs:\n got %+v\nwant %+v", what, i, brief(g), brief(w))
		}
	}
}

func brief(r eventstore.Record) eventstore.Record {
	if len(r.Data) > 64 {
		r.Data = append(r.Data[:64:64], "…"...)
	}
	return r
}

// checkNew checks records just written for evs at revisions from.. on.
func checkNew(t *testing.T, stream string, from uint64, evs []eventstore.Event, recs []eventstore.Record) {
	t.Helper()
	for i, r := range recs {
		ev := evs[i]
		switch {
		case r.ID != ev.ID || r.Type != ev.Type || !bytes.Equal(r.Data, ev.Data):
			t.Fatalf("record %d: id/type/data %q/%q/%q, want %q/%q/%q", i, r.ID, r.Type, r.Data, ev.ID, ev.Type, ev.Data)
		case r.Stream != stream:
			t.Fatalf("record %d: stream %q, want %q", i, r.Stream, stream)
		case r.Revision != from+uint64(i):
			t.Fatalf("record %d: revision %d, want %d", i, r.Revision, from+uint64(i))
		case r.Position == 0:
			t.Fatalf("record %d: position 0", i)
		case i > 0 && r.Position <= recs[i-1].Position:
			t.Fatalf("record %d: position %d not above %d", i, r.Position, recs[i-1].Position)
		case r.RecordedAt.IsZero():
			t.Fatalf("record %d: RecordedAt not set", i)
		}
	}
}

func verifyAll(t *testing.T, s eventstore.Store, stream string, want int) []eventstore.Record {
	t.Helper()
	recs := mustRead(t, s, stream, 0, want+10)
	if len(recs) != want {
		t.Fatalf("stream %q has %d records, want %d", stream, len(recs), want)
	}
	if _, err := eventstore.VerifyRecords(stream, recs, nil); err != nil {
		t.Fatalf("chain of %q: %v", stream, err)
	}
	return recs
}

func testAppendAndRead(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("append")
	first := u.events(3)
	r1 := mustAppend(t, s, st, eventstore.NoStream, first...)
	if r1.Appended != 3 {
		t.Fatalf("Appended = %d, want 3", r1.Appended)
	}
	checkNew(t, st, 0, first, r1.Records)
	if r1.Position() != r1.Records[2].Position {
		t.Fatalf("Position() = %d, want the last record's %d", r1.Position(), r1.Records[2].Position)
	}
	if _, err := eventstore.VerifyRecords(st, r1.Records, nil); err != nil {
		t.Fatalf("chain of appended records: %v", err)
	}
	if r1.Records[0].PrevHash != eventstore.GenesisHash {
		t.Fatalf("first prevHash %q, want genesis", r1.Records[0].PrevHash)
	}

	more := u.events(2)
	r2 := mustAppend(t, s, st, eventstore.At(2), more...)
	checkNew(t, st, 3, more, r2.Records)
	if r2.Records[0].Position <= r1.Records[2].Position {
		t.Fatalf("second append at position %d, not after %d", r2.Records[0].Position, r1.Records[2].Position)
	}
	if r2.Records[0].PrevHash != r1.Records[2].Hash {
		t.Fatal("second append does not chain onto the first")
	}
	all := append(append([]eventstore.Record{}, r1.Records...), r2.Records...)
	sameRecords(t, "read all", mustRead(t, s, st, 0, 100), all)
	sameRecords(t, "read exact limit", mustRead(t, s, st, 0, 5), all)
	sameRecords(t, "read 1..2", mustRead(t, s, st, 1, 2), all[1:3])
	sameRecords(t, "read from last", mustRead(t, s, st, 4, 10), all[4:])
	for _, from := range []uint64{5, 6, 1000} {
		recs, err := s.Read(ctxFor(t), st, from, 10)
		if err != nil || len(recs) != 0 {
			t.Fatalf("read past the end (from %d): %d records, %v; want none, nil", from, len(recs), err)
		}
	}
	// Positions are global: another stream's append comes after.
	other := mustAppend(t, s, u.stream("append-other"), eventstore.Any, u.events(1)...)
	if other.Records[0].Position <= r2.Position() {
		t.Fatalf("position %d in another stream not after %d", other.Records[0].Position, r2.Position())
	}
}

func testRecordData(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("data")
	evs := u.events(4)
	evs[0].Data = []byte{}
	evs[1].Data = []byte{0, 1, 2, 0xff, 0xfe, '\n', '\r', 0}
	evs[2].Data = []byte("ünïcødé 日本語 🙂 \"quoted\"\n")
	evs[3].Type = "Other.Type-v2"
	res := mustAppend(t, s, st, eventstore.NoStream, evs...)
	checkNew(t, st, 0, evs, res.Records)
	sameRecords(t, "read back", verifyAll(t, s, st, 4), res.Records)
}

func testReadPages(t *testing.T, s eventstore.Store, u uniq) {
	st, other := u.stream("pages"), u.stream("pages-other")
	var all []eventstore.Record
	for i := range 12 {
		// Interleave another stream so positions are not contiguous.
		mustAppend(t, s, other, eventstore.Any, u.events(1+i%3)...)
		all = append(all, mustAppend(t, s, st, eventstore.Any, u.events(1+i%4)...).Records...)
	}
	for _, page := range []int{1, 3, 7, 100} {
		var got []eventstore.Record
		for from := uint64(0); ; {
			recs := mustRead(t, s, st, from, page)
			if len(recs) > page {
				t.Fatalf("page of %d holds %d records", page, len(recs))
			}
			got = append(got, recs...)
			if len(recs) < page {
				break
			}
			from += uint64(len(recs))
		}
		sameRecords(t, fmt.Sprintf("pages of %d", page), got, all)
	}
	for from := range uint64(len(all)) {
		sameRecords(t, fmt.Sprintf("read from %d", from), mustRead(t, s, st, from, 2), all[from:min(int(from)+2, len(all))])
	}
}

func testReadMissing(t *testing.T, s eventstore.Store, u uniq) {
	for _, from := range []uint64{0, 5} {
		_, err := s.Read(ctxFor(t), u.stream("missing"), from, 10)
		wantErr(t, err, eventstore.ErrNotFound, fmt.Sprintf("read missing stream from %d", from))
	}
}

func testExpectedRevision(t *testing.T, s eventstore.Store, u uniq) {
	ctx := ctxFor(t)
	st := u.stream("expect")
	_, err := s.Append(ctx, st, eventstore.At(0), u.events(1)...)
	wantErr(t, err, eventstore.ErrConflict, "At(0) on a missing stream")
	mustAppend(t, s, st, eventstore.NoStream, u.events(1)...)
	_, err = s.Append(ctx, st, eventstore.NoStream, u.events(1)...)
	wantErr(t, err, eventstore.ErrConflict, "NoStream on an existing stream")
	mustAppend(t, s, st, eventstore.At(0), u.events(2)...)
	for _, stale := range []uint64{0, 1, 3, 99} {
		_, err = s.Append(ctx, st, eventstore.At(stale), u.events(1)...)
		wantErr(t, err, eventstore.ErrConflict, fmt.Sprintf("At(%d) when the stream is at 2", stale))
	}
	mustAppend(t, s, st, eventstore.At(2), u.events(1)...)
	mustAppend(t, s, st, eventstore.Any, u.events(1)...)
	res := mustAppend(t, s, u.stream("expect-any-new"), eventstore.Any, u.events(1)...)
	if res.Records[0].Revision != 0 {
		t.Fatalf("Any on a new stream: revision %d", res.Records[0].Revision)
	}
	// Failed appends wrote nothing.
	verifyAll(t, s, st, 5)
}

func testConcurrentExpected(t *testing.T, s eventstore.Store, u uniq) {
	const writers, rounds = 8, 5
	st := u.stream("race-exact")
	for round := range rounds {
		exp := eventstore.NoStream
		if round > 0 {
			exp = eventstore.At(uint64(round - 1))
		}
		evs := u.events(writers)
		errs := make([]error, writers)
		var start, done sync.WaitGroup
		start.Add(1)
		for w := range writers {
			done.Go(func() {
				start.Wait()
				_, errs[w] = s.Append(ctxFor(t), st, exp, evs[w])
			})
		}
		start.Done()
		done.Wait()
		won := -1
		for w, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Fatalf("round %d: writers %d and %d both won", round, won, w)
			case err == nil:
				won = w
			case !errors.Is(err, eventstore.ErrConflict):
				t.Fatalf("round %d writer %d: %v, want ErrConflict", round, w, err)
			}
		}
		if won < 0 {
			t.Fatalf("round %d: nobody won", round)
		}
		recs := mustRead(t, s, st, uint64(round), 10)
		if len(recs) != 1 || recs[0].ID != evs[won].ID {
			t.Fatalf("round %d: revision %d holds %v, want the winner's %s", round, round, recs, evs[won].ID)
		}
	}
	verifyAll(t, s, st, rounds)
}

func testConcurrentAny(t *testing.T, s eventstore.Store, u uniq) {
	const writers, appends, per = 8, 5, 2
	st := u.stream("race-any")
	batches := make([][]eventstore.Event, writers*appends)
	for i := range batches {
		batches[i] = u.events(per)
	}
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for a := range appends {
				if _, err := s.Append(ctxFor(t), st, eventstore.Any, batches[w*appends+a]...); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("appends with Any: %v", err)
	}
	recs := verifyAll(t, s, st, writers*appends*per)
	rev := make(map[string]uint64, len(recs))
	for _, r := range recs {
		if _, dup := rev[r.ID]; dup {
			t.Fatalf("event %s recorded twice", r.ID)
		}
		rev[r.ID] = r.Revision
	}
	for _, b := range batches {
		for i, ev := range b {
			r, ok := rev[ev.ID]
			if !ok {
				t.Fatalf("event %s missing", ev.ID)
			}
			if i > 0 && r != rev[b[i-1].ID]+1 {
				t.Fatalf("events of one append are not adjacent: %s at %d after %s at %d", ev.ID, r, b[i-1].ID, rev[b[i-1].ID])
			}
		}
	}
}

func testRetrySameID(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("retry")
	evs := u.events(2)
	first := mustAppend(t, s, st, eventstore.NoStream, evs...)
	for _, exp := range []eventstore.ExpectedRevision{eventstore.NoStream, eventstore.At(0), eventstore.At(7), eventstore.Any} {
		again := mustAppend(t, s, st, exp, evs...)
		if again.Appended != 0 {
			t.Fatalf("retry with expected %d: Appended %d, want 0", exp, again.Appended)
		}
		sameRecords(t, fmt.Sprintf("retry with expected %d", exp), again.Records, first.Records)
	}
	one := mustAppend(t, s, st, eventstore.Any, evs[1])
	sameRecords(t, "retry of the second event alone", one.Records, first.Records[1:])
	verifyAll(t, s, st, 2)
}

func testSameIDOtherData(t *testing.T, s eventstore.Store, u uniq) {
	ctx := ctxFor(t)
	st := u.stream("dup")
	ev := u.events(1)[0]
	mustAppend(t, s, st, eventstore.NoStream, ev)
	otherData, otherType := ev, ev
	otherData.Data = []byte(`{"changed":true}`)
	otherType.Type = "ChangedType"
	for what, e := range map[string]eventstore.Event{"other data": otherData, "other type": otherType} {
		_, err := s.Append(ctx, st, eventstore.Any, e)
		wantErr(t, err, eventstore.ErrDuplicateID, "same id with "+what)
		_, err = s.Append(ctx, st, eventstore.Any, append(u.events(1), e)...)
		wantErr(t, err, eventstore.ErrDuplicateID, "same id with "+what+" after a new event")
	}
	verifyAll(t, s, st, 1)
}

func testSameIDOtherStream(t *testing.T, s eventstore.Store, u uniq) {
	ev := u.events(1)[0]
	mustAppend(t, s, u.stream("dup-a"), eventstore.NoStream, ev)
	_, err := s.Append(ctxFor(t), u.stream("dup-b"), eventstore.Any, ev)
	wantErr(t, err, eventstore.ErrDuplicateID, "same id, same data, other stream")
	_, err = s.Read(ctxFor(t), u.stream("dup-b"), 0, 10)
	wantErr(t, err, eventstore.ErrNotFound, "read the stream the duplicate was refused for")
}

func testMixedRetry(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("mixed")
	old := u.events(2)
	first := mustAppend(t, s, st, eventstore.NoStream, old...)
	fresh := u.events(2)
	batch := []eventstore.Event{old[0], fresh[0], old[1], fresh[1]}
	res := mustAppend(t, s, st, eventstore.Any, batch...)
	if res.Appended != 2 {
		t.Fatalf("Appended %d, want 2", res.Appended)
	}
	sameRecords(t, "recorded events", []eventstore.Record{res.Records[0], res.Records[2]}, first.Records)
	checkNew(t, st, 2, fresh, []eventstore.Record{res.Records[1], res.Records[3]})
	all := verifyAll(t, s, st, 4)
	sameRecords(t, "new events as read", all[2:], []eventstore.Record{res.Records[1], res.Records[3]})
}

// collect subscribes after `after` and returns the first n records of the
// given streams, checking that every batch is in global order.
func collect(t *testing.T, s eventstore.Store, after uint64, n int, streams ...string) []eventstore.Record {
	t.Helper()
	got, err := subscribeUntil(t, s, after, n, streams...)
	if err != nil {
		t.Fatalf("subscribe after %d: %d of %d records, then %v", after, len(got), n, err)
	}
	return got
}

var errEnough = errors.New("enough records")

func subscribeUntil(t *testing.T, s eventstore.Store, after uint64, n int, streams ...string) ([]eventstore.Record, error) {
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	want := make(map[string]bool, len(streams))
	for _, st := range streams {
		want[st] = true
	}
	var got []eventstore.Record
	last := after
	err := s.Subscribe(ctx, after, func(_ context.Context, batch []eventstore.Record) error {
		if len(batch) == 0 {
			return errors.New("empty batch")
		}
		for _, r := range batch {
			if r.Position <= last {
				return fmt.Errorf("position %d after %d: not in global order", r.Position, last)
			}
			last = r.Position
			if want[r.Stream] {
				got = append(got, r)
			}
			if len(got) == n {
				return errEnough
			}
		}
		return nil
	})
	if errors.Is(err, errEnough) {
		return got, nil
	}
	return got, err
}

func testSubscribeFromStart(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("sub-start")
	recs := mustAppend(t, s, st, eventstore.NoStream, u.events(3)...).Records
	recs = append(recs, mustAppend(t, s, st, eventstore.Any, u.events(2)...).Records...)
	sameRecords(t, "subscribed", collect(t, s, 0, 5, st), recs)
}

func testSubscribeFromMiddle(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("sub-middle")
	recs := mustAppend(t, s, st, eventstore.NoStream, u.events(6)...).Records
	sameRecords(t, "subscribed after revision 2", collect(t, s, recs[2].Position, 3, st), recs[3:])
	sameRecords(t, "subscribed after the last but one", collect(t, s, recs[4].Position, 1, st), recs[5:])
}

func testSubscribeLive(t *testing.T, s eventstore.Store, u uniq) {
	st, marker := u.stream("sub-live"), u.stream("sub-live-marker")
	start := mustAppend(t, s, st, eventstore.NoStream, u.events(2)...).Position()
	type result struct {
		recs []eventstore.Record
		err  error
	}
	live := make(chan struct{})
	var liveOnce sync.Once
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		var got []eventstore.Record
		err := s.Subscribe(ctx, start, func(_ context.Context, batch []eventstore.Record) error {
			for _, r := range batch {
				switch r.Stream {
				case marker:
					liveOnce.Do(func() { close(live) })
				case st:
					got = append(got, r)
					if len(got) == 3 {
						return errEnough
					}
				}
			}
			return nil
		})
		done <- result{got, err}
	}()
	// Once the marker arrives the subscription has caught up and follows.
	mustAppend(t, s, marker, eventstore.NoStream, u.events(1)...)
	select {
	case <-live:
	case r := <-done:
		t.Fatalf("subscription ended before the marker: %v", r.err)
	case <-time.After(wait):
		t.Fatal("marker not seen")
	}
	var want []eventstore.Record
	for range 3 {
		want = append(want, mustAppend(t, s, st, eventstore.Any, u.events(1)...).Records...)
	}
	r := <-done
	if !errors.Is(r.err, errEnough) {
		t.Fatalf("live subscription: %d records, then %v", len(r.recs), r.err)
	}
	sameRecords(t, "live records", r.recs, want)
}

func testSubscribeCancel(t *testing.T, s eventstore.Store, u uniq) {
	pos := mustAppend(t, s, u.stream("sub-cancel"), eventstore.NoStream, u.events(1)...).Position()
	for _, after := range []uint64{0, pos} { // busy catching up, then idle at the end
		ctx, cancel := context.WithCancel(t.Context())
		first := make(chan struct{})
		var once sync.Once
		done := make(chan error, 1)
		go func() {
			done <- s.Subscribe(ctx, after, func(context.Context, []eventstore.Record) error {
				once.Do(func() { close(first) })
				return nil
			})
		}()
		if after == 0 {
			select {
			case <-first:
			case err := <-done:
				t.Fatalf("subscription ended before its first batch: %v", err)
			case <-time.After(wait):
				t.Fatal("no first batch")
			}
		}
		cancel()
		select {
		case err := <-done:
			wantErr(t, err, context.Canceled, fmt.Sprintf("cancelled subscription after %d", after))
		case <-time.After(wait):
			t.Fatalf("subscription after %d did not return on cancel", after)
		}
	}
}

func testSubscribeHandlerError(t *testing.T, s eventstore.Store, u uniq) {
	mustAppend(t, s, u.stream("sub-fail"), eventstore.NoStream, u.events(1)...)
	boom := errors.New("handler failed")
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	calls := 0
	err := s.Subscribe(ctx, 0, func(context.Context, []eventstore.Record) error {
		calls++
		return boom
	})
	wantErr(t, err, boom, "subscription whose handler fails")
	if calls != 1 {
		t.Fatalf("handler called %d times after failing", calls)
	}
}

// testSubscribeRestart plays a projector: it applies records up to a
// checkpoint, stops, and resumes from the checkpoint.
func testSubscribeRestart(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("sub-restart")
	var want []eventstore.Record
	for range 5 {
		want = append(want, mustAppend(t, s, st, eventstore.Any, u.events(2)...).Records...)
	}
	stop := errors.New("stop")
	var applied []eventstore.Record
	var checkpoint uint64
	ctx, cancel := context.WithTimeout(t.Context(), wait)
	defer cancel()
	err := s.Subscribe(ctx, 0, func(_ context.Context, batch []eventstore.Record) error {
		for _, r := range batch {
			if r.Stream == st && len(applied) == 4 {
				return stop
			}
			if r.Stream == st {
				applied = append(applied, r)
			}
			checkpoint = r.Position
		}
		return nil
	})
	wantErr(t, err, stop, "first run")
	rest := collect(t, s, checkpoint, len(want)-len(applied), st)
	sameRecords(t, "records over both runs", append(applied, rest...), want)
}

func testMaxPayload(t *testing.T, s eventstore.Store, u uniq) {
	st := u.stream("big")
	ev := u.events(1)[0]
	ev.Data = make([]byte, eventstore.MaxEventBytes)
	if _, err := rand.Read(ev.Data); err != nil {
		t.Fatal(err)
	}
	res := mustAppend(t, s, st, eventstore.NoStream, ev)
	checkNew(t, st, 0, []eventstore.Event{ev}, res.Records)
	sameRecords(t, "read", verifyAll(t, s, st, 1), res.Records)
	sameRecords(t, "subscribed", collect(t, s, res.Position()-1, 1, st), res.Records)
}

func testStreamNames(t *testing.T, s eventstore.Store, u uniq) {
	names := []string{
		u.stream("a/b c.d*e>f"),
		u.stream("> * . .. / \\ %"),
		u.stream("ünïcødé 日本語 🙂"),
		u.stream(" spaced "),
		u.suffix + strings.Repeat("n", eventstore.MaxStreamNameLen-len(u.suffix)),
		u.suffix + strings.Repeat("é", (eventstore.MaxStreamNameLen-len(u.suffix))/2),
	}
	var want []eventstore.Record
	var before uint64
	for i, name := range names {
		res := mustAppend(t, s, name, eventstore.NoStream, u.events(2)...)
		if i == 0 {
			before = res.Records[0].Position - 1
		}
		for _, r := range res.Records {
			if r.Stream != name {
				t.Fatalf("append to %q: record of stream %q", name, r.Stream)
			}
		}
		sameRecords(t, fmt.Sprintf("read %q", name), verifyAll(t, s, name, 2), res.Records)
		want = append(want, res.Records...)
	}
	sameRecords(t, "subscribed", collect(t, s, before, len(want), names...), want)
}

func testLimits(t *testing.T, s eventstore.Store, u uniq) {
	ctx := ctxFor(t)
	st := u.stream("limits")
	_, err := s.Append(ctx, st, eventstore.Any, u.events(eventstore.MaxEventsPerAppend+1)...)
	wantErr(t, err, eventstore.ErrTooLarge, fmt.Sprintf("%d events", eventstore.MaxEventsPerAppend+1))
	_, err = s.Read(ctx, st, 0, 10)
	wantErr(t, err, eventstore.ErrNotFound, "read after the refused append")

	evs := u.events(eventstore.MaxEventsPerAppend)
	evs[0].ID += "-" + strings.Repeat("i", eventstore.MaxEventIDLen-len(evs[0].ID)-1)
	res := mustAppend(t, s, st, eventstore.NoStream, evs...)
	checkNew(t, st, 0, evs, res.Records)
	verifyAll(t, s, st, eventstore.MaxEventsPerAppend)
}

func testInvalidArguments(t *testing.T, s eventstore.Store, u uniq) {
	ctx := ctxFor(t)
	for _, name := range []string{"", strings.Repeat("x", eventstore.MaxStreamNameLen+1), "bad-\xff-utf8"} {
		_, err := s.Append(ctx, name, eventstore.Any, u.events(1)...)
		wantErr(t, err, eventstore.ErrInvalid, fmt.Sprintf("append to stream %q", name))
		_, err = s.Read(ctx, name, 0, 10)
		wantErr(t, err, eventstore.ErrInvalid, fmt.Sprintf("read stream %q", name))
	}
	st := u.stream("invalid")
	for _, id := range []string{"", strings.Repeat("i", eventstore.MaxEventIDLen+1)} {
		ev := u.events(1)[0]
		ev.ID = id
		_, err := s.Append(ctx, st, eventstore.Any, append(u.events(1), ev)...)
		wantErr(t, err, eventstore.ErrInvalid, fmt.Sprintf("event id of %d bytes", len(id)))
	}
	_, err := s.Read(ctx, st, 0, 10)
	wantErr(t, err, eventstore.ErrNotFound, "read after refused appends")
	mustAppend(t, s, st, eventstore.NoStream, u.events(1)...)
	for _, limit := range []int{0, -1} {
		_, err := s.Read(ctx, st, 0, limit)
		wantErr(t, err, eventstore.ErrInvalid, fmt.Sprintf("read with limit %d", limit))
	}
}

func testVerify(t *testing.T, s eventstore.Store, u uniq) {
	ctx := ctxFor(t)
	st := u.stream("verify")
	var last eventstore.Record
	for i := range 4 {
		recs := mustAppend(t, s, st, eventstore.Any, u.events(1+i)...).Records
		last = recs[len(recs)-1]
	}
	want := eventstore.Head{Stream: st, Revision: last.Revision, Hash: last.Hash, Position: last.Position}
	got, err := eventstore.Verify(ctx, s, st, &want)
	if err != nil {
		t.Fatalf("verify an untouched stream: %v", err)
	}
	if *got != want {
		t.Fatalf("verify ended at %+v, want %+v", *got, want)
	}
	ahead := want
	ahead.Revision++
	_, err = eventstore.Verify(ctx, s, st, &ahead)
	wantErr(t, err, eventstore.ErrChainBroken, "verify against a head beyond the stream")
}
