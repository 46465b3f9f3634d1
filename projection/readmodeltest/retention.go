package readmodeltest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
)

// Clock is a settable clock for expiry tests; safe for concurrent use.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock reading t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Now reads the clock.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

func forget(t *testing.T, m Model, pos uint64, target string, ids ...string) {
	t.Helper()
	if err := m.Forget(context.Background(), pos, target, ids); err != nil {
		t.Fatalf("forget %v of %q at %d: %v", ids, target, pos, err)
	}
}

// getDoc checks that id is found with the document of a, or not found
// when a is nil.
func getDoc(t *testing.T, m Model, id string, a *activity.Activity) {
	t.Helper()
	doc, found, err := m.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	switch {
	case a == nil && (found || doc != nil):
		t.Fatalf("get %s: found %s, want not found", id, doc)
	case a != nil && (!found || !bytes.Equal(doc, marshal(t, *a))):
		t.Fatalf("get %s: %s (found=%v), want %s", id, doc, found, marshal(t, *a))
	}
}

// without is acts but those at the given indexes.
func without(acts []activity.Activity, drop ...int) []activity.Activity {
	var out []activity.Activity
	for i, a := range acts {
		if !slices.Contains(drop, i) {
			out = append(out, a)
		}
	}
	return out
}

func testForget(t *testing.T, m Model) {
	const target = "forget"
	ctx := context.Background()
	acts := Series(target, 0, 10)
	acts[2].Type = activity.TypeCreate
	acts[5].TimeToLiveForRecord = 1000
	other := Series("forget-other", 100, 2)
	apply(t, m, 1, append(slices.Clone(acts), other...))
	unknown := Activity(target, 999, base).ID
	// Unknown ids, and ids of another target, are ignored.
	ids := []string{acts[2].ID, acts[5].ID, acts[7].ID, unknown, other[0].ID}
	forget(t, m, 2, target, ids...)
	left := without(acts, 2, 5, 7)
	check := func(when string) {
		t.Helper()
		sameDocs(t, when+": pages of 3", all(t, m, target, 3), newestFirst(t, left))
		for _, i := range []int{2, 5, 7} {
			getDoc(t, m, acts[i].ID, nil)
		}
		getDoc(t, m, acts[0].ID, &acts[0])
		getDoc(t, m, other[0].ID, &other[0])
		sameDocs(t, when+": other target", all(t, m, "forget-other", 10), newestFirst(t, other))
		// Gone from the filter and date indexes too.
		p := pageOf(t, m, target, activity.PageQuery{Limit: 10, Filter: activity.Filter{Types: []activity.Type{activity.TypeCreate}}})
		if !p.Found || len(p.Entries) != 0 {
			t.Fatalf("%s: type create: found=%v, %d entries; want found, none", when, p.Found, len(p.Entries))
		}
		p = pageOf(t, m, target, activity.PageQuery{Limit: 10, Filter: activity.Filter{From: acts[4].CreatedAt, To: acts[8].CreatedAt}})
		sameDocs(t, when+": date range", docsOf(p), newestFirst(t, []activity.Activity{acts[4], acts[6]}))
		p = pageOf(t, m, target, activity.PageQuery{Limit: 10, Filter: activity.Filter{SourceDomains: []string{"person-api"}}})
		sameDocs(t, when+": sourceDomain", docsOf(p), newestFirst(t, left))
		// And from the sweeper's list, expiry far ahead or not.
		ex, err := m.Expired(ctx, base.AddDate(100, 0, 0), 100)
		if err != nil || len(ex) != 0 {
			t.Fatalf("%s: expired %v, %v; want none", when, ex, err)
		}
	}
	check("after forget")
	forget(t, m, 3, target, ids...)
	check("forgotten again")
	// A record applied again (a replay) is back, expiry included.
	apply(t, m, 4, acts[5:6])
	sameDocs(t, "applied again", all(t, m, target, 4), newestFirst(t, without(acts, 2, 7)))
	ex, err := m.Expired(ctx, base.AddDate(100, 0, 0), 100)
	if err != nil || len(ex) != 1 || !slices.Equal(ex[0].IDs, []string{acts[5].ID}) {
		t.Fatalf("expired after re-apply: %v, %v; want %s", ex, err, acts[5].ID)
	}
}

func testForgetAll(t *testing.T, m Model) {
	const target = "forget-all"
	acts := Series(target, 0, 4)
	acts[1].TimeToLiveForRecord = 5
	apply(t, m, 1, acts)
	forget(t, m, 2, target, acts[0].ID, acts[1].ID, acts[2].ID, acts[3].ID)
	if docs, found := page(t, m, target, "", 10); found || len(docs) != 0 {
		t.Fatalf("every activity forgotten: %d documents, found=%v; want none, not found", len(docs), found)
	}
	for _, a := range acts {
		getDoc(t, m, a.ID, nil)
	}
	forget(t, m, 3, "never-seen", acts[0].ID)
	forget(t, m, 3, target)
}

func testForgetCheckpoint(t *testing.T, m Model) {
	ctx := context.Background()
	check := func(want uint64) {
		t.Helper()
		if got, err := m.Checkpoint(ctx); err != nil || got != want {
			t.Fatalf("checkpoint = %d, %v; want %d", got, err, want)
		}
	}
	acts := Series("forget-cp", 0, 3)
	apply(t, m, 5, acts)
	forget(t, m, 3, "forget-cp", acts[0].ID) // never backwards…
	check(5)
	if docs, _ := page(t, m, "forget-cp", "", 10); len(docs) != 2 {
		t.Fatalf("%d documents, want 2: an old position still forgets", len(docs))
	}
	forget(t, m, 9, "forget-cp") // …but forward with nothing to forget
	check(9)
	forget(t, m, 1<<63+7, "forget-cp", acts[1].ID)
	check(1<<63 + 7)
	forget(t, m, 0, "forget-cp", acts[2].ID)
	check(1<<63 + 7)
}

func testExpiryToTheSecond(t *testing.T, m Model, clock *Clock) {
	const target = "expiry-second"
	// Expires within a second (createdAt has a fraction): from the start
	// of that second on.
	a := Activity(target, 1, base.Add(-36*time.Hour+700*time.Millisecond))
	a.TimeToLiveForRecord = 1
	a.Type = activity.TypeCreate
	b := Activity(target, 2, base.Add(-37*time.Hour))
	expires := base.Add(-12 * time.Hour)
	if a.Expires() != expires.Unix() {
		t.Fatalf("Expires = %d, want %d", a.Expires(), expires.Unix())
	}
	apply(t, m, 1, []activity.Activity{a, b})

	clock.Set(expires.Add(-time.Millisecond))
	p := pageOf(t, m, target, activity.PageQuery{Limit: 10})
	sameDocs(t, "a millisecond before", docsOf(p), newestFirst(t, []activity.Activity{a, b}))
	if p.Entries[0].Expires != expires.Unix() || p.Entries[1].Expires != 0 {
		t.Fatalf("Expires of entries = %d, %d; want %d, 0", p.Entries[0].Expires, p.Entries[1].Expires, expires.Unix())
	}
	getDoc(t, m, a.ID, &a)
	if ex, err := m.Expired(context.Background(), clock.Now(), 10); err != nil || len(ex) != 0 {
		t.Fatalf("expired a millisecond before: %v, %v; want none", ex, err)
	}

	clock.Set(expires)
	for _, q := range []activity.PageQuery{
		{Limit: 10},
		{Limit: 1},
		{Limit: 10, Filter: activity.Filter{Types: []activity.Type{activity.TypeCreate, activity.TypeUpdate}}},
		{Limit: 10, Filter: activity.Filter{From: b.CreatedAt}},
		{Limit: 10, Before: "9999"},
	} {
		p = pageOf(t, m, target, q)
		sameDocs(t, fmt.Sprintf("at the second, %+v", q), docsOf(p), newestFirst(t, []activity.Activity{b}))
		if !p.Found {
			t.Fatalf("at the second, %+v: not found", q)
		}
	}
	getDoc(t, m, a.ID, nil)
	getDoc(t, m, b.ID, &b)
	ex, err := m.Expired(context.Background(), clock.Now(), 10)
	if err != nil || len(ex) != 1 || ex[0].TargetID != target || !slices.Equal(ex[0].IDs, []string{a.ID}) {
		t.Fatalf("expired at the second: %v, %v; want %s of %s", ex, err, a.ID, target)
	}
}

// expiringSeries is filterSeries(target, n) of which some have expired at
// base+2 days: all of the newest fifth, every other one of the fifths
// below, the oldest fifth none; every fifth one carries a TTL far ahead.
// It returns the activities and those live at base+2 days.
func expiringSeries(target string, n int) (acts, live []activity.Activity) {
	acts = filterSeries(target, n)
	for i := range acts {
		switch {
		case i >= n*4/5, i >= n/5 && i%2 == 1:
			acts[i].TimeToLiveForRecord = 1
		case i%5 == 0:
			acts[i].TimeToLiveForRecord = 1000
		}
		if acts[i].TimeToLiveForRecord != 1 {
			live = append(live, acts[i])
		}
	}
	return acts, live
}

func testExpiredPagesStayFull(t *testing.T, m Model, clock *Clock) {
	const target = "expired-full"
	acts, live := expiringSeries(target, 100)
	apply(t, m, 1, acts)
	// Before any expiry, everything; a page cache keeps the first pages.
	sameDocs(t, "before expiry", all(t, m, target, 20), newestFirst(t, acts))
	clock.Set(base.AddDate(0, 0, 2))
	want := newestFirst(t, live)
	p := pageOf(t, m, target, activity.PageQuery{Limit: 20})
	sameDocs(t, "first page of 20", docsOf(p), want[:20])
	if p.ScannedTo != "" {
		t.Fatalf("a full page with scannedTo %q", p.ScannedTo)
	}
	for _, e := range p.Entries {
		if activity.Expired(e.Expires, clock.Now()) {
			t.Fatalf("entry %s expired at %d", e.Key, e.Expires)
		}
	}
	for _, size := range []int{1, 7, 20, 21, 100} {
		sameDocs(t, fmt.Sprintf("pages of %d", size), all(t, m, target, size), want)
	}
}

func testExpiredFilteredPagesStayFull(t *testing.T, m Model, clock *Clock) {
	const target = "expired-filtered"
	acts, live := expiringSeries(target, 300)
	apply(t, m, 1, acts)
	clock.Set(base.AddDate(0, 0, 2))
	for _, f := range []activity.Filter{
		{Types: []activity.Type{activity.TypeCreate, activity.TypeUpdate}},
		{SourceDomains: []string{"person-api", "a,b"}},
		{TargetTypes: []activity.TargetType{"tenure"}},
		{From: acts[40].CreatedAt, To: acts[290].CreatedAt},
		{From: acts[30].CreatedAt, Types: []activity.Type{activity.TypeEnd}, SourceDomains: domains},
	} {
		want := wantFiltered(t, live, f)
		if len(want) == 0 {
			t.Fatalf("filter %s selects nothing: a weak case", f)
		}
		for _, c := range [][2]int{{1, 0}, {7, 0}, {20, 0}, {7, 10}, {50, 150}} {
			size, scan := c[0], c[1]
			sameDocs(t, fmt.Sprintf("filter %s, pages of %d, scan %d", f, size, scan), walk(t, m, target, f, size, scan), want)
		}
	}
}

func testAllExpiredNotFound(t *testing.T, m Model, clock *Clock) {
	const target = "all-expired"
	acts := Series(target, 0, 5)
	for i := range acts {
		acts[i].TimeToLiveForRecord = 1 + i%2
	}
	apply(t, m, 1, acts)
	clock.Set(acts[4].CreatedAt.AddDate(0, 0, 2))
	for _, q := range []activity.PageQuery{{Limit: 10}, {Limit: 0}, {Limit: 10, Before: acts[2].SortKey()},
		{Limit: 10, Filter: activity.Filter{Types: []activity.Type{activity.TypeUpdate}}}} {
		if p := pageOf(t, m, target, q); p.Found || len(p.Entries) != 0 {
			t.Fatalf("every activity expired, %+v: found=%v, %d entries; want not found", q, p.Found, len(p.Entries))
		}
	}
	// One expired later: the target is found again, with that one only.
	clock.Set(acts[4].CreatedAt.AddDate(0, 0, 1).Add(-time.Second))
	if docs, found := page(t, m, target, "", 10); !found || len(docs) != 3 {
		t.Fatalf("three live: %d documents, found=%v", len(docs), found)
	}
}

func testExpiredListed(t *testing.T, m Model, clock *Clock) {
	ctx := context.Background()
	var acts []activity.Activity
	for k, target := range []string{"listed-a", "listed-b", "listed-c}"} {
		s := Series(target, k*100, 10)
		for i := range s {
			s[i].TimeToLiveForRecord = 1 + i%3 // 1, 2, 3 days
		}
		s[9].TimeToLiveForRecord = 0
		acts = append(acts, s...)
	}
	apply(t, m, 1, acts)
	now := base.AddDate(0, 0, 2).Add(time.Hour) // the 1- and 2-day ones
	ex, err := m.Expired(ctx, now, 5)
	if err != nil {
		t.Fatal(err)
	}
	if n := countIDs(ex); n != 5 {
		t.Fatalf("expired with limit 5: %d ids %v", n, ex)
	}
	ex, err = m.Expired(ctx, now, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range acts {
		if activity.Expired(a.Expires(), now) {
			want = append(want, a.TargetID+"/"+a.ID)
		}
	}
	var got []string
	seen := map[string]bool{}
	for _, e := range ex {
		if seen[e.TargetID] {
			t.Fatalf("target %q listed twice: %v", e.TargetID, ex)
		}
		seen[e.TargetID] = true
		for _, id := range e.IDs {
			got = append(got, e.TargetID+"/"+id)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("expired:\n got %v\nwant %v", got, want)
	}
	// Forgetting them is what the sweeper does: nothing is left to list,
	// and the pages are what they were.
	clock.Set(now)
	before := all(t, m, "listed-a", 3)
	for _, e := range ex {
		forget(t, m, 0, e.TargetID, e.IDs...)
	}
	if ex, err = m.Expired(ctx, now, 1000); err != nil || len(ex) != 0 {
		t.Fatalf("expired after forgetting: %v, %v", ex, err)
	}
	sameDocs(t, "after the sweep", all(t, m, "listed-a", 3), before)
}

func countIDs(ex []projection.Expired) int {
	n := 0
	for _, e := range ex {
		n += len(e.IDs)
	}
	return n
}
