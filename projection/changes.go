package projection

import (
	"context"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
)

// Changes on Redis. Whichever process applies a batch (or forgets
// activities) announces the targets it changed on the channel
// "<prefix>{%meta}:changes", from the same script that moves the
// checkpoint, so a checkpoint never moves unannounced:
//
//	"<generation> <position> <target> <target>…"
//
// targets escaped as in key names (tagTarget), so none holds a space.
// Query processes' page caches subscribe (PageCache.FollowRedis) and drop
// those targets' pages. This file is the whole of it but for one line of
// the apply script, which publishes the note changeNote builds.

// changesChannel is where changed targets are announced.
func (r *Redis) changesChannel() string { return r.prefix + "{%meta}:changes" }

// changeNote is what the apply script publishes after moving gen's
// checkpoint to position: the channel and the message, as two ARGV.
func (r *Redis) changeNote(gen string, position uint64, targets []string) []any {
	var b strings.Builder
	b.WriteString(gen)
	b.WriteByte(' ')
	b.WriteString(strconv.FormatUint(position, 10))
	for _, t := range targets {
		b.WriteByte(' ')
		b.WriteString(tagTarget(t))
	}
	return []any{r.changesChannel(), b.String()}
}

// batchTargets are the distinct targets of acts, in order of appearance.
func batchTargets(acts []activity.Activity) []string {
	seen := make(map[string]bool, 8)
	var targets []string
	for _, a := range acts {
		if !seen[a.TargetID] {
			seen[a.TargetID] = true
			targets = append(targets, a.TargetID)
		}
	}
	return targets
}

// generationInUse is the generation readers use.
func (r *Redis) generationInUse() string { return r.seen.Load().gen }

// NewRedisPageCache returns a page cache in front of r for the query side,
// told of changes by FollowRedis (which must run for it to cache at all).
func NewRedisPageCache(r *Redis, maxBytes int64) *PageCache {
	c := NewPageCache(r, maxBytes)
	c.feed, c.generation, c.redis = true, r.generationInUse, r
	return c
}

// feedPing is how long the subscription may stay silent before it is
// pinged; a ping unanswered as long again counts as losing it.
const feedPing = time.Second

// FollowRedis keeps a cache of NewRedisPageCache in step with the read
// model until ctx ends: it subscribes to the announcements of changed
// targets and drops their pages. Until subscribed, and from the moment the
// subscription fails until it is back, every page is dropped and nothing
// is served or stored: an announcement may have been missed.
func (c *PageCache) FollowRedis(ctx context.Context) {
	wait := 50 * time.Millisecond
	for ctx.Err() == nil {
		if c.follow(ctx) {
			wait = 50 * time.Millisecond
		}
		c.pause()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 2*time.Second)
	}
}

// follow runs one subscription until it fails, and reports whether it
// got as far as caching.
func (c *PageCache) follow(ctx context.Context) (live bool) {
	r := c.redis
	sub := r.c.Subscribe(ctx, r.changesChannel())
	defer sub.Close()
	stop := context.AfterFunc(ctx, func() { _ = sub.Close() })
	defer stop()
	pinged := false
	for {
		msg, err := sub.ReceiveTimeout(ctx, feedPing)
		if err != nil {
			var ne net.Error
			if ctx.Err() == nil && !pinged && errors.As(err, &ne) && ne.Timeout() {
				pinged = true
				if sub.Ping(ctx) == nil {
					continue
				}
			}
			return live
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			// A second confirmation is go-redis subscribing again on a
			// new connection: what was said in between is lost.
			if m.Kind != "subscribe" || live {
				return live
			}
			// Every change up to the checkpoint read now is in what any
			// later read sees; later ones will be heard.
			if err := r.Refresh(ctx); err != nil {
				return false
			}
			c.resume(r.Applied())
			live = true
		case *redis.Message:
			c.heard(m.Payload)
		}
	}
}

// unheardFor is how long the read model may be known to have applied
// a position no announcement has reached before the cache stops serving:
// a projector that does not announce (an older version, during a rolling
// upgrade) must not leave pages stale for long.
const unheardFor = time.Second

// unheard reports that announcements have lagged the read model's
// checkpoint for longer than unheardFor, dropping every page then; c.mu
// is held.
func (c *PageCache) unheard() bool {
	if c.redis.Applied() <= c.through {
		c.behindSince = time.Time{}
		return false
	}
	now := time.Now()
	if c.behindSince.IsZero() {
		c.behindSince = now
		return false
	}
	if now.Sub(c.behindSince) < unheardFor {
		return false
	}
	c.dropAll()
	return true
}

// pause drops every page and stops caching until resume.
func (c *PageCache) pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.live = false
	c.dropAll()
}

// resume starts caching afresh, every change up to through being known.
func (c *PageCache) resume(through uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropAll()
	c.live, c.through, c.behindSince = true, through, time.Time{}
}

// heard drops the pages of the targets a change announces. Only an
// announcement of the generation readers use says how far they are
// known: a rebuild's may run ahead of it.
func (c *PageCache) heard(msg string) {
	gen, rest, _ := strings.Cut(msg, " ")
	p, targets, _ := strings.Cut(rest, " ")
	pos, err := strconv.ParseUint(p, 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.dropAll() // not ours to understand: assume anything changed
		return
	}
	for t := range strings.SplitSeq(targets, " ") {
		if id, err := url.PathUnescape(t); err == nil {
			c.changed(id)
		}
	}
	if gen == c.generation() && pos > c.through {
		c.through = pos
	}
}
