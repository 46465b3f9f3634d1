package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

// personal is the payload of the i-th record: what erasure must remove.
func personal(i int) []byte { return fmt.Appendf(nil, `{"name":"Jane Erasable-%d"}`, i) }

func TestErasePayloads(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	dir := t.TempDir()
	s := open(t, natsjs.Config{DataDir: dir})
	const st = "person"
	var recs []eventstore.Record
	for i := range 4 {
		res, err := s.Append(ctx, st, eventstore.Any, eventstore.Event{ID: fmt.Sprintf("ev-%d", i), Type: "Recorded", Data: personal(i)})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, res.Records...)
	}
	stored, err := s.Read(ctx, st, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ErasePayloads(ctx, []eventstore.Record{stored[0], stored[2]}); err != nil {
		t.Fatal(err)
	}
	// Without the erasure record that names them, the chain is broken.
	if _, err := s.Verify(ctx, st); !errors.Is(err, eventstore.ErrChainBroken) {
		t.Fatalf("erased without an erasure record: %v, want a broken chain", err)
	}
	e := eventstore.Erasure{By: "auditor", At: time.Now().UTC(), Reason: "request"}
	for _, i := range []int{0, 2} {
		e.Records = append(e.Records, eventstore.ErasedRecord{Revision: uint64(i), ID: recs[i].ID, Digest: eventstore.Digest(personal(i))})
	}
	data, _ := json.Marshal(e)
	if _, err := s.Append(ctx, st, eventstore.Any, eventstore.Event{ID: "erasure-1", Type: eventstore.ErasureType, Data: data}); err != nil {
		t.Fatal(err)
	}
	c, err := eventstore.VerifyStream(ctx, s, st, nil)
	if err != nil || !slices.Equal(c.Erased, []uint64{0, 2}) || c.Head.Revision != 4 {
		t.Fatalf("verify after erasure: %+v, %v; want revisions 0 and 2 erased, head 4", c, err)
	}
	if _, err := s.Verify(ctx, st); err != nil {
		t.Fatalf("verify against the recorded head: %v", err)
	}
	// Erasing again changes nothing.
	if err := s.ErasePayloads(ctx, []eventstore.Record{stored[0], stored[2]}); err != nil {
		t.Fatalf("erase again: %v", err)
	}
	// A retry of an erased event finds its id taken, at once: it is not
	// written again, and does not wait for a record that will not come back.
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = s.Append(rctx, st, eventstore.Any, eventstore.Event{ID: "ev-0", Type: "Recorded", Data: personal(0)})
	cancel()
	if !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Fatalf("retry of an erased event: %v, want ErrDuplicateID", err)
	}
	// Reads from any revision, erased ones included, serve skeletons in place.
	for from := range uint64(5) {
		got, err := s.Read(ctx, st, from, 2)
		if err != nil || len(got) == 0 || got[0].Revision != from {
			t.Fatalf("read from %d: %+v, %v", from, got, err)
		}
	}
	got, _ := s.Read(ctx, st, 0, 10)
	for i, r := range got[:4] {
		want := recs[i]
		if r.Hash != want.Hash || r.Position != want.Position || r.ID != want.ID || !r.RecordedAt.Equal(want.RecordedAt) {
			t.Fatalf("revision %d read back as %+v, want the metadata of %+v", i, r, want)
		}
		if r.Erased != (i == 0 || i == 2) || r.Erased && (r.Data != nil || r.Digest != eventstore.Digest(personal(i))) {
			t.Fatalf("revision %d: erased %v, data %q, digest %s", i, r.Erased, r.Data, r.Digest)
		}
	}
	// The bytes are gone from the store's files, not only from reads.
	s.Close()
	for i := range 4 {
		if gone := !natstest.FilesHold(t, dir, personal(i)); gone != (i == 0 || i == 2) {
			t.Fatalf("payload %d on disk: gone %v", i, gone)
		}
	}
}

// A stream created before erasure denies deletes, which the server cannot
// lift: it still opens and verifies, and erasing says why it cannot.
func TestEraseOnStreamDenyingDeletes(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	ns := startServer(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	// The stream as natsjs created it before erasure existed.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "ACTIVITY", Subjects: []string{"ah.ev.>", "ah.id.>"},
		Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute, DenyDelete: true, DenyPurge: true,
		AllowDirect: true, AllowAtomicPublish: true, MaxMsgSize: eventstore.MaxEventBytes + 64<<10}); err != nil {
		t.Fatal(err)
	}
	s := open(t, natsjs.Config{URLs: []string{ns.ClientURL()}})
	res, err := s.Append(ctx, "old", eventstore.Any, eventstore.Event{ID: "old-1", Type: "Recorded", Data: personal(1)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ErasePayloads(ctx, res.Records); !errors.Is(err, natsjs.ErrDeletesDenied) {
		t.Fatalf("erase on a stream denying deletes: %v", err)
	}
	if _, err := eventstore.Verify(ctx, s, "old", nil); err != nil {
		t.Fatal(err)
	}
}

// Records written before chain forms (v1: no Ah-Chain header, the hash
// covers the payload) verify as before, under v2 records that continue
// them, and can be erased too: their links alone then prove them.
func TestV1RecordsVerifyAndErase(t *testing.T) {
	t.Parallel()
	r := newRig(t, false)
	ctx := ctxFor(t)
	const st = "pilot"
	prev := eventstore.GenesisHash
	for i := range 2 {
		ev := eventstore.Event{ID: fmt.Sprintf("v1-%d", i), Type: "Recorded", Data: personal(i)}
		h, err := eventstore.ChainHash(prev, st, uint64(i), ev)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(r.s.EventSubject(st))
		m.Header.Set(jetstream.MsgIDHeader, ev.ID)
		m.Header.Set("Ah-Revision", fmt.Sprint(i))
		m.Header.Set("Ah-Type", ev.Type)
		m.Header.Set("Ah-Prev-Hash", prev)
		m.Header.Set("Ah-Hash", h)
		m.Data = ev.Data
		r.publish(t, m)
		prev = h
	}
	res, err := r.s.Append(ctx, st, eventstore.At(1), eventstore.Event{ID: "v2-2", Type: "Recorded", Data: personal(2)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Records[0].Version != eventstore.ChainV2 || res.Records[0].PrevHash != prev {
		t.Fatalf("appended %+v, want a v2 record linked to the v1 head", res.Records[0])
	}
	recs, err := r.s.Read(ctx, st, 0, 10)
	if err != nil || len(recs) != 3 || recs[0].Version != 0 {
		t.Fatalf("read: %+v, %v", recs, err)
	}
	if _, err := eventstore.Verify(ctx, r.s, st, nil); err != nil {
		t.Fatalf("v1 then v2: %v", err)
	}
	if err := r.s.ErasePayloads(ctx, recs[1:2]); err != nil {
		t.Fatal(err)
	}
	e := eventstore.Erasure{By: "auditor", At: time.Now().UTC(), Reason: "request",
		Records: []eventstore.ErasedRecord{{Revision: 1, ID: "v1-1", Digest: eventstore.Digest(personal(1))}}}
	data, _ := json.Marshal(e)
	if _, err := r.s.Append(ctx, st, eventstore.Any, eventstore.Event{ID: "erasure-v1", Type: eventstore.ErasureType, Data: data}); err != nil {
		t.Fatal(err)
	}
	c, err := eventstore.VerifyStream(ctx, r.s, st, nil)
	if err != nil || !slices.Equal(c.Erased, []uint64{1}) {
		t.Fatalf("v1 record erased: %+v, %v", c, err)
	}
	r.wantClean(t, st, eventstore.Record{Revision: 3, Hash: c.Head.Hash, Position: c.Head.Position})
}
