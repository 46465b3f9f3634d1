package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
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
//	{<target>}:exp  ZSET activity id → the unix second it expires at, for
//	                the activities with a TTL only (no key: none expire)
//	id:<id>         STRING → target id, for lookups by id
//	expiring        ZSET "<len(target)>:<target><id>" → the second it
//	                expires at, of every activity with a TTL: the sweeper's
//	                work list
//
// <target> is the target id escaped by tagTarget so that it can never end
// the hash tag early: both keys of a target always hash to the same slot,
// which makes a page one script call on a cluster too.
type Redis struct {
	// Now is the clock expiry is judged by (nil: time.Now); set it before
	// use.
	Now func() time.Time

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
// KEYS[2] the documents, KEYS[3] the expiry index (same hash tag, so same
// slot). ARGV:
//
//	[1] upper bound ("+" or "(<sortKey>"), [2] lower bound ("-" or "[<key>")
//	[3] limit, [4] the most members to examine, [5] the same when the
//	target has activities that expire, [6] now in unix seconds
//	[7] n, then n types; then m, then m target types; then the rest are
//	    sourceDomain suffixes (`,"sourceDomain":<JSON string>}`)
//
// It returns {found, {key, doc, expires, key, doc, expires…}, scannedTo,
// scanned}, scannedTo being the last member examined when the bound
// stopped a page short. Expired members are examined and skipped; a
// target without any live one is not found.
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
local limit, budget, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[6])
local expiring = redis.call('EXISTS', KEYS[3]) == 1
if expiring then budget = tonumber(ARGV[5]) end
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
local at = field('type', 7)
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
-- unpack is bounded by the Lua C stack, so ask in chunks.
local function many(cmd, key, ids)
  local out = {}
  for i = 1, #ids, 1000 do
    local g = redis.call(cmd, key, unpack(ids, i, math.min(i + 999, #ids)))
    for j = 1, #g do out[#out + 1] = g[j] end
  end
  return out
end

local out, got, scanned, last, exhausted = {}, 0, 0, nil, false
while got < limit and scanned < budget do
  local chunk = limit - got
  if #keeps > 0 then
    chunk = math.max(chunk, 100)
  elseif scanned > 0 then
    -- Expired entries were skipped: ask for as many more as that rate needs.
    chunk = math.ceil(chunk * scanned / math.max(got, 1))
  end
  chunk = math.min(budget - scanned, chunk)
  local members = redis.call('ZRANGE', KEYS[1], upper, lower, 'BYLEX', 'REV', 'LIMIT', 0, chunk)
  if #members == 0 then exhausted = true break end
  local ids = {}
  for i, m in ipairs(members) do
    ids[i] = string.sub(m, string.find(m, '|', 1, true) + 1)
  end
  local exps, live, slot = {}, ids, nil
  if expiring then
    -- Only the documents of live entries are read, and without filters
    -- only as many as the page still needs.
    exps, live, slot = many('ZMSCORE', KEYS[3], ids), {}, {}
    for i, id in ipairs(ids) do
      local x = exps[i]
      if (not x or tonumber(x) > now) and (#keeps > 0 or #live < limit - got) then
        live[#live + 1] = id
        slot[i] = #live
      end
    end
  end
  local docs = many('HMGET', KEYS[2], live)
  for i, m in ipairs(members) do
    scanned = scanned + 1
    last = m
    local d = docs[i]
    if slot then d = slot[i] and docs[slot[i]] end
    -- A missing document (false) cannot occur given the write order of
    -- Apply; skip rather than return an empty item.
    if d and keep(m, d) then
      out[#out + 1] = m
      out[#out + 1] = d
      out[#out + 1] = exps[i] or '0'
      got = got + 1
      if got == limit then break end
    end
  end
  if #members < chunk then exhausted = true break end
  upper = '(' .. last
end
local found = 1
if got == 0 and expiring then
  if redis.call('ZCARD', KEYS[1]) <= redis.call('ZCOUNT', KEYS[3], '-inf', now) then found = 0 end
elseif scanned == 0 then
  found = redis.call('EXISTS', KEYS[1])
end
local scannedTo = ''
if got < limit and not exhausted and last then scannedTo = last end
return {found, out, scannedTo, scanned}
`)

// Page returns one page of targetID's history with one script call.
func (r *Redis) Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error) {
	tag := r.targetKey(targetID)
	args := pageArgs(q, r.now())
	res, err := pageScript.RunRO(ctx, r.c, []string{tag + ":idx", tag + ":doc", tag + ":exp"}, args...).Slice()
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
	p.Entries = make([]activity.Entry, 0, len(raw)/3)
	for i := 0; i+2 < len(raw); i += 3 {
		k, _ := raw[i].(string)
		d, _ := raw[i+1].(string)
		x, _ := raw[i+2].(string)
		p.Entries = append(p.Entries, activity.Entry{Key: k, Doc: []byte(d), Expires: parseExpiry(x)})
	}
	p.ScannedTo, _ = res[2].(string)
	n, _ := res[3].(int64)
	p.Scanned = int(n)
	return p, nil
}

// parseExpiry reads an expiry score as Redis prints it.
func parseExpiry(s string) int64 {
	f, _ := strconv.ParseFloat(s, 64)
	return int64(f)
}

func (r *Redis) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// pageArgs are the ARGV of pageScript for q at now.
func pageArgs(q activity.PageQuery, now time.Time) []any {
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
	args := make([]any, 0, 9+len(f.Types)+len(f.TargetTypes)+len(f.SourceDomains))
	args = append(args, upper, lower, max(q.Limit, 0), scanBudget(q, false), scanBudget(q, true), now.Unix(), len(f.Types))
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

// getScript returns the document of ARGV[1] unless it expired at ARGV[2].
// KEYS: the target's documents and expiry index.
var getScript = redis.NewScript(`
local x = redis.call('ZSCORE', KEYS[2], ARGV[1])
if x and tonumber(x) <= tonumber(ARGV[2]) then return false end
return redis.call('HGET', KEYS[1], ARGV[1])
`)

// Get returns the document of one activity, unless expired. It takes two
// round trips: the id key and the target's keys live in different slots,
// so one script cannot read both on a cluster.
func (r *Redis) Get(ctx context.Context, id string) ([]byte, bool, error) {
	target, err := r.c.Get(ctx, r.idKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", id, err)
	}
	tag := r.targetKey(target)
	doc, err := getScript.RunRO(ctx, r.c, []string{tag + ":doc", tag + ":exp"}, id, r.now().Unix()).Text()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("get %s: %w", id, err)
	}
	return []byte(doc), true, nil
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
