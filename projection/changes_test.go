package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

// counting counts the first-page reads that reach the read model.
type counting struct {
	projection.Reader
	n atomic.Int64
}

func (c *counting) Page(ctx context.Context, target string, q activity.PageQuery) (activity.Page, error) {
	c.n.Add(1)
	return c.Reader.Page(ctx, target, q)
}

// splitProcesses is a projector's Redis (writer) and, on its own
// connections, a query process's Redis with a following page cache.
func splitProcesses(t *testing.T, c *redis.Client, prefix string) (writer *projection.Redis, cache *projection.PageCache, reads *counting) {
	t.Helper()
	writer = projection.NewRedis(c, prefix)
	rc := redis.NewClient(&redis.Options{Addr: c.Options().Addr, DB: c.Options().DB})
	t.Cleanup(func() { _ = rc.Close() })
	reader := projection.NewRedis(rc, prefix)
	cache = projection.NewRedisPageCache(reader, 1<<20)
	reads = &counting{Reader: reader}
	cache.ReadThrough(reads)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cache.FollowRedis(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return writer, cache, reads
}

// waitCached reads target's first page until the read model is no longer
// asked for it: the cache follows and holds the page.
func waitCached(t *testing.T, cache *projection.PageCache, reads *counting, target string) string {
	t.Helper()
	var page string
	checkForT(t, 10*time.Second, func() error {
		page = newest(t, cache, target)
		before := reads.n.Load()
		if again := newest(t, cache, target); again != page || reads.n.Load() != before {
			return errors.New("the page cache did not serve the page from the cache")
		}
		return nil
	})
	return page
}

// waitNewest reads target's first page until it starts with want.
func waitNewest(t *testing.T, cache *projection.PageCache, target, want string) {
	t.Helper()
	checkForT(t, 5*time.Second, func() error {
		if got := newest(t, cache, target); got != want {
			return fmt.Errorf("the first page starts with %s; want %s", got, want)
		}
		return nil
	})
}

// A projector in one process, a cached reader in another: after a write
// the reader's page is never the old one for a read that needs the write
// (MinPosition), at once, and soon for any read; other targets' pages stay.
func TestRedisPageCacheDropsWhatTheProjectorAnnounces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	writer, cache, reads := splitProcesses(t, c, prefix)
	target := "6f1c2a80-0000-4000-8000-000000000101"
	other := "6f1c2a80-0000-4000-8000-000000000102"
	acts := readmodeltest.Series(target, 100, 3)
	if err := writer.Apply(ctx, 10, append(acts, readmodeltest.Series(other, 200, 3)...)); err != nil {
		t.Fatal(err)
	}
	waitCached(t, cache, reads, target)
	waitCached(t, cache, reads, other)

	next := readmodeltest.Activity(target, 109, t0)
	if err := writer.Apply(ctx, 11, []activity.Activity{next}); err != nil {
		t.Fatal(err)
	}
	p, err := cache.Page(ctx, target, activity.PageQuery{Limit: 10, MinPosition: 11})
	if err != nil || len(p.Entries) == 0 {
		t.Fatalf("page: %v", err)
	}
	if got := string(p.Entries[0].Doc); got != doc(t, next) {
		t.Fatalf("a read needing position 11 got a page starting with %s; want the write", got)
	}
	if got := waitCached(t, cache, reads, target); got != doc(t, next) {
		t.Fatalf("after a write the cache served %s; want %s", got, doc(t, next))
	}
	before := reads.n.Load()
	newest(t, cache, other)
	if reads.n.Load() != before {
		t.Fatal("a write to one target dropped another's page")
	}
	// Forgetting (retention, erasure) is announced too.
	if err := writer.Forget(ctx, 12, target, []string{next.ID}); err != nil {
		t.Fatal(err)
	}
	waitNewest(t, cache, target, doc(t, acts[2]))
}

// When the subscription is lost, what was announced meanwhile is lost
// with it: the cache must not keep serving what it held.
func TestRedisPageCacheDropsAllWhenTheSubscriptionIsLost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.StartServer(t)
	opt, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	prefix := "pc:"
	writer, cache, reads := splitProcesses(t, c, prefix)
	target := "6f1c2a80-0000-4000-8000-000000000103"
	acts := readmodeltest.Series(target, 300, 3)
	if err := writer.Apply(ctx, 1, acts); err != nil {
		t.Fatal(err)
	}
	old := waitCached(t, cache, reads, target)

	// Kill the subscription and, in the same transaction, change the
	// target without an announcement: as if it were said while the
	// subscription was down.
	next := readmodeltest.Activity(target, 309, t0)
	writeUnannounced(t, c, prefix, next, func(p redis.Pipeliner) {
		p.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub")
	})
	if old == doc(t, next) {
		t.Fatal("the test did not change the first page")
	}
	waitNewest(t, cache, target, doc(t, next))
	// It caches again once subscribed, and not what it held before.
	if got := waitCached(t, cache, reads, target); got != doc(t, next) {
		t.Fatalf("after the subscription came back the cache served %s; want %s", got, doc(t, next))
	}
}

// A projector that does not announce (an older version during a rolling
// upgrade): once the checkpoint is known to be ahead of what was announced
// for longer than a moment, the cache stops serving.
func TestRedisPageCacheStopsWhenChangesGoUnannounced(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	writer, cache, reads := splitProcesses(t, c, prefix)
	reader := reads.Reader.(*projection.Redis)
	target := "6f1c2a80-0000-4000-8000-000000000104"
	if err := writer.Apply(ctx, 20, readmodeltest.Series(target, 400, 3)); err != nil {
		t.Fatal(err)
	}
	waitCached(t, cache, reads, target)

	next := readmodeltest.Activity(target, 409, t0)
	writeUnannounced(t, c, prefix, next, func(p redis.Pipeliner) {
		p.HSet(ctx, prefix+"{%meta}:checkpoints", "", "21")
	})
	if err := reader.Refresh(ctx); err != nil { // what Follow does on the applied message
		t.Fatal(err)
	}
	waitNewest(t, cache, target, doc(t, next))
}

// writeUnannounced writes a into the first generation's keys as the
// projector would, but without announcing it, in one transaction with
// what also queues.
func writeUnannounced(t *testing.T, c *redis.Client, prefix string, a activity.Activity, also func(redis.Pipeliner)) {
	t.Helper()
	d, err := a.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	stem := prefix + "{" + a.TargetID + "}"
	_, err = c.TxPipelined(context.Background(), func(p redis.Pipeliner) error {
		also(p)
		p.HSet(context.Background(), stem+":doc", a.ID, d)
		p.ZAdd(context.Background(), stem+":idx", redis.Z{Member: a.SortKey()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
