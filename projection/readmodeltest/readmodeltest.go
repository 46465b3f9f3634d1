// Package readmodeltest is the conformance suite of the read models: every
// implementation of projection.ReadModel and projection.Reader runs it.
package readmodeltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
)

// Model is a read model under test: what the projector writes and what the
// query side reads.
type Model interface {
	projection.ReadModel
	projection.Reader
}

// base is the createdAt of the first generated activity.
var base = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

// Run checks a read model. newModel returns an empty model that no other
// test shares, judging expiry by the clock now; every subtest runs in
// parallel on its own model and clock, which reads base unless the
// subtest moves it.
func Run(t *testing.T, newModel func(t *testing.T, now func() time.Time) Model) {
	tests := []struct {
		name string
		run  func(t *testing.T, m Model)
	}{
		{"NewestFirst", testNewestFirst},
		{"PagingVisitsAllOnce", testPagingVisitsAllOnce},
		{"BeforeIsStrict", testBeforeIsStrict},
		{"Limit", testLimit},
		{"UnknownTarget", testUnknownTarget},
		{"IdempotentReapply", testIdempotentReapply},
		{"CheckpointMonotonic", testCheckpointMonotonic},
		{"Get", testGet},
		{"DocumentsExact", testDocumentsExact},
		{"AwkwardTargetIDs", testAwkwardTargetIDs},
		{"LargeTarget", testLargeTarget},
		{"Concurrent", testConcurrent},
		{"Ping", testPing},
		{"FilterDateRange", testFilterDateRange},
		{"FilterType", testFilterType},
		{"FilterSourceDomain", testFilterSourceDomain},
		{"FilterTargetType", testFilterTargetType},
		{"FilterCombined", testFilterCombined},
		{"FilterScanBound", testFilterScanBound},
		{"Forget", testForget},
		{"ForgetAll", testForgetAll},
		{"ForgetCheckpoint", testForgetCheckpoint},
	}
	type timedTest struct {
		name string
		run  func(t *testing.T, m Model, clock *Clock)
	}
	timed := []timedTest{
		{"ExpiryToTheSecond", testExpiryToTheSecond},
		{"ExpiredPagesStayFull", testExpiredPagesStayFull},
		{"ExpiredFilteredPagesStayFull", testExpiredFilteredPagesStayFull},
		{"AllExpiredNotFound", testAllExpiredNotFound},
		{"ExpiredListed", testExpiredListed},
	}
	for _, tt := range tests {
		timed = append(timed, timedTest{tt.name, func(t *testing.T, m Model, _ *Clock) { tt.run(t, m) }})
	}
	for _, tt := range timed {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := NewClock(base)
			tt.run(t, newModel(t, clock.Now), clock)
		})
	}
}

// Activity returns a valid activity of target with a UUID-shaped id made
// from n and the given createdAt.
func Activity(target string, n int, createdAt time.Time) activity.Activity {
	return activity.Activity{
		ID:                  fmt.Sprintf("00000000-0000-4000-8000-%012d", n),
		TargetID:            target,
		Type:                activity.TypeUpdate,
		TargetType:          "person",
		CreatedAt:           createdAt.UTC(),
		TimeToLiveForRecord: 0,
		OldData:             json.RawMessage(`{"firstName":"Ann"}`),
		NewData:             json.RawMessage(fmt.Sprintf(`{"firstName":"Ann %d"}`, n)),
		AuthorDetails:       activity.Author{FullName: "A Officer", Email: "a.officer@example.org"},
		SourceDomain:        "person-api",
	}
}

// Series returns n activities of target, one second apart, ids from first.
func Series(target string, first, n int) []activity.Activity {
	acts := make([]activity.Activity, n)
	for i := range acts {
		acts[i] = Activity(target, first+i, base.Add(time.Duration(first+i)*time.Second))
	}
	return acts
}

// newestFirst returns the documents acts should page as, in page order.
func newestFirst(t *testing.T, acts []activity.Activity) [][]byte {
	t.Helper()
	sorted := slices.Clone(acts)
	slices.SortFunc(sorted, func(a, b activity.Activity) int { return strings.Compare(b.SortKey(), a.SortKey()) })
	docs := make([][]byte, len(sorted))
	for i, a := range sorted {
		docs[i] = marshal(t, a)
	}
	return docs
}

func marshal(t *testing.T, a activity.Activity) []byte {
	t.Helper()
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatalf("marshal %s: %v", a.ID, err)
	}
	return b
}

// sortKey is the cursor of a returned document.
func sortKey(t *testing.T, doc []byte) string {
	t.Helper()
	var a activity.Activity
	if err := json.Unmarshal(doc, &a); err != nil {
		t.Fatalf("decode document %s: %v", doc, err)
	}
	return a.SortKey()
}

func apply(t *testing.T, m Model, pos uint64, acts []activity.Activity) {
	t.Helper()
	if err := m.Apply(context.Background(), pos, acts); err != nil {
		t.Fatalf("apply at %d: %v", pos, err)
	}
}

func page(t *testing.T, m Model, target, before string, limit int) ([][]byte, bool) {
	t.Helper()
	p := pageOf(t, m, target, activity.PageQuery{Before: before, Limit: limit})
	docs := make([][]byte, len(p.Entries))
	for i, e := range p.Entries {
		docs[i] = e.Doc
	}
	return docs, p.Found
}

// pageOf reads one page and checks that every entry carries the sort key
// of its document.
func pageOf(t *testing.T, m Model, target string, q activity.PageQuery) activity.Page {
	t.Helper()
	p, err := m.Page(context.Background(), target, q)
	if err != nil {
		t.Fatalf("page %q %+v: %v", target, q, err)
	}
	for _, e := range p.Entries {
		if want := sortKey(t, e.Doc); e.Key != want {
			t.Fatalf("page %q: entry key %q, its document's sort key is %q", target, e.Key, want)
		}
	}
	if len(p.Entries) > max(q.Limit, 0) {
		t.Fatalf("page %q: %d entries, limit %d", target, len(p.Entries), q.Limit)
	}
	return p
}

// all pages through target with pages of size and returns every document.
func all(t *testing.T, m Model, target string, size int) [][]byte {
	t.Helper()
	var out [][]byte
	before := ""
	for {
		docs, _ := page(t, m, target, before, size)
		out = append(out, docs...)
		if len(docs) < size {
			return out
		}
		next := sortKey(t, docs[len(docs)-1])
		if before != "" && next >= before {
			t.Fatalf("paging %q: cursor went from %q to %q, not down", target, before, next)
		}
		before = next
	}
}

func sameDocs(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d documents, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("%s: document %d\n got %s\nwant %s", what, i, got[i], want[i])
		}
	}
}

func testNewestFirst(t *testing.T, m Model) {
	const target = "11111111-1111-4111-8111-111111111111"
	same := base.Add(time.Hour)
	acts := []activity.Activity{
		Activity(target, 5, same),
		Activity(target, 1, base),
		Activity(target, 9, same), // same createdAt: id breaks the tie
		Activity(target, 3, base.Add(2*time.Hour)),
		Activity(target, 7, same),
		Activity(target, 2, base.Add(time.Nanosecond)),
	}
	// Applied in two batches out of order: the model sorts, not the caller.
	apply(t, m, 10, acts[:3])
	apply(t, m, 20, acts[3:])
	docs, found := page(t, m, target, "", 100)
	if !found {
		t.Fatal("found = false for a target with history")
	}
	sameDocs(t, "page", docs, newestFirst(t, acts))
	wantIDs := []int{3, 9, 7, 5, 2, 1}
	for i, n := range wantIDs {
		if want := Activity(target, n, base).ID; !bytes.Contains(docs[i], []byte(want)) {
			t.Errorf("item %d is %s, want id %s", i, docs[i], want)
		}
	}
}

func testPagingVisitsAllOnce(t *testing.T, m Model) {
	const target = "paged"
	acts := Series(target, 0, 47)
	// A run of equal createdAt across page boundaries.
	for i := 10; i < 20; i++ {
		acts[i].CreatedAt = base.Add(10 * time.Second)
	}
	apply(t, m, 1, acts)
	want := newestFirst(t, acts)
	for _, size := range []int{1, 3, 10, 46, 47, 48} {
		sameDocs(t, fmt.Sprintf("pages of %d", size), all(t, m, target, size), want)
	}
}

func testBeforeIsStrict(t *testing.T, m Model) {
	const target = "strict"
	acts := Series(target, 0, 5)
	apply(t, m, 1, acts)
	want := newestFirst(t, acts)
	// Cursor on an existing key: that item is excluded.
	docs, found := page(t, m, target, acts[3].SortKey(), 10)
	if !found {
		t.Fatal("found = false")
	}
	sameDocs(t, "before item 3", docs, want[2:])
	// Cursor between two keys (a prefix of item 3's key sorts just below it).
	between := acts[3].SortKey()[:len(acts[3].SortKey())-1]
	docs, _ = page(t, m, target, between, 10)
	sameDocs(t, "before a key between items", docs, want[2:])
	// Cursor below everything: an empty page of a target that exists.
	docs, found = page(t, m, target, acts[0].SortKey(), 10)
	if !found || len(docs) != 0 {
		t.Fatalf("below the oldest: %d documents, found=%v; want 0, true", len(docs), found)
	}
	// Cursor above everything: the whole history.
	docs, _ = page(t, m, target, "9999", 10)
	sameDocs(t, "before a key above all", docs, want)
}

func testLimit(t *testing.T, m Model) {
	const target = "limit"
	acts := Series(target, 0, 5)
	apply(t, m, 1, acts)
	want := newestFirst(t, acts)
	for _, limit := range []int{1, 4, 5, 6} {
		docs, _ := page(t, m, target, "", limit)
		sameDocs(t, fmt.Sprintf("limit %d", limit), docs, want[:min(limit, len(want))])
	}
	for _, limit := range []int{0, -1} {
		docs, found := page(t, m, target, "", limit)
		if len(docs) != 0 || !found {
			t.Errorf("limit %d: %d documents, found=%v; want 0, true", limit, len(docs), found)
		}
	}
}

func testUnknownTarget(t *testing.T, m Model) {
	docs, found := page(t, m, "nobody", "", 10)
	if found || len(docs) != 0 {
		t.Fatalf("empty model: %d documents, found=%v; want 0, false", len(docs), found)
	}
	apply(t, m, 1, Series("somebody", 0, 3))
	docs, found = page(t, m, "nobody", "", 10)
	if found || len(docs) != 0 {
		t.Fatalf("unknown target: %d documents, found=%v; want 0, false", len(docs), found)
	}
	// A prefix of a known target is another target.
	if _, found = page(t, m, "some", "", 10); found {
		t.Fatal("a prefix of a known target id is found")
	}
}

func testIdempotentReapply(t *testing.T, m Model) {
	const target = "again"
	acts := Series(target, 0, 6)
	apply(t, m, 5, acts)
	first := all(t, m, target, 4)
	apply(t, m, 5, acts)     // the same batch again, as after a crash
	apply(t, m, 3, acts[2:]) // an older, overlapping batch
	apply(t, m, 6, acts[:1]) // one event again with a newer position
	sameDocs(t, "after re-apply", all(t, m, target, 4), first)
	sameDocs(t, "after re-apply", first, newestFirst(t, acts))
	for _, a := range acts {
		doc, found, err := m.Get(context.Background(), a.ID)
		if err != nil || !found || !bytes.Equal(doc, marshal(t, a)) {
			t.Fatalf("get %s after re-apply: %s, %v, %v", a.ID, doc, found, err)
		}
	}
}

func testCheckpointMonotonic(t *testing.T, m Model) {
	ctx := context.Background()
	check := func(want uint64) {
		t.Helper()
		got, err := m.Checkpoint(ctx)
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		if got != want {
			t.Fatalf("checkpoint = %d, want %d", got, want)
		}
	}
	check(0)
	apply(t, m, 5, Series("cp", 0, 2))
	check(5)
	apply(t, m, 3, Series("cp", 2, 2)) // never backwards…
	check(5)
	docs, _ := page(t, m, "cp", "", 10)
	if len(docs) != 4 {
		t.Fatalf("%d documents, want 4: an old position still applies its data", len(docs))
	}
	apply(t, m, 9, nil) // …but forward with an empty batch (skipped events)
	check(9)
	apply(t, m, 10, nil)
	check(10)
	apply(t, m, 1<<63+7, nil) // beyond a float64's exact integers
	check(1<<63 + 7)
	apply(t, m, 1<<63+6, nil)
	check(1<<63 + 7)
}

func testGet(t *testing.T, m Model) {
	ctx := context.Background()
	a := Activity("get-target", 1, base)
	b := Activity("other-target", 2, base)
	apply(t, m, 1, []activity.Activity{a, b})
	for _, x := range []activity.Activity{a, b} {
		doc, found, err := m.Get(ctx, x.ID)
		if err != nil || !found {
			t.Fatalf("get %s: found=%v err=%v", x.ID, found, err)
		}
		if !bytes.Equal(doc, marshal(t, x)) {
			t.Fatalf("get %s:\n got %s\nwant %s", x.ID, doc, marshal(t, x))
		}
	}
	doc, found, err := m.Get(ctx, "00000000-0000-4000-8000-999999999999")
	if err != nil || found || doc != nil {
		t.Fatalf("unknown id: %s, found=%v, err=%v", doc, found, err)
	}
}

func testDocumentsExact(t *testing.T, m Model) {
	const target = "exact"
	a := Activity(target, 1, time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.FixedZone("BST", 3600)))
	a.OldData = json.RawMessage(`{"Forename":"M","middle name":""}`)
	a.NewData = json.RawMessage(`{"Forename":"Mary","middle name":"<Jo & \"Jay\">","nested":{"Z":1,"a":[1.50,"é"]}}`)
	a.TimeToLiveForRecord = 30
	b := Activity(target, 2, base)
	b.OldData, b.NewData = nil, nil // null in the document
	apply(t, m, 1, []activity.Activity{a, b})
	docs, _ := page(t, m, target, "", 10)
	sameDocs(t, "documents", docs, [][]byte{marshal(t, a), marshal(t, b)})
	if !bytes.Contains(docs[0], []byte(`"oldData":{"Forename":"M","middle name":""}`)) {
		t.Errorf("oldData keys changed: %s", docs[0])
	}
	if !bytes.Contains(docs[1], []byte(`"oldData":null,"newData":null`)) {
		t.Errorf("absent data is not null: %s", docs[1])
	}
	got, _, _ := m.Get(context.Background(), a.ID)
	sameDocs(t, "get", [][]byte{got}, [][]byte{marshal(t, a)})
	// Documents handed out are the caller's to change.
	docs[0][0] = 'X'
	again, _ := page(t, m, target, "", 1)
	sameDocs(t, "after the caller changed a document", again, [][]byte{marshal(t, a)})
}

func testAwkwardTargetIDs(t *testing.T, m Model) {
	// Ids that would end, empty or fake a hash tag, or look like a sort key
	// or another key's suffix; each must stay its own target.
	targets := []string{
		"a", "a}", "{a}", "a}:idx", "a}:doc", "}", "{", "{}", "}{", "a:b", "a|b", "|",
		"%", "%7D", "a%7D", "id:x", "checkpoint", "x{a}y", "é}", "a b", "a\x00b",
	}
	var acts []activity.Activity
	for i, target := range targets {
		for j := range 3 {
			acts = append(acts, Activity(target, i*10+j, base.Add(time.Duration(j)*time.Minute)))
		}
	}
	apply(t, m, 1, acts)
	for i, target := range targets {
		docs, found := page(t, m, target, "", 10)
		if !found {
			t.Fatalf("target %q not found", target)
		}
		sameDocs(t, fmt.Sprintf("target %q", target), docs, newestFirst(t, acts[i*3:i*3+3]))
		doc, found, err := m.Get(context.Background(), acts[i*3].ID)
		if err != nil || !found || !bytes.Equal(doc, marshal(t, acts[i*3])) {
			t.Fatalf("get %s of target %q: %s, %v, %v", acts[i*3].ID, target, doc, found, err)
		}
	}
	if _, found := page(t, m, "b", "", 10); found {
		t.Fatal("target \"b\" found")
	}
}

func testLargeTarget(t *testing.T, m Model) {
	const target = "large"
	const n, batch = 10_000, 500
	acts := make([]activity.Activity, n)
	for i := range acts {
		// Four activities per second: many ties broken by id.
		acts[i] = Activity(target, i, base.Add(time.Duration(i/4)*time.Second))
	}
	for i := 0; i < n; i += batch {
		apply(t, m, uint64(i+batch), acts[i:i+batch])
	}
	got := all(t, m, target, 1000)
	sameDocs(t, "10k in pages of 1000", got, newestFirst(t, acts))
	// Deep cursor: the 100 just below the 9000th newest.
	docs, _ := page(t, m, target, sortKey(t, got[8999]), 100)
	sameDocs(t, "deep page", docs, got[9000:9100])
	if cp, err := m.Checkpoint(context.Background()); err != nil || cp != n {
		t.Fatalf("checkpoint = %d, %v; want %d", cp, err, n)
	}
}

func testConcurrent(t *testing.T, m Model) {
	ctx := context.Background()
	const writers, batches, size = 4, 10, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*batches*2)
	for w := range writers {
		wg.Go(func() {
			target := fmt.Sprintf("concurrent-%d", w)
			for b := range batches {
				first := w*batches*size + b*size
				if err := m.Apply(ctx, uint64(first+size), Series(target, first, size)); err != nil {
					errs <- err
				}
				if _, err := m.Page(ctx, target, activity.PageQuery{Limit: 10}); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		target := fmt.Sprintf("concurrent-%d", w)
		sameDocs(t, target, all(t, m, target, 64), newestFirst(t, Series(target, w*batches*size, batches*size)))
	}
	if cp, _ := m.Checkpoint(ctx); cp != writers*batches*size {
		t.Fatalf("checkpoint = %d, want %d", cp, writers*batches*size)
	}
}

func testPing(t *testing.T, m Model) {
	if err := m.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
}
