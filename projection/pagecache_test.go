package projection_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

var t0 = time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)

func TestPageCacheConformance(t *testing.T) {
	t.Parallel()
	t.Run("memory", func(t *testing.T) {
		t.Parallel()
		readmodeltest.Run(t, func(t *testing.T, now func() time.Time) readmodeltest.Model {
			m := projection.NewMemory()
			m.Now = now
			c := projection.NewPageCache(m, 1<<20)
			c.Now = now
			return c
		})
	})
	t.Run("redis", func(t *testing.T) {
		t.Parallel()
		readmodeltest.Run(t, func(t *testing.T, now func() time.Time) readmodeltest.Model {
			c, prefix := redistest.Client(t)
			r := projection.NewRedis(c, prefix)
			r.Now = now
			pc := projection.NewPageCache(r, 1<<20)
			pc.Now = now
			return pc
		})
	})
}

// gated is a read model whose Page and Apply can be held at a chosen
// moment, to interleave a read with an apply.
type gated struct {
	projection.Model
	mu        sync.Mutex
	pages     int
	holdPage  chan struct{} // Page waits on it after reading, when set
	readDone  chan struct{}
	holdApply chan struct{} // Apply waits on it after applying, when set
	applied   chan struct{}
}

func (g *gated) Page(ctx context.Context, target string, q activity.PageQuery) (activity.Page, error) {
	page, err := g.Model.Page(ctx, target, q)
	g.mu.Lock()
	g.pages++
	hold, done := g.holdPage, g.readDone
	g.holdPage = nil
	g.mu.Unlock()
	if hold != nil {
		close(done)
		<-hold
	}
	return page, err
}

func (g *gated) Apply(ctx context.Context, pos uint64, acts []activity.Activity) error {
	err := g.Model.Apply(ctx, pos, acts)
	g.mu.Lock()
	hold, done := g.holdApply, g.applied
	g.holdApply = nil
	g.mu.Unlock()
	if hold != nil {
		close(done)
		<-hold
	}
	return err
}

// holdNext makes the next call wait on hold after its work; done closes
// when it has done it.
func (g *gated) holdNext(holdField, doneField *chan struct{}) (hold, done chan struct{}) {
	hold, done = make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	*holdField, *doneField = hold, done
	g.mu.Unlock()
	return hold, done
}

func (g *gated) reads() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pages
}

func newest(t *testing.T, m projection.Reader, target string) string {
	t.Helper()
	p, err := m.Page(context.Background(), target, activity.PageQuery{Limit: 10})
	if err != nil || !p.Found || len(p.Entries) == 0 {
		t.Fatalf("page of %s: %d entries, found %v, err %v", target, len(p.Entries), p.Found, err)
	}
	return string(p.Entries[0].Doc)
}

func doc(t *testing.T, a activity.Activity) string {
	t.Helper()
	b, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestPageCacheServesRepeatsAndDropsOnApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &gated{Model: projection.NewMemory()}
	c := projection.NewPageCache(g, 1<<20)
	target := "6f1c2a80-0000-4000-8000-000000000001"
	acts := readmodeltest.Series(target, 0, 5)
	if err := c.Apply(ctx, 1, acts); err != nil {
		t.Fatal(err)
	}
	newest(t, c, target)
	newest(t, c, target)
	if n := g.reads(); n != 1 {
		t.Fatalf("read model read %d times for the same first page; want 1", n)
	}
	// Deeper pages are not cached.
	for range 2 {
		if _, err := c.Page(ctx, target, activity.PageQuery{Before: acts[3].SortKey(), Limit: 2}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		q := activity.PageQuery{Limit: 10, Filter: activity.Filter{Types: []activity.Type{activity.TypeUpdate}}}
		if _, err := c.Page(ctx, target, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := g.reads(); n != 5 {
		t.Fatalf("read model read %d times; want 5 (deep and filtered pages are not cached)", n)
	}
	next := readmodeltest.Activity(target, 9, t0)
	if err := c.Apply(ctx, 2, []activity.Activity{next}); err != nil {
		t.Fatal(err)
	}
	if got := newest(t, c, target); got != doc(t, next) {
		t.Fatalf("after an apply the first page starts with %s; want %s", got, doc(t, next))
	}
}

// A read that began before an apply and ends after it must not leave its
// older page in the cache.
func TestPageCacheReadAcrossApplyIsNotKept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &gated{Model: projection.NewMemory()}
	c := projection.NewPageCache(g, 1<<20)
	target := "6f1c2a80-0000-4000-8000-000000000002"
	if err := c.Apply(ctx, 1, readmodeltest.Series(target, 0, 3)); err != nil {
		t.Fatal(err)
	}
	hold, done := g.holdNext(&g.holdPage, &g.readDone)
	old := make(chan string)
	go func() { old <- newest(t, c, target) }()
	<-done // the read has its (old) page and waits
	next := readmodeltest.Activity(target, 9, t0)
	if err := c.Apply(ctx, 2, []activity.Activity{next}); err != nil {
		t.Fatal(err)
	}
	close(hold)
	if got := <-old; got == doc(t, next) {
		t.Fatal("the held read saw the apply; the test did not interleave")
	}
	if got := newest(t, c, target); got != doc(t, next) {
		t.Fatalf("a page read before the apply was kept: first page starts with %s", got)
	}
}

// While an apply is in progress (its checkpoint may already be written),
// the target's cached pages are not served.
func TestPageCacheNoHitsDuringApply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &gated{Model: projection.NewMemory()}
	c := projection.NewPageCache(g, 1<<20)
	target := "6f1c2a80-0000-4000-8000-000000000003"
	if err := c.Apply(ctx, 1, readmodeltest.Series(target, 0, 3)); err != nil {
		t.Fatal(err)
	}
	newest(t, c, target) // cached
	hold, applied := g.holdNext(&g.holdApply, &g.applied)
	next := readmodeltest.Activity(target, 9, t0)
	errc := make(chan error)
	go func() { errc <- c.Apply(ctx, 2, []activity.Activity{next}) }()
	<-applied // data and checkpoint are in; the apply has not returned
	if got := newest(t, c, target); got != doc(t, next) {
		t.Fatalf("during an apply a cached page was served: first page starts with %s", got)
	}
	close(hold)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestPageCacheStaysWithinBudget(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := &gated{Model: projection.NewMemory()}
	const budget = 64 << 10
	c := projection.NewPageCache(g, budget)
	var targets []string
	for i := range 200 {
		target := readmodeltest.Activity("x", i, t0).ID // a UUID-shaped id
		targets = append(targets, target)
		if err := c.Apply(ctx, uint64(i+1), readmodeltest.Series(target, 0, 12)); err != nil {
			t.Fatal(err)
		}
	}
	for _, target := range targets {
		newest(t, c, target)
	}
	if got := c.CachedBytes(); got > budget || got == 0 {
		t.Fatalf("cache holds %d bytes; want 1..%d", got, budget)
	}
	// Unknown targets leave nothing behind.
	for i := range 100 {
		if p, err := c.Page(ctx, fmt.Sprintf("no-history-%d", i), activity.PageQuery{Limit: 10}); err != nil || p.Found {
			t.Fatalf("unknown target: found %v, err %v", p.Found, err)
		}
	}
	if n := c.CachedTargets(); n > 200 {
		t.Fatalf("cache tracks %d targets after reads of unknown ones", n)
	}
}
