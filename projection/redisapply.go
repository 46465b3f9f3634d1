package projection

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
)

// ErrFenced is returned by a fenced writer whose lease has passed to
// another holder, or whose generation is no longer the one readers use:
// it must stop writing.
var ErrFenced = errors.New("read model writer fenced off")

// applyChunk is the most activities one apply script writes: Redis runs a
// script to its end before serving anyone else, so a batch is cut into
// chunks that go in one pipeline (one round trip) and let reads in between.
const applyChunk = 200

// applyScript checks the writer's fence, writes a chunk of activities and,
// when given a position, moves the generation's checkpoint forward and
// announces it. The chunk comes grouped by target, so that each target
// costs one HSET and one ZADD, and all id keys one MSET.
//
// KEYS: lease, gen, checkpoints, then per target its document hash and
// index, then every activity's id key. ARGV: the lease value the writer
// must hold ("" = unfenced), its generation, "1" to check that the
// generation is current, the position ("" = data only), the channel, the
// number of targets, then per target its count and per activity id, sort
// key, document; then the target id of each id key.
//
// Positions are decimal strings without leading zeros, compared by length
// then bytes so that no precision is lost to Lua's doubles. Within a
// target the documents are written before their index members, so a page
// never meets a member without its document.
var applyScript = redis.NewScript(`
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED the projector lease is held by another process')
end
if ARGV[3] == '1' and (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then
  return redis.error_reply('FENCED the read model generation was replaced')
end
local k, a = 4, 7
for g = 1, tonumber(ARGV[6]) do
  local n = tonumber(ARGV[a])
  a = a + 1
  local h, z = {}, {}
  for i = 1, n do
    h[2 * i - 1], h[2 * i] = ARGV[a], ARGV[a + 2]
    z[2 * i - 1], z[2 * i] = 0, ARGV[a + 1]
    a = a + 3
  end
  redis.call('HSET', KEYS[k], unpack(h))
  redis.call('ZADD', KEYS[k + 1], unpack(z))
  k = k + 2
end
local m = {}
for i = k, #KEYS do
  m[#m + 1] = KEYS[i]
  m[#m + 1] = ARGV[a]
  a = a + 1
end
if #m > 0 then redis.call('MSET', unpack(m)) end
local new = ARGV[4]
if new ~= '' then
  local cur = redis.call('HGET', KEYS[3], ARGV[2])
  if not cur or #cur < #new or (#cur == #new and cur < new) then
    redis.call('HSET', KEYS[3], ARGV[2], new)
  end
  redis.call('PUBLISH', ARGV[5], ARGV[2] .. ' ' .. new)
end
return 1
`)

// redisWriter applies batches to one generation, fenced or not.
type redisWriter struct {
	r        *Redis
	gen      string
	data     string
	lease    string // key the fence is checked on
	holding  string // value the lease must hold; "" = unfenced
	checkGen bool   // refuse once gen is no longer current
}

var _ ReadModel = (*redisWriter)(nil)

// writer is an unfenced writer of the generation readers use.
func (r *Redis) writer() *redisWriter {
	s := r.seen.Load()
	return &redisWriter{r: r, gen: s.gen, data: s.data, lease: r.meta.lease}
}

// Apply writes the batch to the generation readers use, unfenced: for a
// projector that runs alone. With several, give each a RedisLease.
func (r *Redis) Apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	return r.writer().Apply(ctx, position, acts)
}

// Checkpoint returns the position of the last applied batch of the
// generation readers use, 0 when none.
func (r *Redis) Checkpoint(ctx context.Context) (uint64, error) {
	return r.writer().Checkpoint(ctx)
}

// Apply writes the batch and then moves the checkpoint, in one round trip
// on a single Redis: a pipeline of apply scripts, the last of which moves
// the checkpoint, each checking the fence.
//
// Crash safety: every data command is idempotent (HSET of the same
// document, ZADD of the same member, SET of the same target id), so a
// batch applied again after a crash or a failed call leaves the same
// state; the checkpoint moves only in the last script, after every chunk
// before it on the same connection.
//
// On a cluster the keys of a batch live in many slots, which no script
// can span: the data goes first as one pipeline (fanned out to the nodes
// in parallel, and waited for in full), then the fenced checkpoint script
// in the meta slot. There the fence guards the checkpoint; the data
// commands of a deposed writer can only rewrite values already recorded.
func (w *redisWriter) Apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	err := w.apply(ctx, position, acts)
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// Redis restarted or its script cache was flushed.
		if lerr := applyScript.Load(ctx, w.r.c).Err(); lerr != nil {
			return fmt.Errorf("load apply script: %w", lerr)
		}
		err = w.apply(ctx, position, acts)
	}
	if err != nil && strings.HasPrefix(redisMessage(err), "FENCED") {
		return fmt.Errorf("apply batch up to %d: %w: %v", position, ErrFenced, err)
	}
	if err != nil {
		return fmt.Errorf("apply batch up to %d: %w", position, err)
	}
	return nil
}

func redisMessage(err error) string {
	var re redis.Error
	if errors.As(err, &re) {
		return re.Error()
	}
	return ""
}

func (w *redisWriter) apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	pos := strconv.FormatUint(position, 10)
	if w.r.cluster {
		if err := w.applyData(ctx, acts); err != nil {
			return err
		}
		return w.script(ctx, w.r.c, pos, nil, nil).Err()
	}
	pipe := w.r.c.Pipeline()
	for len(acts) > applyChunk {
		keys, args, err := w.chunk(acts[:applyChunk])
		if err != nil {
			return err
		}
		w.expiry(ctx, pipe, acts[:applyChunk])
		w.script(ctx, pipe, "", keys, args)
		acts = acts[applyChunk:]
	}
	keys, args, err := w.chunk(acts)
	if err != nil {
		return err
	}
	w.expiry(ctx, pipe, acts)
	w.script(ctx, pipe, pos, keys, args)
	_, err = pipe.Exec(ctx)
	return err
}

// script queues or runs one apply script; keys and args are those of
// chunk, appended after the fixed ones (nil for the checkpoint alone).
func (w *redisWriter) script(ctx context.Context, c redis.Scripter, pos string, keys []string, args []any) *redis.Cmd {
	keys = append([]string{w.lease, w.r.meta.gen, w.r.meta.checkpoints}, keys...)
	check := "0"
	if w.checkGen {
		check = "1"
	}
	if args == nil {
		args = []any{0}
	}
	args = append([]any{w.holding, w.gen, check, pos, w.r.meta.applied}, args...)
	if _, ok := c.(redis.Pipeliner); ok {
		// A pipeline cannot fall back to EVAL; Apply loads the script on NOSCRIPT.
		return applyScript.EvalSha(ctx, c, keys, args...)
	}
	return applyScript.Run(ctx, c, keys, args...)
}

// chunk returns the keys and arguments of acts for applyScript, grouped
// by target in order of first appearance.
func (w *redisWriter) chunk(acts []activity.Activity) ([]string, []any, error) {
	order := make([]string, 0, 8)
	groups := make(map[string][]int, 8)
	for i, a := range acts {
		if _, ok := groups[a.TargetID]; !ok {
			order = append(order, a.TargetID)
		}
		groups[a.TargetID] = append(groups[a.TargetID], i)
	}
	keys := make([]string, 0, 2*len(order)+len(acts))
	args := make([]any, 0, 1+len(order)+4*len(acts))
	args = append(args, len(order))
	for _, target := range order {
		tag := targetKey(w.data, target)
		keys = append(keys, tag+":doc", tag+":idx")
		args = append(args, len(groups[target]))
		for _, i := range groups[target] {
			a := acts[i]
			doc, err := a.MarshalJSON() // the bytes of json.Marshal(a), one pass fewer
			if err != nil {
				return nil, nil, fmt.Errorf("apply %s: %w", a.ID, err)
			}
			args = append(args, a.ID, a.SortKey(), doc)
		}
	}
	for _, a := range acts {
		keys = append(keys, idKey(w.data, a.ID))
		args = append(args, a.TargetID)
	}
	return keys, args, nil
}

// applyData is the cluster's data pipeline.
func (w *redisWriter) applyData(ctx context.Context, acts []activity.Activity) error {
	if len(acts) == 0 {
		return nil
	}
	pipe := w.r.c.Pipeline()
	w.expiry(ctx, pipe, acts)
	for _, a := range acts {
		doc, err := a.MarshalJSON()
		if err != nil {
			return fmt.Errorf("apply %s: %w", a.ID, err)
		}
		tag := targetKey(w.data, a.TargetID)
		pipe.HSet(ctx, tag+":doc", a.ID, doc)
		pipe.ZAdd(ctx, tag+":idx", redis.Z{Score: 0, Member: a.SortKey()})
		pipe.Set(ctx, idKey(w.data, a.ID), a.TargetID, 0)
	}
	_, err := pipe.Exec(ctx)
	return err
}

// expiry queues the expiry of the activities with a TTL: into their
// target's expiry index, which pages check, and the generation's
// expiring index, which the sweeper reads. Queued before the activities'
// own writes, so no reader sees an activity before its expiry.
func (w *redisWriter) expiry(ctx context.Context, pipe redis.Pipeliner, acts []activity.Activity) {
	for _, a := range acts {
		if x := a.Expires(); x != 0 {
			pipe.ZAdd(ctx, targetKey(w.data, a.TargetID)+":exp", redis.Z{Score: float64(x), Member: a.ID})
			pipe.ZAdd(ctx, w.expiringKey(), redis.Z{Score: float64(x), Member: expiringMember(a.TargetID, a.ID)})
		}
	}
}

// Checkpoint returns the position of the writer's generation, 0 when none.
func (w *redisWriter) Checkpoint(ctx context.Context) (uint64, error) {
	s, err := w.r.c.HGet(ctx, w.r.meta.checkpoints, w.gen).Result()
	if errors.Is(err, redis.Nil) && w.gen == "" {
		s, err = w.r.c.Get(ctx, w.r.meta.legacyCheckpoint).Result()
	}
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("get checkpoint: %w", err)
	}
	p, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse checkpoint %q: %w", s, err)
	}
	return p, nil
}
