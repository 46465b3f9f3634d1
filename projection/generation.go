package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The read model's own state lives in one hash slot, "{%meta}", so that
// one script can check the lease, the generation and move a checkpoint
// together, on a cluster too. tagTarget never writes "%m" (it escapes as
// %XX in upper-case hex), so no target can share these keys:
//
//	{%meta}:gen          STRING  generation readers use; absent = the first ("")
//	{%meta}:checkpoints  HASH    generation → position of its last applied batch
//	{%meta}:lease        STRING  "<token>|<holder>" of the active projector, with a TTL
//	{%meta}:fence        STRING  counter the lease's fencing tokens come from
//	{%meta}:rebuild      STRING  "<token>|<holder>" of a running rebuild, with a TTL
//	{%meta}:building     STRING  generation a rebuild is building
//	{%meta}:gens         STRING  counter of generation numbers
//	{%meta}:applied      pub/sub channel: "<generation> <position>" after each batch
//
// Before generations existed the checkpoint was the key "checkpoint"; it
// is still read for the first generation when the hash has no entry.
type metaKeys struct {
	gen, checkpoints, lease, fence, rebuild, building, gens, applied, legacyCheckpoint string
}

func newMetaKeys(prefix string) metaKeys {
	m := prefix + "{%meta}:"
	return metaKeys{
		gen: m + "gen", checkpoints: m + "checkpoints", lease: m + "lease", fence: m + "fence",
		rebuild: m + "rebuild", building: m + "building", gens: m + "gens", applied: m + "applied",
		legacyCheckpoint: prefix + "checkpoint",
	}
}

// dataPrefix is where generation gen keeps its keys.
func (r *Redis) dataPrefix(gen string) string {
	if gen == "" {
		return r.prefix
	}
	return r.prefix + gen + ":"
}

// seenState is what a reader last learnt: the generation and its position.
type seenState struct {
	gen     string
	data    string
	applied uint64
}

// stateScript reads the current generation and its checkpoint in one call.
// KEYS: gen, checkpoints, legacy checkpoint (read only for the first
// generation; on a cluster it is in another slot, and not passed).
var stateScript = redis.NewScript(`
local gen = redis.call('GET', KEYS[1]) or ''
local pos = redis.call('HGET', KEYS[2], gen)
if not pos and gen == '' and KEYS[3] then pos = redis.call('GET', KEYS[3]) end
return {gen, pos or '0'}
`)

// Refresh learns the generation readers should use and how far it is
// applied: one round trip.
func (r *Redis) Refresh(ctx context.Context) error {
	keys := []string{r.meta.gen, r.meta.checkpoints}
	if !r.cluster {
		keys = append(keys, r.meta.legacyCheckpoint)
	}
	res, err := stateScript.RunRO(ctx, r.c, keys).StringSlice()
	if err != nil {
		return fmt.Errorf("read generation: %w", err)
	}
	if len(res) != 2 {
		return fmt.Errorf("read generation: unexpected reply of %d items", len(res))
	}
	pos, err := strconv.ParseUint(res[1], 10, 64)
	if err != nil {
		return fmt.Errorf("parse checkpoint %q: %w", res[1], err)
	}
	r.learn(res[0], pos, true)
	return nil
}

// learn records what was read or announced. A position of the generation
// in use only moves forward; a new generation replaces the state when it
// comes from a read of the current one (authoritative), not from an
// announcement, which may be older than a switch already seen.
func (r *Redis) learn(gen string, pos uint64, current bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.seen.Load()
	switch {
	case gen == cur.gen && pos > cur.applied:
		r.seen.Store(&seenState{gen: gen, data: cur.data, applied: pos})
	case gen != cur.gen && current:
		r.seen.Store(&seenState{gen: gen, data: r.dataPrefix(gen), applied: pos})
	default:
		return
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// followPoll is how often Follow reads the state even without a
// notification, so a lost one costs at most this long; a rebuild waits a
// few of these before deleting the generation it replaced.
const followPoll = time.Second

// Follow keeps what readers know current until ctx ends: it listens to
// the projector's notifications and reads the state every followPoll. It
// returns nil when ctx ends.
func (r *Redis) Follow(ctx context.Context) error {
	sub := r.c.Subscribe(ctx, r.meta.applied)
	defer sub.Close()
	msgs := sub.Channel()
	tick := time.NewTicker(followPoll)
	defer tick.Stop()
	_ = r.Refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			_ = r.Refresh(ctx) // a failure is retried on the next tick
		case m, ok := <-msgs:
			if !ok {
				return nil
			}
			gen, p, _ := strings.Cut(m.Payload, " ")
			pos, err := strconv.ParseUint(p, 10, 64)
			if err != nil {
				continue
			}
			if gen != r.seen.Load().gen {
				_ = r.Refresh(ctx) // a switch: read it rather than trust the order of messages
				continue
			}
			r.learn(gen, pos, false)
		}
	}
}

// Applied is the position readers' generation is known to have applied.
func (r *Redis) Applied() uint64 { return r.seen.Load().applied }

// WaitFor blocks until the generation readers use has applied position,
// or ctx ends. It costs nothing when that is already known; otherwise it
// reads the state with a backoff from 2 ms to 50 ms, woken early by
// Follow's notifications when Follow runs.
func (r *Redis) WaitFor(ctx context.Context, position uint64) error {
	wait := 2 * time.Millisecond
	for {
		r.mu.Lock()
		seen, changed := r.seen.Load(), r.changed
		r.mu.Unlock()
		if seen.applied >= position {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-changed:
			t.Stop()
			continue
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("wait for position %d (at %d): %w", position, seen.applied, ctx.Err())
		}
		wait = min(2*wait, 50*time.Millisecond)
		if err := r.refreshShared(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
}

// sharedFresh is how long the waiters' last Refresh counts as current.
const sharedFresh = 2 * time.Millisecond

// refreshShared is Refresh for waiters: one read in flight at a time,
// whose result every waiter that asks meanwhile, or within sharedFresh
// after it, shares. Thousands of waiters each polling on their own took
// the connections the projector and the lease needed, which made the lag
// they waited out grow.
func (r *Redis) refreshShared(ctx context.Context) error {
	r.mu.Lock()
	if time.Since(r.refreshed) < sharedFresh {
		r.mu.Unlock()
		return nil
	}
	if ch := r.refreshing; ch != nil {
		r.mu.Unlock()
		select {
		case <-ch:
			return nil // its error, if any, was its caller's to report
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	ch := make(chan struct{})
	r.refreshing = ch
	r.mu.Unlock()
	err := r.Refresh(ctx)
	r.mu.Lock()
	r.refreshing = nil
	if err == nil {
		r.refreshed = time.Now()
	}
	r.mu.Unlock()
	close(ch)
	return err
}

// currentGeneration reads which generation readers use.
func (r *Redis) currentGeneration(ctx context.Context) (string, error) {
	g, err := r.c.Get(ctx, r.meta.gen).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read generation: %w", err)
	}
	return g, nil
}
