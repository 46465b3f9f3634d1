package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
)

// Redis is the read model in Redis (single node or cluster). Key layout,
// all under the prefix given to NewRedis:
//
//	{<target>}:idx  ZSET, every score 0, member activity.SortKey()
//	                ("<fixed-width createdAt>|<id>"), so lexicographic order
//	                is the (createdAt, id) order of the history
//	{<target>}:doc  HASH activity id → API JSON of the activity
//	id:<id>         STRING → target id, for lookups by id
//	checkpoint      STRING → position of the last applied batch
//
// <target> is the target id escaped by tagTarget so that it can never end
// the hash tag early: both keys of a target always hash to the same slot,
// which makes a page one script call on a cluster too.
type Redis struct {
	c      redis.UniversalClient
	prefix string
}

// NewRedis returns the read model stored in c under prefix (for example
// "ah:"). The prefix must not contain '{' or '}', which would move the
// hash tag.
func NewRedis(c redis.UniversalClient, prefix string) *Redis {
	return &Redis{c: c, prefix: prefix}
}

var (
	_ ReadModel = (*Redis)(nil)
	_ Reader    = (*Redis)(nil)
)

// pageScript reads one page in one round trip. KEYS[1] is the index,
// KEYS[2] the documents (same hash tag, so same slot). ARGV:
//
//	[1] upper bound ("+" or "(<sortKey>"), [2] lower bound ("-" or "[<key>")
//	[3] limit, [4] the most members to examine
//	[5] n, then n types; then m, then m target types; then the rest are
//	    sourceDomain suffixes (`,"sourceDomain":<JSON string>}`)
//
// It returns {found, {key, doc, key, doc…}, scannedTo, scanned}, scannedTo
// being the last member examined when the bound stopped a page short.
//
// Entries are checked by a list of predicates over (member, document), so
// another check is one more function in keeps. The document is the API
// JSON of activity.MarshalJSON: id, targetId, type, targetType, createdAt,
// … in that order, sourceDomain last. An unescaped `,"type":"` can only be
// JSON structure, and before type there are only two strings, so its first
// occurrence is the field (targetType likewise); a string value cannot hold
// an unescaped quote, so a document ending in the suffix has exactly that
// sourceDomain. The id is what follows the first '|' of a member: the time
// part never holds one, an id might.
var pageScript = redis.NewScript(`
local upper, lower = ARGV[1], ARGV[2]
local limit, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local keeps = {}
local function field(name, at)
  local n = tonumber(ARGV[at])
  if n == 0 then return at + 1 end
  local set = {}
  for i = 1, n do set[ARGV[at + i]] = true end
  local pat = ',"' .. name .. '":"'
  keeps[#keeps + 1] = function(m, doc)
    local s = string.find(doc, pat, 1, true)
    if not s then return false end
    s = s + #pat
    local e = string.find(doc, '"', s, true)
    return e ~= nil and set[string.sub(doc, s, e - 1)] == true
  end
  return at + n + 1
end
local at = field('type', 5)
at = field('targetType', at)
if at <= #ARGV then
  local sfx = {}
  for i = at, #ARGV do sfx[#sfx + 1] = ARGV[i] end
  keeps[#keeps + 1] = function(m, doc)
    for _, x in ipairs(sfx) do
      if #doc >= #x and string.sub(doc, -#x) == x then return true end
    end
    return false
  end
end
local function keep(m, doc)
  for _, k in ipairs(keeps) do
    if not k(m, doc) then return false end
  end
  return true
end

local out, got, scanned, last, exhausted = {}, 0, 0, nil, false
while got < limit and scanned < budget do
  local chunk = limit - got
  if #keeps > 0 then chunk = math.min(budget - scanned, math.max(chunk, 100)) end
  local members = redis.call('ZRANGE', KEYS[1], upper, lower, 'BYLEX', 'REV', 'LIMIT', 0, chunk)
  if #members == 0 then exhausted = true break end
  local ids = {}
  for i, m in ipairs(members) do
    ids[i] = string.sub(m, string.find(m, '|', 1, true) + 1)
  end
  local docs = {}
  -- unpack is bounded by the Lua C stack, so fetch in chunks.
  for i = 1, #ids, 1000 do
    local g = redis.call('HMGET', KEYS[2], unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #g do docs[#docs + 1] = g[j] end
  end
  for i, m in ipairs(members) do
    scanned = scanned + 1
    last = m
    -- A missing document (false) cannot occur given the write order of
    -- Apply; skip rather than return an empty item.
    if docs[i] and keep(m, docs[i]) then
      out[#out + 1] = m
      out[#out + 1] = docs[i]
      got = got + 1
      if got == limit then break end
    end
  end
  if #members < chunk then exhausted = true break end
  upper = '(' .. last
end
local found = 1
if scanned == 0 then found = redis.call('EXISTS', KEYS[1]) end
local scannedTo = ''
if got < limit and not exhausted and last then scannedTo = last end
return {found, out, scannedTo, scanned}
`)

// checkpointScript moves the checkpoint forward only. Positions are
// decimal strings without leading zeros, compared by length then bytes so
// that no precision is lost to Lua's doubles.
var checkpointScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local new = ARGV[1]
if cur and (#cur > #new or (#cur == #new and cur >= new)) then
  return cur
end
redis.call('SET', KEYS[1], new)
return new
`)

// Apply writes the batch with one pipeline, then moves the checkpoint.
//
// Crash safety: every data command is idempotent (HSET of the same
// document, ZADD of the same member, SET of the same target id), so a
// batch applied again after a crash or a failed Exec leaves the same state.
// The checkpoint is written only after every data command succeeded: on a
// cluster a pipeline fans out to the nodes in parallel, so putting the
// checkpoint in the same pipeline would not order it after the data. The
// worst a crash can do is make the projector apply the batch once more.
//
// Within a target the document is written before its index member, so a
// concurrent page never meets a member whose document is missing.
func (r *Redis) Apply(ctx context.Context, position uint64, acts []activity.Activity) error {
	if len(acts) > 0 {
		pipe := r.c.Pipeline()
		for _, a := range acts {
			doc, err := a.MarshalJSON() // the bytes of json.Marshal(a), one pass fewer
			if err != nil {
				return fmt.Errorf("apply %s: %w", a.ID, err)
			}
			tag := r.targetKey(a.TargetID)
			pipe.HSet(ctx, tag+":doc", a.ID, doc)
			pipe.ZAdd(ctx, tag+":idx", redis.Z{Score: 0, Member: a.SortKey()})
			pipe.Set(ctx, r.idKey(a.ID), a.TargetID, 0)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("apply batch up to %d: %w", position, err)
		}
	}
	pos := strconv.FormatUint(position, 10)
	if err := checkpointScript.Run(ctx, r.c, []string{r.prefix + "checkpoint"}, pos).Err(); err != nil {
		return fmt.Errorf("set checkpoint %d: %w", position, err)
	}
	return nil
}

// Checkpoint returns the position of the last applied batch, 0 when none.
func (r *Redis) Checkpoint(ctx context.Context) (uint64, error) {
	s, err := r.c.Get(ctx, r.prefix+"checkpoint").Result()
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

// Page returns one page of targetID's history with one script call.
func (r *Redis) Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error) {
	tag := r.targetKey(targetID)
	args := pageArgs(q)
	res, err := pageScript.RunRO(ctx, r.c, []string{tag + ":idx", tag + ":doc"}, args...).Slice()
	if err != nil {
		return activity.Page{}, fmt.Errorf("page %s: %w", targetID, err)
	}
	if len(res) != 4 {
		return activity.Page{}, fmt.Errorf("page %s: unexpected reply of %d items", targetID, len(res))
	}
	p := activity.Page{Index: tag + ":idx"}
	if found, _ := res[0].(int64); found != 1 {
		return p, nil
	}
	p.Found = true
	raw, _ := res[1].([]any)
	p.Entries = make([]activity.Entry, 0, len(raw)/2)
	for i := 0; i+1 < len(raw); i += 2 {
		k, _ := raw[i].(string)
		d, _ := raw[i+1].(string)
		p.Entries = append(p.Entries, activity.Entry{Key: k, Doc: []byte(d)})
	}
	p.ScannedTo, _ = res[2].(string)
	n, _ := res[3].(int64)
	p.Scanned = int(n)
	return p, nil
}

// pageArgs are the ARGV of pageScript for q.
func pageArgs(q activity.PageQuery) []any {
	upper, lower := "+", "-"
	lo, hi := q.Filter.KeyRange()
	if q.Before != "" && (hi == "" || q.Before < hi) {
		hi = q.Before
	}
	if hi != "" {
		upper = "(" + hi
	}
	if lo != "" {
		lower = "[" + lo
	}
	f := q.Filter
	args := make([]any, 0, 7+len(f.Types)+len(f.TargetTypes)+len(f.SourceDomains))
	args = append(args, upper, lower, max(q.Limit, 0), scanBudget(q), len(f.Types))
	for _, t := range f.Types {
		args = append(args, string(t))
	}
	args = append(args, len(f.TargetTypes))
	for _, t := range f.TargetTypes {
		args = append(args, string(t))
	}
	for _, d := range f.SourceDomains {
		args = append(args, sourceDomainSuffix(d))
	}
	return args
}

// sourceDomainSuffix is how a document with sourceDomain d ends: the same
// encoder wrote it, so the same escaping applies.
func sourceDomainSuffix(d string) string {
	b, _ := json.Marshal(d) // a string always encodes
	return `,"sourceDomain":` + string(b) + "}"
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

// targetKey is "<prefix>{<escaped target>}", the stem of a target's keys.
func (r *Redis) targetKey(targetID string) string {
	return r.prefix + "{" + tagTarget(targetID) + "}"
}

// idKey needs no escaping: it is read alone, so a brace in an id only
// changes which slot it lives in.
func (r *Redis) idKey(id string) string {
	return r.prefix + "id:" + id
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
