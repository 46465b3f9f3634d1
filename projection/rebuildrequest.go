package projection

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/eventstore"
)

// A rebuild can be asked of the projector processes through Redis, for
// stores only the serving process can open (the embedded one):
//
//	{%meta}:rebuild-request      STRING  id of the requested rebuild
//	{%meta}:rebuild-status:<id>  HASH    claimed-by, generation, position, target,
//	                                     events, elapsedMs, switched, done, error
const statusTTL = time.Hour

func (r *Redis) requestKey() string         { return r.prefix + "{%meta}:rebuild-request" }
func (r *Redis) statusKey(id string) string { return r.prefix + "{%meta}:rebuild-status:" + id }
func progressFields(p RebuildProgress) []any {
	return []any{"generation", p.Generation, "position", p.Position, "target", p.Target,
		"events", p.Events, "elapsedMs", p.Elapsed.Milliseconds(), "switched", strconv.FormatBool(p.Switched)}
}

// RequestRebuild asks a projector process sharing this Redis to rebuild
// the read model, reports its progress and returns the new generation
// when it is done. It fails when no projector takes the request up within
// pickUp.
func (r *Redis) RequestRebuild(ctx context.Context, pickUp, every time.Duration, progress func(RebuildProgress)) (string, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ok, err := r.c.SetNX(ctx, r.requestKey(), id, 0).Result()
	if err != nil {
		return "", fmt.Errorf("request rebuild: %w", err)
	}
	if !ok {
		return "", errors.New("a rebuild is already requested or running")
	}
	asked := time.Now()
	var last RebuildProgress
	for {
		if err := eventstore.Sleep(ctx, every); err != nil {
			return "", err
		}
		st, err := r.c.HGetAll(ctx, r.statusKey(id)).Result()
		if err != nil {
			return "", fmt.Errorf("rebuild status: %w", err)
		}
		if st["claimed-by"] == "" {
			if time.Since(asked) > pickUp {
				// Withdraw the request unless it was taken meanwhile.
				if n, _ := r.c.HSetNX(ctx, r.statusKey(id), "claimed-by", "-").Result(); n {
					r.c.Del(ctx, r.requestKey())
					return "", fmt.Errorf("no projector took the rebuild up within %v: is a projector running with this Redis and prefix?", pickUp)
				}
			}
			continue
		}
		if e := st["error"]; e != "" {
			return "", errors.New(e)
		}
		p := parseProgress(st)
		if progress != nil && p.Generation != "" && p != last {
			progress(p)
			last = p
		}
		if st["done"] == "1" {
			return p.Generation, nil
		}
	}
}

func parseProgress(st map[string]string) RebuildProgress {
	u := func(k string) uint64 { n, _ := strconv.ParseUint(st[k], 10, 64); return n }
	p := RebuildProgress{Generation: st["generation"], Position: u("position"), Target: u("target"),
		Events: u("events"), Elapsed: time.Duration(u("elapsedMs")) * time.Millisecond, Switched: st["switched"] == "true"}
	p.Rate = float64(p.Events) / max(p.Elapsed.Seconds(), 1e-3)
	return p
}

// ServeRebuilds runs the rebuilds requested with RequestRebuild, one at a
// time, from store, until ctx ends. Several processes may serve: the
// first to claim a request runs it.
func (r *Redis) ServeRebuilds(ctx context.Context, store eventstore.Store, opts RebuildOptions) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	me := DefaultHolder()
	for eventstore.Sleep(ctx, time.Second) == nil {
		id, err := r.c.Get(ctx, r.requestKey()).Result()
		if err != nil {
			if !errors.Is(err, redis.Nil) && ctx.Err() == nil {
				log.Warn("rebuild requests", "err", err)
			}
			continue
		}
		status := r.statusKey(id)
		if claimed, err := r.c.HSetNX(ctx, status, "claimed-by", me).Result(); err != nil || !claimed {
			continue
		}
		r.c.Expire(ctx, status, statusTTL)
		log.Info("rebuild requested", "request", id)
		o := opts
		o.Progress = func(p RebuildProgress) { r.c.HSet(ctx, status, progressFields(p)...) }
		_, err = r.Rebuild(ctx, store, o)
		fields := []any{"done", "1"}
		if err != nil {
			log.Error("rebuild failed", "err", err)
			fields = []any{"error", err.Error()}
		}
		// Reported with a context of its own: ctx may be what ended it.
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r.c.HSet(fctx, status, fields...)
		r.c.Del(fctx, r.requestKey())
		cancel()
	}
}
