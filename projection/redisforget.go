package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
)

// Forget removes the activities from the generation readers use,
// unfenced; see redisWriter.Forget.
func (r *Redis) Forget(ctx context.Context, position uint64, targetID string, ids []string) error {
	return r.writer().Forget(ctx, position, targetID, ids)
}

// Expired lists expired activities of the generation readers use.
func (r *Redis) Expired(ctx context.Context, now time.Time, limit int) ([]Expired, error) {
	return r.writer().Expired(ctx, now, limit)
}

// Forget removes the activities of targetID among ids — index members,
// documents, expiry entries and id keys — and then moves the checkpoint
// as Apply does (not at all for position 0). It reads the documents first
// to learn their index members. On a single Redis the removal is one
// transaction; on a cluster one pipeline. Like Apply's data on a cluster,
// the removal itself is not fenced: a deposed writer can only remove what
// it was asked to, which every later writer removes too.
func (w *redisWriter) Forget(ctx context.Context, position uint64, targetID string, ids []string) error {
	if len(ids) > 0 {
		if err := w.forget(ctx, targetID, ids); err != nil {
			return fmt.Errorf("forget %d of %s: %w", len(ids), targetID, err)
		}
	}
	if position == 0 {
		return nil
	}
	err := w.script(ctx, w.r.c, strconv.FormatUint(position, 10), nil, nil).Err()
	if err != nil && strings.HasPrefix(redisMessage(err), "FENCED") {
		return fmt.Errorf("forget up to %d: %w: %v", position, ErrFenced, err)
	}
	if err != nil {
		return fmt.Errorf("forget up to %d: %w", position, err)
	}
	return nil
}

func (w *redisWriter) forget(ctx context.Context, targetID string, ids []string) error {
	tag := targetKey(w.data, targetID)
	docs, err := w.r.c.HMGet(ctx, tag+":doc", ids...).Result()
	if err != nil {
		return err
	}
	var members, found, expiring, idKeys []any
	for i, id := range ids {
		d, ok := docs[i].(string)
		if !ok {
			continue // unknown, or forgotten already
		}
		var a activity.Activity
		if err := json.Unmarshal([]byte(d), &a); err != nil {
			return fmt.Errorf("document of %s: %w", id, err)
		}
		members = append(members, a.SortKey())
		found = append(found, id)
		expiring = append(expiring, expiringMember(targetID, id))
		idKeys = append(idKeys, idKey(w.data, id))
	}
	if len(found) == 0 {
		return nil
	}
	var pipe redis.Pipeliner
	if w.r.cluster {
		pipe = w.r.c.Pipeline()
	} else {
		pipe = w.r.c.TxPipeline()
	}
	// The member goes before its document: a page never meets a member
	// without one.
	pipe.ZRem(ctx, tag+":idx", members...)
	pipe.ZRem(ctx, tag+":exp", found...)
	pipe.HDel(ctx, tag+":doc", strs(found)...)
	pipe.ZRem(ctx, w.expiringKey(), expiring...)
	for _, k := range idKeys {
		pipe.Del(ctx, k.(string)) // one by one: on a cluster each its own slot
	}
	_, err = pipe.Exec(ctx)
	return err
}

func strs(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i], _ = x.(string)
	}
	return out
}

// Expired lists at most limit activities of the writer's generation
// expired at now, soonest expired first: one read of the expiring index.
func (w *redisWriter) Expired(ctx context.Context, now time.Time, limit int) ([]Expired, error) {
	if limit <= 0 {
		return nil, nil
	}
	ms, err := w.r.c.ZRangeArgs(ctx, redis.ZRangeArgs{
		Key: w.expiringKey(), Start: "-inf", Stop: strconv.FormatInt(now.Unix(), 10), ByScore: true, Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("read expired: %w", err)
	}
	var g expiredGroups
	for _, m := range ms {
		target, id, ok := parseExpiringMember(m)
		if !ok {
			return nil, fmt.Errorf("read expired: malformed member %q", m)
		}
		g.add(target, id)
	}
	return g.out, nil
}

// expiringKey is the generation's list of activities with a TTL.
func (w *redisWriter) expiringKey() string { return w.data + "expiring" }

// expiringMember names an activity in the expiring index: the target is
// length-prefixed, as either id may hold any byte.
func expiringMember(target, id string) string {
	return strconv.Itoa(len(target)) + ":" + target + id
}

func parseExpiringMember(m string) (target, id string, ok bool) {
	n, rest, ok := strings.Cut(m, ":")
	if !ok {
		return "", "", false
	}
	l, err := strconv.Atoi(n)
	if err != nil || l < 0 || l > len(rest) {
		return "", "", false
	}
	return rest[:l], rest[l:], true
}
