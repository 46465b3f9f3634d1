package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/council/activityhistory/eventstore"
)

// sealed returns n records of one stream, chained from genesis, with
// positions 10, 20, …
func sealed(t *testing.T, stream string, n int) []eventstore.Record {
	t.Helper()
	evs := make([]eventstore.Event, n)
	for i := range evs {
		evs[i] = eventstore.Event{ID: fmt.Sprintf("%s-ev-%d", stream, i), Type: "Created", Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	recs, err := eventstore.Seal(nil, stream, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		recs[i].Position = uint64(10 * (i + 1))
	}
	return recs
}

func headOf(r eventstore.Record) *eventstore.Head {
	return &eventstore.Head{Stream: r.Stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position}
}

// wantBroken fails unless err is a *ChainError at revision rev.
func wantBroken(t *testing.T, err error, rev uint64) {
	t.Helper()
	var ce *eventstore.ChainError
	if !errors.Is(err, eventstore.ErrChainBroken) || !errors.As(err, &ce) {
		t.Fatalf("got %v, want a chain error", err)
	}
	if ce.Revision != rev {
		t.Fatalf("chain error at revision %d (%v), want %d", ce.Revision, err, rev)
	}
}

func TestVerifyRecords(t *testing.T) {
	t.Parallel()
	const st = "target-1"
	good := sealed(t, st, 5)
	head, err := eventstore.VerifyRecords(st, good, nil)
	if err != nil || *head != *headOf(good[4]) {
		t.Fatalf("untouched chain: %+v, %v", head, err)
	}
	// A chain verifies in pieces, each continuing from the last head.
	h2, err := eventstore.VerifyRecords(st, good[:2], nil)
	if err == nil {
		h2, err = eventstore.VerifyRecords(st, good[2:], h2)
	}
	if err != nil || *h2 != *head {
		t.Fatalf("chain in two pieces: %+v, %v", h2, err)
	}

	other := sealed(t, "target-2", 5)
	for _, c := range []struct {
		name   string
		tamper func(r []eventstore.Record) []eventstore.Record
		at     uint64
	}{
		{"altered payload", func(r []eventstore.Record) []eventstore.Record { r[2].Data = []byte(`{"n":99}`); return r }, 2},
		{"payload emptied", func(r []eventstore.Record) []eventstore.Record { r[4].Data = nil; return r }, 4},
		{"altered type", func(r []eventstore.Record) []eventstore.Record { r[1].Type = "Deleted"; return r }, 1},
		{"altered id", func(r []eventstore.Record) []eventstore.Record { r[3].ID = "someone-else"; return r }, 3},
		{"altered hash", func(r []eventstore.Record) []eventstore.Record { r[0].Hash = other[0].Hash; return r }, 0},
		{"rehashed record breaks the next link", func(r []eventstore.Record) []eventstore.Record {
			r[1].Data = []byte(`{"n":"forged"}`)
			r[1].Hash, _ = eventstore.RecordHash(r[1])
			return r
		}, 2},
		{"reordered", func(r []eventstore.Record) []eventstore.Record { r[1], r[2] = r[2], r[1]; return r }, 1},
		{"record from another stream", func(r []eventstore.Record) []eventstore.Record { r[2] = other[2]; return r }, 2},
		{"record of another stream renamed", func(r []eventstore.Record) []eventstore.Record {
			r[2] = other[2]
			r[2].Stream = st
			return r
		}, 2},
		{"duplicated record", func(r []eventstore.Record) []eventstore.Record { return slices.Insert(r, 3, r[2]) }, 3},
		{"middle record removed", func(r []eventstore.Record) []eventstore.Record { return slices.Delete(r, 2, 3) }, 2},
		{"first record removed", func(r []eventstore.Record) []eventstore.Record { return r[1:] }, 0},
		{"revision renumbered", func(r []eventstore.Record) []eventstore.Record {
			r = slices.Delete(r, 2, 3)
			for i := 2; i < len(r); i++ {
				r[i].Revision--
			}
			return r
		}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			recs := c.tamper(slices.Clone(good))
			_, err := eventstore.VerifyRecords(st, recs, nil)
			wantBroken(t, err, c.at)
		})
	}
}

// recordsReader serves Read from a slice of one stream's records, as the
// Store contract says: pages by revision, ErrNotFound for no records.
type recordsReader []eventstore.Record

func (r recordsReader) Read(_ context.Context, _ string, from uint64, limit int) ([]eventstore.Record, error) {
	if len(r) == 0 {
		return nil, eventstore.ErrNotFound
	}
	var out []eventstore.Record
	for _, rec := range r {
		if rec.Revision >= from && len(out) < limit {
			out = append(out, rec)
		}
	}
	return out, nil
}

func TestVerifyAgainstRecordedHead(t *testing.T) {
	t.Parallel()
	const st = "target-1"
	ctx := t.Context()
	// More than one page of Verify's reads.
	recs := sealed(t, st, 2100)
	last := recs[len(recs)-1]

	for name, c := range map[string]struct {
		recs     recordsReader
		expected *eventstore.Head
		at       uint64 // revision of the chain error, unless ok
		ok       bool
	}{
		"no recorded head":                {recs: recs, ok: true},
		"at the recorded head":            {recs: recs, expected: headOf(last), ok: true},
		"ahead of the recorded head":      {recs: recs, expected: headOf(recs[1500]), ok: true},
		"head without position":           {recs: recs, expected: &eventstore.Head{Stream: st, Revision: 3, Hash: recs[3].Hash}, ok: true},
		"truncated tail":                  {recs: recs[:2050], expected: headOf(last), at: 2050},
		"newest record removed":           {recs: recs[:len(recs)-1], expected: headOf(last), at: last.Revision},
		"truncated within the first page": {recs: recs[:10], expected: headOf(last), at: 10},
		"all records gone":                {recs: nil, expected: headOf(last), at: 0},
		"head hash differs":               {recs: recs, expected: &eventstore.Head{Stream: st, Revision: 7, Hash: recs[8].Hash, Position: recs[7].Position}, at: 7},
		"head record written again":       {recs: recs, expected: &eventstore.Head{Stream: st, Revision: 7, Hash: recs[7].Hash, Position: 5}, at: 7},
		"altered record before the head":  {recs: altered(recs, 1200), expected: headOf(last), at: 1200},
		"altered record after the head":   {recs: altered(recs, 2000), expected: headOf(recs[100]), at: 2000},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			head, err := eventstore.Verify(ctx, c.recs, st, c.expected)
			if c.ok {
				if err != nil || *head != *headOf(c.recs[len(c.recs)-1]) {
					t.Fatalf("verify: %+v, %v; want the last record's head", head, err)
				}
				return
			}
			wantBroken(t, err, c.at)
		})
	}

	if _, err := eventstore.Verify(ctx, recordsReader(nil), st, nil); !errors.Is(err, eventstore.ErrNotFound) {
		t.Fatalf("no records, no head: %v, want ErrNotFound", err)
	}
}

func altered(recs []eventstore.Record, rev int) recordsReader {
	out := slices.Clone(recs)
	out[rev].Data = []byte(`{"altered":true}`)
	return out
}

// sealedV1 returns n records in chain form v1, as written before forms
// were told apart (Version 0): their hashes cover the payload bytes.
func sealedV1(t *testing.T, stream string, n int) []eventstore.Record {
	t.Helper()
	prev := eventstore.GenesisHash
	out := make([]eventstore.Record, n)
	for i := range out {
		ev := eventstore.Event{ID: fmt.Sprintf("%s-v1-%d", stream, i), Type: "Created", Data: fmt.Appendf(nil, `{"n":%d}`, i)}
		h, err := eventstore.ChainHash(prev, stream, uint64(i), ev)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = eventstore.Record{ID: ev.ID, Type: ev.Type, Stream: stream, Revision: uint64(i), Data: ev.Data, PrevHash: prev, Hash: h, Position: uint64(i + 1)}
		prev = h
	}
	return out
}

// erase turns recs[revs] into erased records and appends the erasure
// record that names them, as the store and the erase use case do.
func erase(t *testing.T, recs []eventstore.Record, revs ...int) []eventstore.Record {
	t.Helper()
	recs = slices.Clone(recs)
	e := eventstore.Erasure{By: "auditor@example.org", At: time.Unix(1, 0).UTC(), Reason: "request"}
	for _, i := range revs {
		r := &recs[i]
		e.Records = append(e.Records, eventstore.ErasedRecord{Revision: r.Revision, ID: r.ID, Digest: eventstore.Digest(r.Data)})
		r.Erased, r.Digest, r.Data = true, eventstore.Digest(r.Data), nil
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	last := recs[len(recs)-1]
	more, err := eventstore.Seal(headOf(last), last.Stream, []eventstore.Event{{ID: fmt.Sprintf("erasure-%d", len(recs)), Type: eventstore.ErasureType, Data: data}})
	if err != nil {
		t.Fatal(err)
	}
	return append(recs, more...)
}

func TestChainForms(t *testing.T) {
	t.Parallel()
	const st = "target-1"
	v1 := sealedV1(t, st, 3)
	if _, err := eventstore.VerifyRecords(st, v1, nil); err != nil {
		t.Fatalf("v1 records: %v", err)
	}
	// v2 records continue a v1 stream.
	mixed, err := eventstore.Seal(headOf(v1[2]), st, []eventstore.Event{{ID: "v2-3", Type: "Created", Data: []byte(`{"n":3}`)}})
	if err != nil {
		t.Fatal(err)
	}
	mixed = append(slices.Clone(v1), mixed...)
	if mixed[3].Version != eventstore.ChainV2 {
		t.Fatalf("sealed in form %d, want v2", mixed[3].Version)
	}
	if _, err := eventstore.VerifyRecords(st, mixed, nil); err != nil {
		t.Fatalf("v1 then v2: %v", err)
	}
	// A v1 record read as v2, or the reverse, does not verify.
	asV2 := slices.Clone(v1)
	asV2[1].Version = eventstore.ChainV2
	wantBroken(t, verifyErr(st, asV2), 1)
	asV1 := slices.Clone(mixed)
	asV1[3].Version = 0
	wantBroken(t, verifyErr(st, asV1), 3)
}

func verifyErr(st string, recs []eventstore.Record) error {
	_, err := eventstore.VerifyRecords(st, recs, nil)
	return err
}

func TestErasedRecordsVerify(t *testing.T) {
	t.Parallel()
	const st = "target-1"
	good := sealed(t, st, 5)
	erased := erase(t, good, 1, 3)
	c := eventstore.Chain{Stream: st}
	if err := c.Add(erased); err != nil {
		t.Fatalf("erased with an erasure record: %v", err)
	}
	if err := c.End(); err != nil || !slices.Equal(c.Erased, []uint64{1, 3}) {
		t.Fatalf("end: %v, erased %v; want revisions 1 and 3", err, c.Erased)
	}
	// An erased v1 record keeps its place by its links alone.
	v1 := erase(t, sealedV1(t, st, 3), 0)
	if _, err := eventstore.VerifyRecords(st, v1, nil); err != nil {
		t.Fatalf("erased v1 record: %v", err)
	}

	for _, c := range []struct {
		name   string
		tamper func(r []eventstore.Record) []eventstore.Record
		at     uint64
	}{
		{"payload removed without an erasure record", func(r []eventstore.Record) []eventstore.Record {
			r[2].Erased, r[2].Digest, r[2].Data = true, eventstore.Digest(r[2].Data), nil
			return r
		}, 2},
		{"erased record without its erasure record", func(r []eventstore.Record) []eventstore.Record { return r[:5] }, 1},
		{"altered instead of erased", func(r []eventstore.Record) []eventstore.Record {
			r[2].Data = []byte(`{"n":"altered"}`)
			return r
		}, 2},
		{"erased record with another digest", func(r []eventstore.Record) []eventstore.Record {
			r[1].Digest = eventstore.Digest([]byte("other"))
			return r
		}, 1},
		{"erased record removed", func(r []eventstore.Record) []eventstore.Record { return slices.Delete(r, 1, 2) }, 1},
		{"erased record with a malformed digest", func(r []eventstore.Record) []eventstore.Record {
			r[3].Digest += r[3].Digest
			return r
		}, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			wantBroken(t, verifyErr(st, c.tamper(slices.Clone(erased))), c.at)
		})
	}
}

// BenchmarkRecordHash hashes a 1 KiB record in each chain form.
func BenchmarkRecordHash(b *testing.B) {
	r := eventstore.Record{ID: "id", Type: "ActivityRecorded", Stream: "target", Revision: 7,
		PrevHash: eventstore.GenesisHash, Data: make([]byte, 1024)}
	for _, v := range []int{eventstore.ChainV1, eventstore.ChainV2} {
		r.Version = v
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			b.SetBytes(int64(len(r.Data)))
			for b.Loop() {
				if _, err := eventstore.RecordHash(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
