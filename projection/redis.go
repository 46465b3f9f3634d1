package projection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Redis is the read model in Redis (single node or cluster). Key layout of
// one generation of the read model, under its data prefix (the prefix
// given to NewRedis for the first generation, "<prefix>g<n>:" for the n-th
// rebuilt one; see generation.go for the keys that say which is current):
//
//	{<target>}:idx  ZSET, every score 0, member activity.SortKey()
//	                ("<fixed-width createdAt>|<id>"), so lexicographic order
//	                is the (createdAt, id) order of the history
//	{<target>}:doc  HASH activity id → API JSON of the activity
//	id:<id>         STRING → target id, for lookups by id
//
// <target> is the target id escaped by tagTarget so that it can never end
// the hash tag early: both keys of a target always hash to the same slot,
// which makes a page one script call on a cluster too.
type Redis struct {
	c       redis.UniversalClient
	prefix  string
	cluster bool // data and checkpoint cannot share a script
	meta    metaKeys

	// seen is the generation readers use and its applied position, as
	// last learnt from Redis; see Follow and WaitFor.
	seen    atomic.Pointer[seenState]
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever seen moves
}

// NewRedis returns the read model stored in c under prefix (for example
// "ah:"). The prefix must not contain '{' or '}', which would move the
// hash tag. Readers use the generation found by Refresh (or Follow); until
// then the first one.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	_, cluster := c.(*redis.ClusterClient)
	r := &Redis{c: c, prefix: prefix, cluster: cluster, meta: newMetaKeys(prefix), changed: make(chan struct{})}
	r.seen.Store(&seenState{data: prefix})
	return r
}

var (
	_ ReadModel = (*Redis)(nil)
	_ Reader    = (*Redis)(nil)
)

// pageScript reads one page in one round trip. KEYS[1] is the index,
// KEYS[2] the documents (same hash tag, so same slot); ARGV[1] the upper
// bound ("+" or "(<sortKey>"), ARGV[2] the limit. It returns
// {found, {doc…}}. The id is what follows the first '|' of a member: the
// time part never holds one, an id might.
var pageScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local members = {}
if n > 0 then
  members = redis.call('ZRANGE', KEYS[1], ARGV[1], '-', 'BYLEX', 'REV', 'LIMIT', 0, n)
end
if #members == 0 then
  return {redis.call('EXISTS', KEYS[1]), {}}
end
local ids = {}
for i, m in ipairs(members) do
  ids[i] = string.sub(m, string.find(m, '|', 1, true) + 1)
end
local docs = {}
-- unpack is bounded by the Lua C stack, so fetch in chunks.
for i = 1, #ids, 1000 do
  local got = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
  for j = 1, #got do docs[#docs + 1] = got[j] end
end
return {1, docs}
`)

// Page returns up to limit documents of target, newest first, strictly
// below the sort key before ("" = from the newest), with one script call.
func (r *Redis) Page(ctx context.Context, targetID, before string, limit int) ([][]byte, bool, error) {
	tag := r.targetKey(targetID)
	upper := "+"
	if before != "" {
		upper = "(" + before
	}
	res, err := pageScript.RunRO(ctx, r.c, []string{tag + ":idx", tag + ":doc"}, upper, max(limit, 0)).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("page %s: %w", targetID, err)
	}
	if len(res) != 2 {
		return nil, false, fmt.Errorf("page %s: unexpected reply of %d items", targetID, len(res))
	}
	if found, _ := res[0].(int64); found != 1 {
		return nil, false, nil
	}
	raw, _ := res[1].([]any)
	docs := make([][]byte, 0, len(raw))
	for _, d := range raw {
		// A missing document (nil) cannot occur given the write order of
		// Apply; skip rather than return an empty item.
		if s, ok := d.(string); ok {
			docs = append(docs, []byte(s))
		}
	}
	return docs, true, nil
}

// Get returns the document of one activity. It takes two round trips: the
// id key and the target's keys live in different slots, so one script
// cannot read both on a cluster.
func (r *Redis) Get(ctx context.Context, id string) ([]byte, bool, error) {
	target, err := r.c.Get(ctx, r.idKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", id, err)
	}
	doc, err := r.c.HGet(ctx, r.targetKey(target)+":doc", id).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", id, err)
	}
	return doc, true, nil
}

// Ping checks that Redis answers.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// targetKey is "<data prefix>{<escaped target>}", the stem of a target's
// keys in the generation readers use.
func (r *Redis) targetKey(targetID string) string {
	return targetKey(r.seen.Load().data, targetID)
}

// idKey is the id key of the generation readers use.
func (r *Redis) idKey(id string) string {
	return idKey(r.seen.Load().data, id)
}

func targetKey(data, targetID string) string {
	return data + "{" + tagTarget(targetID) + "}"
}

// idKey needs no escaping: it is read alone, so a brace in an id only
// changes which slot it lives in.
func idKey(data, id string) string {
	return data + "id:" + id
}

// tagTarget escapes a target id for use inside a hash tag. Redis hashes
// the text between the first '{' and the next '}', so a raw '}' would end
// the tag early (and "{}" would hash the whole key, splitting a target's
// keys across slots). Bytes outside the opaque target-id alphabet
// [A-Za-z0-9._~+/=-] are written as %XX, '%' included, which keeps UUIDs
// and valid opaque ids readable in redis-cli and the mapping one-to-one.
// The empty id becomes "%" so that the tag is never empty.
func tagTarget(id string) string {
	if id == "" {
		return "%"
	}
	if !needsEscape(id) {
		return id
	}
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if plainTargetByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&15])
	}
	return b.String()
}

func needsEscape(id string) bool {
	for i := 0; i < len(id); i++ {
		if !plainTargetByte(id[i]) {
			return true
		}
	}
	return false
}

func plainTargetByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("._~+/=-", c) >= 0
}
