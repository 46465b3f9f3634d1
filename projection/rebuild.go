package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/eventstore"
)

// RebuildOptions configure Redis.Rebuild. Every field is optional.
type RebuildOptions struct {
	Logger *slog.Logger
	// Head gives the store's last position: the target of the catch-up,
	// for progress and ETA. Without it the rebuild switches once its
	// projector has applied as far as the generation in use.
	Head HeadReader
	// LeaseTTL of the rebuild's own lease (DefaultLeaseTTL when zero): a
	// second rebuild is refused while one runs, and a dead one's lease
	// frees within this time.
	LeaseTTL time.Duration
	// Progress is called about every ProgressEvery while catching up, and
	// once more after the switch.
	Progress      func(RebuildProgress)
	ProgressEvery time.Duration
	// Grace is how long readers keep the old generation after the switch
	// before it is deleted (default 3 s: readers re-read the generation
	// at least every second).
	Grace time.Duration
	// Registerer receives the rebuild projector's metrics; nil none.
	Registerer prometheus.Registerer
}

// RebuildProgress is a snapshot of a running rebuild.
type RebuildProgress struct {
	Generation string
	Position   uint64 // applied so far
	Target     uint64 // the store's last position at start (0 = unknown)
	Events     uint64 // activities applied so far
	Elapsed    time.Duration
	Rate       float64 // activities per second since start
	Switched   bool    // readers use the new generation
}

// ETA is the expected time left to reach Target, 0 when unknown.
func (p RebuildProgress) ETA() time.Duration {
	if p.Target <= p.Position || p.Position == 0 {
		return 0
	}
	// Positions advance at their own rate (a store may use several per
	// activity), so the ETA is the elapsed time scaled by what is left.
	return time.Duration(float64(p.Elapsed) * float64(p.Target-p.Position) / float64(p.Position))
}

// switchScript makes gen (ARGV[1]) the generation readers use if it has
// applied at least as far as the current one. KEYS: gen, checkpoints,
// legacy checkpoint (single node only). ARGV: new generation, channel.
// Returns {1 switched | 0 not yet, previous generation, its position}.
var switchScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1]) or ''
local a = redis.call('HGET', KEYS[2], cur)
if not a and cur == '' and KEYS[3] then a = redis.call('GET', KEYS[3]) end
a = a or '0'
local b = redis.call('HGET', KEYS[2], ARGV[1]) or '0'
if #a > #b or (#a == #b and a > b) then return {0, cur, a} end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1] .. ' ' .. b)
return {1, cur, a}
`)

// Rebuild builds a new generation of the read model from position 0 under
// its own keys while the current one keeps serving (and the live
// projector keeps applying to it), switches readers and the live
// projector to it once it has applied at least as far, then deletes the
// old generation. It returns the new generation's name.
func (r *Redis) Rebuild(ctx context.Context, store eventstore.Store, opts RebuildOptions) (string, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	every := opts.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	grace := opts.Grace
	if grace <= 0 {
		grace = 3 * followPoll
	}
	lease := newLease(r, r.meta.rebuild, opts.LeaseTTL, "", log)
	value, holder, err := lease.tryAcquire(ctx)
	if err != nil {
		return "", err
	}
	if value == "" {
		return "", fmt.Errorf("a rebuild is already running (%s)", holder)
	}
	term := lease.term(ctx, value, "", false)
	defer term.Release()

	current, err := r.currentGeneration(ctx)
	if err != nil {
		return "", err
	}
	// A rebuild that died leaves its generation behind: remove it first.
	if left, err := r.c.Get(ctx, r.meta.building).Result(); err == nil && left != current {
		log.Info("deleting the generation of an unfinished rebuild", "generation", left)
		if err := r.deleteGeneration(ctx, left); err != nil {
			return "", err
		}
	}
	n, err := r.c.Incr(ctx, r.meta.gens).Result()
	if err != nil {
		return "", fmt.Errorf("new generation: %w", err)
	}
	gen := "g" + strconv.FormatInt(n, 10)
	if err := r.c.Set(ctx, r.meta.building, gen, 0).Err(); err != nil {
		return "", fmt.Errorf("new generation: %w", err)
	}
	var target uint64
	if opts.Head != nil {
		if target, err = opts.Head.LastPosition(ctx); err != nil {
			return "", fmt.Errorf("store position: %w", err)
		}
	}
	log.Info("rebuild started", "generation", gen, "replacing", current, "target", target)

	w := term.Model.(*redisWriter)
	w.gen, w.data = gen, r.dataPrefix(gen)
	p := NewProjector(store, w, ProjectorOptions{Logger: log, Registerer: opts.Registerer, Head: opts.Head})
	pctx, stop := context.WithCancel(term.Ctx)
	defer stop()
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(pctx) }()

	start := time.Now()
	report := func(switched bool) {
		if opts.Progress == nil {
			return
		}
		el := time.Since(start)
		pos := p.Position()
		n := p.Applied()
		opts.Progress(RebuildProgress{Generation: gen, Position: pos, Target: target, Events: n, Elapsed: el,
			Rate: float64(n) / max(el.Seconds(), 1e-3), Switched: switched})
	}
	tick := time.NewTicker(min(every, 100*time.Millisecond))
	defer tick.Stop()
	lastReport := time.Now()
	for {
		select {
		case <-term.Ctx.Done():
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", errors.New("rebuild lease lost; run the rebuild again")
		case <-tick.C:
		}
		if time.Since(lastReport) >= every {
			report(false)
			lastReport = time.Now()
		}
		if p.Position() < target {
			continue
		}
		ok, err := r.switchTo(ctx, gen)
		if err != nil {
			log.Warn("rebuild switch", "err", err)
			continue
		}
		if ok {
			break
		}
	}
	stop()
	<-done
	report(true)
	log.Info("readers switched to the new generation; deleting the old one after a grace period", "generation", gen, "old", current, "grace", grace)
	if err := eventstore.Sleep(ctx, grace); err != nil {
		return gen, err
	}
	if err := r.deleteGeneration(ctx, current); err != nil {
		return gen, err
	}
	if err := r.c.Del(ctx, r.meta.building).Err(); err != nil {
		return gen, fmt.Errorf("rebuild finished: %w", err)
	}
	log.Info("rebuild finished", "generation", gen, "elapsed", time.Since(start).Round(time.Millisecond))
	return gen, nil
}

// switchTo makes gen current if it has applied as far as the current one.
func (r *Redis) switchTo(ctx context.Context, gen string) (bool, error) {
	keys := []string{r.meta.gen, r.meta.checkpoints}
	if !r.cluster {
		keys = append(keys, r.meta.legacyCheckpoint)
	}
	res, err := switchScript.Run(ctx, r.c, keys, gen, r.meta.applied).Slice()
	if err != nil {
		return false, fmt.Errorf("switch generation: %w", err)
	}
	if ok, _ := res[0].(int64); ok != 1 {
		return false, nil
	}
	return true, r.Refresh(ctx)
}

// deleteGeneration removes every key of gen and its checkpoint.
func (r *Redis) deleteGeneration(ctx context.Context, gen string) error {
	data := r.dataPrefix(gen)
	patterns := []string{globEscape(data) + "*"}
	if gen == "" {
		// The first generation shares the prefix with everything else:
		// only its targets, ids and expiring index, never the meta keys or other
		// generations.
		patterns = []string{globEscape(data) + "{*", globEscape(data) + "id:*", globEscape(data) + "expiring"}
	}
	metaStem := r.prefix + "{%meta}"
	scan := func(ctx context.Context, c *redis.Client) error {
		for _, pattern := range patterns {
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			var batch []string
			flush := func() error {
				if len(batch) == 0 {
					return nil
				}
				err := c.Unlink(ctx, batch...).Err()
				batch = batch[:0]
				return err
			}
			for iter.Next(ctx) {
				if k := iter.Val(); !strings.HasPrefix(k, metaStem) {
					batch = append(batch, k)
				}
				if len(batch) == 500 {
					if err := flush(); err != nil {
						return err
					}
				}
			}
			if err := iter.Err(); err != nil {
				return err
			}
			if err := flush(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	switch c := r.c.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("delete generation: unsupported client %T", r.c)
	}
	if err != nil {
		return fmt.Errorf("delete generation %q: %w", gen, err)
	}
	pipe := r.c.Pipeline()
	pipe.HDel(ctx, r.meta.checkpoints, gen)
	if gen == "" {
		pipe.Del(ctx, r.meta.legacyCheckpoint)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("delete generation %q: %w", gen, err)
	}
	return nil
}

// globEscape quotes the glob characters of SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
