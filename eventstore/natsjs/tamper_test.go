package natsjs_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

// rig is a store on a server with a listener, plus a plain JetStream
// client on the same server: someone with server access, going behind the
// store's back.
type rig struct {
	s      *natsjs.Store
	js     jetstream.JetStream
	stream jetstream.Stream
	tam    *natstest.Tamperer
}

func newRig(t *testing.T, tamperable bool) rig {
	t.Helper()
	ns := startServer(t)
	cfg := natsjs.Config{URLs: []string{ns.ClientURL()}}
	if tamperable {
		cfg = natsjs.TamperableConfig(cfg, 100*time.Millisecond)
	}
	s := open(t, cfg)
	tam := natstest.NewTamperer(t, ns.ClientURL(), "ACTIVITY")
	return rig{s: s, js: tam.JS, stream: tam.Stream, tam: tam}
}

// fill appends n events to stream, one per append, and returns the
// records once their head is recorded (the indexer's, a moment later).
func (r rig) fill(t *testing.T, stream string, n int) []eventstore.Record {
	t.Helper()
	var recs []eventstore.Record
	for _, ev := range events(stream, n) {
		res, err := r.s.Append(ctxFor(t), stream, eventstore.Any, ev)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, res.Records...)
	}
	if h, err := r.s.Head(ctxFor(t), stream); err != nil || h.Revision != recs[n-1].Revision {
		t.Fatalf("head of %q after filling it: %+v, %v", stream, h, err)
	}
	return recs
}

// wantClean fails unless stream verifies against its recorded head and
// ends at want.
func (r rig) wantClean(t *testing.T, stream string, want eventstore.Record) {
	t.Helper()
	head, err := r.s.Verify(ctxFor(t), stream)
	if err != nil {
		t.Fatalf("verify untouched %q: %v", stream, err)
	}
	if head.Revision != want.Revision || head.Hash != want.Hash || head.Position != want.Position {
		t.Fatalf("verify %q ended at %+v, want revision %d at %d", stream, *head, want.Revision, want.Position)
	}
}

// wantBroken fails unless stream fails verification with a chain error at
// revision rev.
func (r rig) wantBroken(t *testing.T, stream string, rev uint64) {
	t.Helper()
	_, err := r.s.Verify(ctxFor(t), stream)
	var ce *eventstore.ChainError
	if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrChainBroken) {
		t.Fatalf("verify tampered %q: %v, want a chain error", stream, err)
	}
	if ce.Revision != rev {
		t.Fatalf("verify tampered %q: %v; want it at revision %d", stream, err, rev)
	}
	t.Logf("caught: %v", err)
}

// publish writes m straight to the JetStream stream (natstest).
func (r rig) publish(t *testing.T, m *nats.Msg) uint64 {
	t.Helper()
	return r.tam.Publish(t, m)
}

// message returns the stored message at seq with its event headers.
func (r rig) message(t *testing.T, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	return r.tam.Message(t, seq)
}

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestDefaultStreamRefusesPurge(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	recs := r.fill(t, "kept", 3)
	if err := r.stream.Purge(ctx); err == nil {
		t.Fatal("server purged the event stream")
	}
	if err := r.stream.Purge(ctx, jetstream.WithPurgeSubject(r.s.EventSubject("kept"))); err == nil {
		t.Fatal("server purged a subject of the event stream")
	}
	// Nor can the stream be reconfigured to allow it.
	cfg := r.stream.CachedInfo().Config
	cfg.DenyPurge = false
	if _, err := r.js.UpdateStream(ctx, cfg); err == nil {
		t.Fatal("server let the stream drop deny-purge")
	}
	r.wantClean(t, "kept", recs[2])
	// Deletes are allowed, for erasure (erase_test.go); one made behind the
	// store's back, leaving no skeleton and no erasure record, breaks the chain.
	if err := r.stream.SecureDeleteMsg(ctx, recs[1].Position); err != nil {
		t.Fatal(err)
	}
	r.wantBroken(t, "kept", 1)
}

func TestTamperForgedRecord(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	control := r.fill(t, "control", 2)
	recs := r.fill(t, "target", 3)
	last := recs[2]
	r.wantClean(t, "target", last)

	// Made-up headers that look right: the next revision, linked to the
	// real head, with a hash the forger could not compute for this data.
	r.publish(t, natstest.Forged(r.s.EventSubject("target"), 3, last.Hash))
	r.wantBroken(t, "target", 3)
	if _, err := eventstore.Verify(ctxFor(t), r.s, "target", nil); !errors.Is(err, eventstore.ErrChainBroken) {
		t.Fatalf("chain alone: %v, want a broken chain", err)
	}

	// A forged record with no event headers at all.
	r.fill(t, "bare", 1)
	r.publish(t, nats.NewMsg(r.s.EventSubject("bare")))
	r.wantBroken(t, "bare", 1)

	r.wantClean(t, "control", control[1])
}

func TestTamperCopiedHeadersAlteredData(t *testing.T) {
	t.Parallel()
	// Tamperable for its short dedupe window: a copy keeps the event id,
	// which the server would drop as a duplicate for two minutes.
	r := newRig(t, true)
	control := r.fill(t, "control", 2)

	// A copy of a real record with other data, appended.
	recs := r.fill(t, "appended", 3)
	m := r.message(t, recs[1].Position)
	r.publish(t, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: []byte(`{"altered":true}`)})
	r.wantBroken(t, "appended", 3)

	// The copy made the next revision, as a forger would: the content no
	// longer matches the hash it carries.
	recs = r.fill(t, "next", 3)
	m = r.message(t, recs[2].Position)
	h := m.Header
	h.Set("Ah-Revision", "3")
	h.Set("Ah-Prev-Hash", recs[2].Hash)
	h.Set(jetstream.MsgIDHeader, "copied-next")
	r.publish(t, &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data})
	r.wantBroken(t, "next", 3)

	r.wantClean(t, "control", control[1])
}

// On a stream that allows deletes (never the product's), a record is
// replaced: deleted, and its headers written again with other data.
func TestTamperReplacedRecord(t *testing.T) {
	t.Parallel()
	r := newRig(t, true)
	control := r.fill(t, "control", 2)
	ctx := ctxFor(t)
	for _, c := range []struct {
		name string
		at   int // which of 4 records is replaced
	}{{"replaced-middle", 1}, {"replaced-newest", 3}} {
		recs := r.fill(t, c.name, 4)
		m := r.message(t, recs[c.at].Position)
		if err := r.stream.DeleteMsg(ctx, recs[c.at].Position); err != nil {
			t.Fatal(err)
		}
		r.publish(t, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: []byte(`{"altered":true}`)})
		r.wantBroken(t, c.name, uint64(c.at))
	}
	// The newest record written again unchanged: the chain is whole, but
	// the record is not where the recorded head says.
	recs := r.fill(t, "rewritten", 2)
	m := r.message(t, recs[1].Position)
	if err := r.stream.DeleteMsg(ctx, recs[1].Position); err != nil {
		t.Fatal(err)
	}
	r.publish(t, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
	r.wantBroken(t, "rewritten", 1)
	r.wantClean(t, "control", control[1])
}

func TestTamperDeletedRecords(t *testing.T) {
	t.Parallel()
	r := newRig(t, true)
	ctx := ctxFor(t)
	control := r.fill(t, "control", 2)

	middle := r.fill(t, "gap", 4)
	if err := r.stream.DeleteMsg(ctx, middle[1].Position); err != nil {
		t.Fatal(err)
	}
	r.wantBroken(t, "gap", 1)

	// The newest record: the rest is a valid chain, only the recorded
	// head tells.
	newest := r.fill(t, "truncated", 4)
	if err := r.stream.DeleteMsg(ctx, newest[3].Position); err != nil {
		t.Fatal(err)
	}
	if head, err := eventstore.Verify(ctx, r.s, "truncated", nil); err != nil || head.Revision != 2 {
		t.Fatalf("chain alone after removing the newest record: %+v, %v; want it to pass at revision 2", head, err)
	}
	r.wantBroken(t, "truncated", 3)

	// The newest records, id-index messages included.
	tail := r.fill(t, "tail", 5)
	for _, rec := range tail[2:] {
		idx, err := r.stream.GetLastMsgForSubject(ctx, r.s.IDSubject(rec.ID))
		if err != nil {
			t.Fatal(err)
		}
		for _, seq := range []uint64{rec.Position, idx.Sequence} {
			if err := r.stream.SecureDeleteMsg(ctx, seq); err != nil {
				t.Fatal(err)
			}
		}
	}
	r.wantBroken(t, "tail", 2)

	// Every record: the stream is gone, its head is not.
	gone := r.fill(t, "gone", 2)
	if err := r.stream.Purge(ctx, jetstream.WithPurgeSubject(r.s.EventSubject("gone"))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Read(ctx, "gone", 0, 10); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("read purged stream: %v, want ErrNotFound", err)
	}
	r.wantBroken(t, "gone", 0)
	if h, err := r.s.Head(ctx, "gone"); err != nil || h.Revision != gone[1].Revision {
		t.Fatalf("head of the purged stream: %+v, %v", h, err)
	}

	r.wantClean(t, "control", control[1])
}

func TestRecordedHeads(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	if _, err := r.s.Head(ctx, "none"); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("head of a stream never written: %v, want ErrNotFound", err)
	}
	if _, err := r.s.Verify(ctx, "none"); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("verify a stream never written: %v, want ErrNotFound", err)
	}
	want := map[string]eventstore.Record{}
	for i := range 5 {
		name := fmt.Sprintf("stream %d.*>", i)
		res, err := r.s.Append(ctx, name, eventstore.NoStream, events(name, 1+i)...)
		if err != nil {
			t.Fatal(err)
		}
		want[name] = res.Records[i]
		h, err := r.s.Head(ctx, name)
		if err != nil || h.Revision != uint64(i) || h.Hash != res.Records[i].Hash || h.Position != res.Records[i].Position || h.Stream != name {
			t.Fatalf("head of %q after the append: %+v, %v; want %+v", name, h, err, res.Records[i])
		}
	}
	got := map[string]eventstore.Head{}
	if err := r.s.Heads(ctx, func(h eventstore.Head) error { got[h.Stream] = h; return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Heads gave %d heads, want %d", len(got), len(want))
	}
	for name, rec := range want {
		if h := got[name]; h.Revision != rec.Revision || h.Hash != rec.Hash || h.Position != rec.Position {
			t.Fatalf("Heads: %q at %+v, want %+v", name, h, rec)
		}
	}
	stop := errors.New("stop")
	if err := r.s.Heads(ctx, func(eventstore.Head) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("Heads with a failing callback: %v", err)
	}

	// A deleted head key is tampering: this package never deletes one.
	kv, err := r.js.KeyValue(ctx, "ACTIVITY_HEADS")
	if err != nil {
		t.Fatal(err)
	}
	victim := "stream 2.*>"
	if err := kv.Delete(ctx, r.s.HeadSubject(victim)[len("$KV.ACTIVITY_HEADS."):]); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Head(ctx, victim); !errors.Is(err, eventstore.ErrChainBroken) {
		t.Fatalf("head after its key was deleted: %v, want a broken chain", err)
	}
	if _, err := r.s.Verify(ctx, victim); !errors.Is(err, eventstore.ErrChainBroken) {
		t.Fatalf("verify after the head key was deleted: %v, want a broken chain", err)
	}
	n := 0
	err = r.s.Heads(ctx, func(eventstore.Head) error { n++; return nil })
	var ce *eventstore.ChainError
	if !errors.As(err, &ce) || ce.Stream != victim || n != len(want)-1 {
		t.Fatalf("Heads after a head key was deleted: %d heads, %v; want %d and a chain error for %q", n, err, len(want)-1, victim)
	}
}

// An append that went in without its head being recorded (the writer
// stopped in between) gets it recorded when retried, by any process.
func TestRetryRecordsMissingHead(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	evs := events("late", 3)
	first, err := r.s.Append(ctx, "late", eventstore.NoStream, evs...)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := r.s.Head(ctx, "late"); err != nil || h.Revision != 2 {
		t.Fatalf("head after the append: %+v, %v", h, err)
	}
	// Put the recorded head back to revision 0, as if the write of the
	// newer head had never happened.
	back := nats.NewMsg(r.s.HeadSubject("late"))
	back.Data = fmt.Appendf(nil, `{"stream":"late","revision":0,"hash":%q,"position":%d}`, first.Records[0].Hash, first.Records[0].Position)
	r.publish(t, back)
	if h, err := r.s.Head(ctx, "late"); err != nil || h.Revision != 0 {
		t.Fatalf("head put back: %+v, %v", h, err)
	}
	other := open(t, natsjs.Config{URLs: []string{r.js.Conn().ConnectedUrl()}})
	again, err := other.Append(ctx, "late", eventstore.Any, evs...)
	if err != nil || again.Appended != 0 {
		t.Fatalf("retry: %+v, %v", again, err)
	}
	if h, err := r.s.Head(ctx, "late"); err != nil || h.Revision != 2 || h.Hash != first.Records[2].Hash {
		t.Fatalf("head after the retry: %+v, %v; want revision 2", h, err)
	}
	// And an older head is never written over a newer one.
	if _, err := other.Append(ctx, "late", eventstore.Any, evs[0]); err != nil {
		t.Fatal(err)
	}
	if h, err := r.s.Head(ctx, "late"); err != nil || h.Revision != 2 {
		t.Fatalf("head after retrying the first event: %+v, %v; want revision 2", h, err)
	}
	r.wantClean(t, "late", first.Records[2])
}

func TestLastPosition(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	if p, err := r.s.LastPosition(ctx); err != nil || p != 0 {
		t.Fatalf("empty store: %d, %v; want 0", p, err)
	}
	res, err := r.s.Append(ctx, "a", eventstore.NoStream, events("a", 3)...)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := r.s.LastPosition(ctx); err != nil || p != res.Position() {
		t.Fatalf("after an append: %d, %v; want %d (its last event, not its id index)", p, err, res.Position())
	}
	res, err = r.s.Append(ctx, "b", eventstore.NoStream, events("b", 1)...)
	if err != nil {
		t.Fatal(err)
	}
	// Messages that are not events after the last one, more than
	// LastPosition steps back over before it searches.
	for i := range 12 {
		m := nats.NewMsg(r.s.IDSubject("stray-" + strconv.Itoa(i)))
		m.Data = []byte("{}")
		r.publish(t, m)
	}
	if p, err := r.s.LastPosition(ctx); err != nil || p != res.Position() {
		t.Fatalf("after stray messages: %d, %v; want %d", p, err, res.Position())
	}
}
