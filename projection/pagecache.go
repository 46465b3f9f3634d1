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
// read model whose every write goes through this PageCache's Apply — that
// is, whose only writer is the projector of this process. It is a Model:
// give it to the projector and to the query side.
//
// A page is never older than what the read model serves once the
// checkpoint covers a batch: while a batch for a target is being applied
// its cached pages are neither served nor stored, and after it they are
// dropped, before and after the checkpoint moves. A read that began before
// an apply finished is not cached. Only first pages (no cursor) are kept:
// they are what a hot target is asked for again and again; deeper pages go
// to the read model, and so do filtered ones. The entries it returns are
// shared: read-only.
type PageCache struct {
	Model
	// Now is the clock expiry is judged by (nil: time.Now): a page is not
	// served from the cache once one of its entries expired.
	Now func() time.Time
	max int64 // bytes of documents

	mu      sync.Mutex
	targets map[string]*cachedTarget
	size    int64 // bytes of the cached documents
}

// cachedTarget is one target's cache state.
type cachedTarget struct {
	gen     uint64 // moves at every apply that touches the target
	pending int    // applies in progress
	pages   map[int]cachedPage
}

// cachedPage is a first page of limit entries.
type cachedPage struct {
	gen     uint64
	page    activity.Page
	size    int64
	expires int64 // the soonest Expires of its entries, 0 = none
}

// NewPageCache returns m with a cache of first pages holding at most
// maxBytes of documents; 0 turns caching off.
func NewPageCache(m Model, maxBytes int64) *PageCache {
	return &PageCache{Model: m, max: maxBytes, targets: map[string]*cachedTarget{}}
}

// Apply marks the batch's targets as changing, applies it (data, then
// checkpoint) and drops their cached pages.
func (c *PageCache) Apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	seen := make(map[string]bool, len(acts))
	var targets []string
	for _, a := range acts {
		if !seen[a.TargetID] {
			seen[a.TargetID] = true
			targets = append(targets, a.TargetID)
		}
	}
	return c.changing(targets, func() error { return c.Model.Apply(ctx, position, acts) })
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

// dropPages forgets a target's pages; c.mu is held.
func (c *PageCache) dropPages(ct *cachedTarget) {
	for _, p := range ct.pages {
		c.size -= p.size
	}
	ct.pages = nil
}

// Page serves an unfiltered first page from the cache when it can,
// otherwise from the read model, keeping the answer when no apply touched
// the target meanwhile.
func (c *PageCache) Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error) {
	if q.Before != "" || !q.Filter.IsZero() || q.MaxScan != 0 || c.max <= 0 {
		return c.Model.Page(ctx, targetID, q)
	}
	limit := q.Limit
	c.mu.Lock()
	ct := c.targets[targetID]
	if ct == nil {
		ct = &cachedTarget{}
		c.targets[targetID] = ct
	}
	if p, ok := ct.pages[limit]; ok && ct.pending == 0 && p.gen == ct.gen && !activity.Expired(p.expires, c.now()) {
		c.mu.Unlock()
		return p.page, nil
	}
	gen, cacheable := ct.gen, ct.pending == 0
	c.mu.Unlock()

	page, err := c.Model.Page(ctx, targetID, q)
	c.mu.Lock()
	defer c.mu.Unlock()
	// Keep it only if the target did not change, nor its state get
	// replaced, meanwhile.
	if err == nil && page.Found && cacheable && c.targets[targetID] == ct && ct.gen == gen && ct.pending == 0 {
		c.store(ct, limit, cachedPage{gen: gen, page: page, size: pageSize(page.Entries), expires: soonest(page.Entries)}, targetID)
	}
	// A state with nothing in it goes, so that reads of targets without
	// history cannot grow the map.
	if c.targets[targetID] == ct && ct.pending == 0 && len(ct.pages) == 0 {
		delete(c.targets, targetID)
	}
	return page, err
}

// store keeps p as ct's page of limit, evicting other targets' pages to
// stay within the budget; c.mu is held.
func (c *PageCache) store(ct *cachedTarget, limit int, p cachedPage, targetID string) {
	if p.size > c.max/8 {
		return // one page may not crowd out the rest
	}
	if old, ok := ct.pages[limit]; ok {
		c.size -= old.size
		delete(ct.pages, limit)
	}
	for c.size+p.size > c.max && c.evictOne(targetID) {
	}
	if c.size+p.size > c.max {
		return
	}
	if ct.pages == nil {
		ct.pages = map[int]cachedPage{}
	}
	ct.pages[limit] = p
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
