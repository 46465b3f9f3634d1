package projection

import (
	"context"
	"sync"
	"time"

	"github.com/council/activityhistory/activity"
)

// Model is a read model the projector writes and the query side reads.
type Model interface {
	ReadModel
	Reader
}

// PageCache keeps the first pages of targets in process, in front of a
// read model. It learns of changes in one of two ways:
//
//   - In process: every write goes through this PageCache's Apply and
//     Forget — its read model's only writer is the projector of this
//     process (the in-memory model). Give it to the projector and to the
//     query side.
//   - From Redis (FollowRedis): the projector, in any process, announces
//     the targets of each batch it applies on a channel (see changes.go);
//     every query process subscribes and drops those targets' pages. Only
//     the query side uses it then.
//
// A page is never older than what the read model serves once the
// checkpoint covers a batch: while a batch for a target is being applied
// in process its cached pages are neither served nor stored, and after it
// they are dropped, before and after the checkpoint moves. From Redis, a
// page is not served to a read that needs a position (PageQuery.MinPosition)
// beyond the announcements received, and nothing is served or stored while
// the subscription is not known to be up. A read that began before a
// change of its target was learnt is not cached. A page is not served at
// or after the soonest Expires of its entries. Unfiltered pages are kept,
// first pages (what a hot target is asked for again and again) and pages
// below a cursor alike, at most maxPagesPerTarget per target; filtered
// ones go to the read model. Any change of a target drops all its pages
// (an activity may be dated anywhere in its history). The entries it
// returns are shared: read-only.
type PageCache struct {
	Model
	// Now is the clock expiry is judged by (nil: time.Now): a page is not
	// served from the cache once one of its entries expired.
	Now func() time.Time
	max int64 // bytes of documents
	// read serves misses, Get and Ping: the Model unless ReadThrough
	// replaced it (the query side's guarded reader).
	read Reader
	// generation names the read model's data readers use (Redis: it
	// changes when a rebuild switches); a page is served only within the
	// generation it was read from. nil: one generation.
	generation func() string
	redis      *Redis // feed: the read model announcing its changes

	mu      sync.Mutex
	targets map[string]*cachedTarget
	size    int64  // bytes of the cached documents
	epoch   uint64 // moves whenever every page is dropped at once
	feed    bool   // changes come from Redis, not through Apply
	live    bool   // feed: subscribed, so changes are being heard
	through uint64 // feed: every change up to this position is heard
	// feed: since when the read model is known to have applied more than
	// was announced (zero: it is not)
	behindSince time.Time
}

// cachedTarget is one target's cache state.
type cachedTarget struct {
	gen     uint64 // moves at every apply that touches the target
	pending int    // applies in progress
	pages   map[pageKey]cachedPage
}

// pageKey is what, besides the target, an unfiltered page depends on:
// where it starts, its limit, and its scan bound (which stops a page
// short past expired entries).
type pageKey struct {
	before         string
	limit, maxScan int
}

// maxPagesPerTarget bounds the pages kept of one target, so that a
// client paging through a long history does not crowd out the first
// pages of every other.
const maxPagesPerTarget = 64

// cachedPage is one page.
type cachedPage struct {
	gen      uint64
	modelGen string // the read model's generation it was read from
	page     activity.Page
	size     int64
	expires  int64 // the soonest Expires of its entries, 0 = none
}

// NewPageCache returns m with a cache of pages holding at most
// maxBytes of documents; 0 turns caching off.
func NewPageCache(m Model, maxBytes int64) *PageCache {
	return &PageCache{Model: m, read: m, max: maxBytes, targets: map[string]*cachedTarget{}}
}

// ReadThrough makes misses, Get and Ping go to r (the same read model,
// wrapped, e.g. with deadlines): a hit costs no more than a map lookup.
func (c *PageCache) ReadThrough(r Reader) { c.read = r }

// Get returns one document from the read model; documents are not cached.
func (c *PageCache) Get(ctx context.Context, id string) ([]byte, bool, error) {
	return c.read.Get(ctx, id)
}

// Ping checks the read model.
func (c *PageCache) Ping(ctx context.Context) error { return c.read.Ping(ctx) }

// Apply marks the batch's targets as changing, applies it (data, then
// checkpoint) and drops their cached pages.
func (c *PageCache) Apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	return c.changing(batchTargets(acts), func() error { return c.Model.Apply(ctx, position, acts) })
}

// Forget removes the activities as Apply adds them: the target's cached
// pages are neither served nor stored meanwhile, and dropped after.
func (c *PageCache) Forget(ctx context.Context, position uint64, targetID string, ids []string) error {
	return c.changing([]string{targetID}, func() error { return c.Model.Forget(ctx, position, targetID, ids) })
}

// changing runs change, a write to targets, keeping their pages out of
// the cache until it is over.
func (c *PageCache) changing(targets []string, change func() error) error {
	c.mu.Lock()
	for _, t := range targets {
		ct := c.targets[t]
		if ct == nil {
			ct = &cachedTarget{}
			c.targets[t] = ct
		}
		ct.pending++
		c.dropPages(ct)
	}
	c.mu.Unlock()

	err := change()

	c.mu.Lock()
	for _, t := range targets {
		ct := c.targets[t]
		ct.gen++
		ct.pending--
		c.dropPages(ct)
		if ct.pending == 0 {
			delete(c.targets, t)
		}
	}
	c.mu.Unlock()
	return err
}

// changed drops a target's pages and keeps reads of it that began before
// from being stored; c.mu is held.
func (c *PageCache) changed(targetID string) {
	if ct := c.targets[targetID]; ct != nil {
		ct.gen++
		c.dropPages(ct)
		if ct.pending == 0 {
			delete(c.targets, targetID)
		}
	}
}

// dropAll forgets every page, and keeps reads that began before from
// being stored; c.mu is held.
func (c *PageCache) dropAll() {
	for t, ct := range c.targets {
		c.dropPages(ct)
		if ct.pending == 0 {
			delete(c.targets, t)
		}
	}
	c.epoch++
}

// dropPages forgets a target's pages; c.mu is held.
func (c *PageCache) dropPages(ct *cachedTarget) {
	for _, p := range ct.pages {
		c.size -= p.size
	}
	ct.pages = nil
}

// Page serves an unfiltered page from the cache when it can,
// otherwise from the read model, keeping the answer when no change of the
// target was learnt meanwhile.
func (c *PageCache) Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error) {
	if !q.Filter.IsZero() || c.max <= 0 {
		return c.read.Page(ctx, targetID, q)
	}
	key := pageKey{q.Before, q.Limit, q.MaxScan}
	modelGen := ""
	if c.generation != nil {
		modelGen = c.generation()
	}
	c.mu.Lock()
	if c.feed && (!c.live || c.unheard()) {
		c.mu.Unlock()
		return c.read.Page(ctx, targetID, q)
	}
	ct := c.targets[targetID]
	if ct == nil {
		ct = &cachedTarget{}
		c.targets[targetID] = ct
	}
	if p, ok := ct.pages[key]; ok && ct.pending == 0 && p.gen == ct.gen && p.modelGen == modelGen &&
		(!c.feed || q.MinPosition <= c.through) && !activity.Expired(p.expires, c.now()) {
		c.mu.Unlock()
		page := p.page
		page.Cached = true
		return page, nil
	}
	gen, epoch, cacheable := ct.gen, c.epoch, ct.pending == 0
	c.mu.Unlock()

	page, err := c.read.Page(ctx, targetID, q)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keep it only if the target did not change, nor its state get
	// replaced, nor every page get dropped, meanwhile.
	if err == nil && page.Found && cacheable && c.targets[targetID] == ct && ct.gen == gen && ct.pending == 0 &&
		c.epoch == epoch && (!c.feed || c.live) {
		c.store(ct, key, cachedPage{gen: gen, modelGen: modelGen, page: page, size: pageSize(page.Entries), expires: soonest(page.Entries)}, targetID)
	}
	// A state with nothing in it goes, so that reads of targets without
	// history cannot grow the map.
	if c.targets[targetID] == ct && ct.pending == 0 && len(ct.pages) == 0 {
		delete(c.targets, targetID)
	}
	return page, err
}

// store keeps p as ct's page of key, evicting other targets' pages to
// stay within the budget; c.mu is held.
func (c *PageCache) store(ct *cachedTarget, key pageKey, p cachedPage, targetID string) {
	if p.size > c.max/8 {
		return // one page may not crowd out the rest
	}
	if old, ok := ct.pages[key]; ok {
		c.size -= old.size
		delete(ct.pages, key)
	}
	if len(ct.pages) >= maxPagesPerTarget {
		return
	}
	for c.size+p.size > c.max && c.evictOne(targetID) {
	}
	if c.size+p.size > c.max {
		return
	}
	if ct.pages == nil {
		ct.pages = map[pageKey]cachedPage{}
	}
	ct.pages[key] = p
	c.size += p.size
}

func (c *PageCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// soonest is the smallest non-zero Expires of entries, 0 when none.
func soonest(entries []activity.Entry) int64 {
	var x int64
	for _, e := range entries {
		if e.Expires != 0 && (x == 0 || e.Expires < x) {
			x = e.Expires
		}
	}
	return x
}

func pageSize(entries []activity.Entry) int64 {
	n := int64(96)
	for _, e := range entries {
		n += int64(len(e.Key)+len(e.Doc)) + 40
	}
	return n
}

// evictOne drops the pages of some target other than keep (map order is
// random enough to spread evictions) and reports whether it found one;
// c.mu is held.
func (c *PageCache) evictOne(keep string) bool {
	for t, ct := range c.targets {
		if t == keep || len(ct.pages) == 0 {
			continue
		}
		c.dropPages(ct)
		if ct.pending == 0 {
			delete(c.targets, t)
		}
		return true
	}
	return false
}

// CachedBytes is the size the cached pages are counted at.
func (c *PageCache) CachedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// CachedTargets is how many targets the cache tracks.
func (c *PageCache) CachedTargets() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.targets)
}
