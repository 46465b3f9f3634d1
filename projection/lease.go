package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/eventstore"
)

// DefaultLeaseTTL is how long a standby waits at most, after the active
// projector died, before it takes over.
const DefaultLeaseTTL = 10 * time.Second

// Lease makes one projector of several the one that applies.
type Lease interface {
	// Acquire blocks until this process holds the lease (or ctx ends) and
	// returns the term it holds it for.
	Acquire(ctx context.Context) (*Term, error)
}

// Term is one tenure of the lease.
type Term struct {
	// Model is the read model to apply to during the term: its writes are
	// refused with ErrFenced once the term is over, even if this process
	// does not know it yet (paused, partitioned).
	Model ReadModel
	// Ctx ends when the lease is lost or released.
	Ctx context.Context
	// Release ends the term and gives the lease up at once.
	Release func()
}

// RedisLease is a lease on a Redis read model: a key with a TTL holding a
// fencing token from a counter, renewed by its holder; every batch is
// applied by a script that first checks that the key still holds the
// holder's token.
type RedisLease struct {
	r      *Redis
	key    string
	holder string
	ttl    time.Duration
	log    *slog.Logger
}

// NewRedisLease returns the projector lease of r. The key expires 4/5 of
// ttl after the last renewal, renewals come every ttl/4 and a standby
// tries every ttl/10, so a standby takes over within ttl of the holder's
// death. holder names this process in the key and in logs ("" = host,
// pid and a random suffix).
func NewRedisLease(r *Redis, ttl time.Duration, holder string, log *slog.Logger) *RedisLease {
	return newLease(r, r.meta.lease, ttl, holder, log)
}

func newLease(r *Redis, key string, ttl time.Duration, holder string, log *slog.Logger) *RedisLease {
	if ttl <= 0 {
		ttl = DefaultLeaseTTL
	}
	if holder == "" {
		holder = DefaultHolder()
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisLease{r: r, key: key, holder: holder, ttl: ttl, log: log}
}

// DefaultHolder names this process: host, pid and a random suffix, so a
// restarted process is a new holder.
func DefaultHolder() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// Holder is this process's name in the lease.
func (l *RedisLease) Holder() string { return l.holder }

// acquireScript takes the lease when free, or when it names this holder
// (a restarted process taking its own lease back, with a new token that
// fences off anything left of the old one). KEYS: lease, fence counter.
// ARGV: holder, expiry in ms. Returns {token, holder} of whoever holds it.
var acquireScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local who = string.sub(cur, sep + 1)
  if who ~= ARGV[1] then
    return {string.sub(cur, 1, sep - 1), who}
  end
end
local tok = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], tok .. '|' .. ARGV[1], 'PX', ARGV[2])
return {tostring(tok), ARGV[1]}
`)

// renewScript extends the lease if it still holds ARGV[1]; else 0.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes the lease if it still holds ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
`)

func (l *RedisLease) expiry() time.Duration { return l.ttl * 4 / 5 }

// tryAcquire takes the lease if it is free. It returns the value the key
// holds when ours, "" with the current holder's name otherwise.
func (l *RedisLease) tryAcquire(ctx context.Context) (value, holder string, err error) {
	res, err := acquireScript.Run(ctx, l.r.c, []string{l.key, l.r.meta.fence},
		l.holder, l.expiry().Milliseconds()).StringSlice()
	if err != nil {
		return "", "", fmt.Errorf("acquire lease: %w", err)
	}
	if len(res) != 2 {
		return "", "", fmt.Errorf("acquire lease: unexpected reply %q", res)
	}
	if res[1] != l.holder {
		return "", res[1], nil
	}
	return res[0] + "|" + l.holder, l.holder, nil
}

// Acquire blocks until the lease is ours, trying every ttl/10. The term's
// model writes to the generation readers use and is fenced off when the
// lease passes on or a rebuild replaces the generation.
func (l *RedisLease) Acquire(ctx context.Context) (*Term, error) {
	value, err := l.wait(ctx)
	if err != nil {
		return nil, err
	}
	gen, err := l.r.currentGeneration(ctx)
	if err != nil {
		l.release(value)
		return nil, err
	}
	token, _, _ := strings.Cut(value, "|")
	l.log.Info("projector lease acquired", "holder", l.holder, "token", token, "generation", gen)
	return l.term(ctx, value, gen, true), nil
}

// term starts renewing the lease held as value and returns the term of a
// writer of generation gen.
func (l *RedisLease) term(ctx context.Context, value, gen string, checkGen bool) *Term {
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.keep(tctx, value)
		cancel()
	}()
	return &Term{
		Model: &redisWriter{r: l.r, gen: gen, data: l.r.dataPrefix(gen), lease: l.key, holding: value, checkGen: checkGen},
		Ctx:   tctx,
		Release: func() {
			cancel()
			<-done
			l.release(value)
		},
	}
}

// wait tries to take the lease until it is ours or ctx ends.
func (l *RedisLease) wait(ctx context.Context) (string, error) {
	var lastHolder string
	for {
		value, holder, err := l.tryAcquire(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			l.log.Warn("projector lease", "err", err)
		case value != "":
			return value, nil
		case holder != lastHolder:
			l.log.Info("projector standing by", "holder", holder, "me", l.holder)
			lastHolder = holder
		}
		if err := eventstore.Sleep(ctx, l.ttl/10); err != nil {
			return "", err
		}
	}
}

// keep renews the lease every ttl/4 until ctx ends or the lease is lost:
// taken by another holder, or not renewed in time (Redis unreachable),
// after which another may hold it.
func (l *RedisLease) keep(ctx context.Context, value string) {
	renewed := time.Now()
	for {
		if err := eventstore.Sleep(ctx, l.ttl/4); err != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, l.ttl/4)
		n, err := renewScript.Run(rctx, l.r.c, []string{l.key}, value, l.expiry().Milliseconds()).Int()
		cancel()
		switch {
		case err == nil && n == 1:
			renewed = time.Now()
		case err == nil:
			l.log.Warn("projector lease lost to another holder", "holder", l.holder)
			return
		case time.Since(renewed) >= l.expiry():
			l.log.Warn("projector lease expired: not renewed in time", "holder", l.holder, "err", err)
			return
		default:
			l.log.Warn("projector lease renewal failed, retrying", "holder", l.holder, "err", err)
		}
	}
}

func (l *RedisLease) release(value string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := releaseScript.Run(ctx, l.r.c, []string{l.key}, value).Err(); err != nil {
		l.log.Warn("release projector lease", "err", err)
	}
}

// LeaseHolder is the holder of the projector lease, "" when free.
func (r *Redis) LeaseHolder(ctx context.Context) (holder string, token uint64, err error) {
	v, err := r.c.Get(ctx, r.meta.lease).Result()
	if errors.Is(err, redis.Nil) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, fmt.Errorf("read lease: %w", err)
	}
	tok, holder, _ := strings.Cut(v, "|")
	token, _ = strconv.ParseUint(tok, 10, 64)
	return holder, token, nil
}
