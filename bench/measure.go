package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/query"
)

// pageSize is the page the read figures ask for.
const pageSize = 20

func (r *run) measure(ctx context.Context) error {
	storeDir := filepath.Join(r.cfg.WorkDir, "service")
	r.readTgt = uuid.NewString()
	targets := make([]string, r.cfg.Targets)
	for i := range targets {
		targets[i] = uuid.NewString()
	}

	// The service on Redis: preload, then every HTTP figure.
	baseMem, err := r.redis.usedMemory(ctx)
	if err != nil {
		return err
	}
	a, err := r.startService(ctx, serviceOpts{name: "service-redis", dataDir: storeDir, redis: true, prefix: "ah:"})
	if err != nil {
		return err
	}
	if err := a.waitReady(ctx, time.Minute); err != nil {
		return err
	}
	c := newClient(r.token, 8)
	r.logf("preloading %d activities into one target in arrays of %d", r.cfg.Activities, r.cfg.Batch)
	size, deepKey, preRate, err := preload(ctx, c, a.base, r.readTgt, r.cfg.Activities, r.cfg.Batch)
	if err != nil {
		return err
	}
	r.posted += r.cfg.Activities
	r.jsonSize, r.deepKey = size, deepKey
	idx := "ah:{" + r.readTgt + "}:idx"
	r.logf("preloaded at %s activities/s; waiting for the projection", thousands(preRate))
	if err := r.until(ctx, 10*time.Minute, func() (bool, error) {
		n, err := r.redis.client.ZCard(ctx, idx).Result()
		return n == int64(r.cfg.Activities), err
	}); err != nil {
		return fmt.Errorf("projection of the preload: %w", err)
	}
	usedMem, err := r.redis.usedMemory(ctx)
	if err != nil {
		return err
	}

	var peer *pg
	if r.cfg.Postgres {
		r.logf("loading the PostgreSQL peer")
		if peer, err = startPG(ctx, filepath.Join(r.cfg.WorkDir, "pg"), r.cfg.Activities, payloads[0]); err != nil {
			r.logf("PostgreSQL peer: %v", err)
		} else {
			defer peer.drop(context.WithoutCancel(ctx))
		}
	}
	pgRun := func(script string) cell {
		if peer == nil {
			return text("–")
		}
		return measured(peer.bench(ctx, script, r.cfg.Clients, r.cfg.Duration))
	}

	cursors, err := query.NewCursors([]byte(r.cursor))
	if err != nil {
		return err
	}
	deepTok := cursors.Encode(r.readTgt, r.deepKey)
	if err := r.reads(ctx, a, "Redis", deepTok, func(deep bool) cell {
		upper := "+"
		if deep {
			upper = "(" + r.deepKey
		}
		return measured(r.redisBench(ctx, r.cfg.Clients, r.cfg.Duration, "ZRANGE", idx, upper, "-", "BYLEX", "REV", "LIMIT", "0", strconv.Itoa(pageSize+1)))
	}, pgRun); err != nil {
		return err
	}
	if err := r.queryOnly(ctx); err != nil {
		return err
	}
	cur, peak, err := a.rss()
	if err != nil {
		return err
	}
	r.table.add(fmt.Sprintf("service RSS, Redis read model, %s-activity target served", thousands(float64(r.cfg.Activities))), "≤ 200 MB",
		fmt.Sprintf("%s (peak %s, after preload and reads)", mb(cur), mb(peak)), text("–"), text("–"))
	r.table.add("Redis memory of the activities", "≤ 1.6× JSON bytes",
		fmt.Sprintf("%s for %s of JSON: %.2f×", mb(usedMem-baseMem), mb(r.jsonSize), float64(usedMem-baseMem)/float64(r.jsonSize)),
		text("–"), text("–"))

	if err := r.writes(ctx, a, targets, pgRun); err != nil {
		return err
	}
	if err := r.lag(ctx, a, targets); err != nil {
		return err
	}
	// Let the projector finish before the store changes hands.
	if err := r.settle(ctx); err != nil {
		return err
	}
	a.stop()

	if err := r.memoryReads(ctx, storeDir, deepTok); err != nil {
		return err
	}
	if err := r.catchUp(ctx, storeDir); err != nil {
		return err
	}
	return r.syncAlways(ctx, targets)
}

// reads measures a page of 20 at the head and deep in the preloaded target.
func (r *run) reads(ctx context.Context, s *service, model, deepTok string, raw func(deep bool) cell, pgRun func(string) cell) error {
	for _, deep := range []bool{false, true} {
		tok, where, script := "", "head", "head"
		if deep {
			tok, where, script = deepTok, "below the "+thousands(float64(r.cfg.Activities/2))+"th", "deep"
		}
		r.logf("GET pages on %s, %s", model, where)
		res, err := r.vegeta(ctx, attack{name: "get-" + model + "-" + script, workers: r.cfg.Clients, dur: r.cfg.Duration, fixed: true,
			next: func(int) request {
				return request{method: http.MethodGet, url: pageURL(s.base, r.readTgt, tok, pageSize)}
			}})
		if err != nil {
			return err
		}
		target := "≥ 15,000 req/s, p99 ≤ 10 ms"
		if model != "Redis" {
			target = "≥ 20,000 req/s"
		}
		if deep {
			target += ", ≤ 1.2× head latency"
		}
		rawCell, peerCell := text("–"), text("–")
		if raw != nil {
			rawCell, peerCell = raw(deep), pgRun(script)
		}
		r.table.add(fmt.Sprintf("page of %d, %s, %s model, %d clients", pageSize, where, model, r.cfg.Clients),
			target, httpFigure(res, 1), rawCell, peerCell)
	}
	return nil
}

// queryOnly measures the head page from a query-only process on the same
// Redis: split mode, its page cache told of changes over pub/sub.
func (r *run) queryOnly(ctx context.Context) error {
	q, err := r.startService(ctx, serviceOpts{name: "query-only", dataDir: filepath.Join(r.cfg.WorkDir, "query-only"),
		redis: true, prefix: "ah:", roles: "query"})
	if err != nil {
		return err
	}
	defer q.stop()
	if err := q.waitReady(ctx, time.Minute); err != nil {
		return err
	}
	r.logf("GET pages on Redis, head, query-only process")
	res, err := r.vegeta(ctx, attack{name: "get-query-only", workers: r.cfg.Clients, dur: r.cfg.Duration, fixed: true,
		next: func(int) request {
			return request{method: http.MethodGet, url: pageURL(q.base, r.readTgt, "", pageSize)}
		}})
	if err != nil {
		return err
	}
	r.table.add(fmt.Sprintf("page of %d, head, Redis model, query-only process (split mode), %d clients", pageSize, r.cfg.Clients),
		"≥ 15,000 req/s, p99 ≤ 10 ms", httpFigure(res, 1), text("as the head row"), text("as the head row"))
	return nil
}

// writes measures single POSTs and arrays, spread and into one target.
func (r *run) writes(ctx context.Context, s *service, targets []string, pgRun func(string) cell) error {
	one := uuid.NewString()
	spread := func(i, k int) string { return targets[(i*31+k*7)%len(targets)] }
	same := func(int, int) string { return one }
	payload := r.eventPayload()
	jsDir := func(name string) string { return filepath.Join(r.cfg.WorkDir, "js-"+name) }
	runs := []struct {
		name, figure, target string
		workers, per         int
		pick                 func(i, k int) string
		raw                  func() cell
		peer                 func() cell
	}{
		{"post-spread", fmt.Sprintf("one activity per POST, %d clients, %d targets", r.cfg.Clients, len(targets)),
			"≥ 10,000 req/s, p99 ≤ 20 ms, ≥ 1.5× peer", r.cfg.Clients, 1, spread,
			func() cell {
				return measured(rawPublish(ctx, jsDir("spread"), false, r.cfg.Clients, 1, len(targets), payload, r.cfg.Duration))
			},
			func() cell { return pgRun("insert") }},
		{"post-one", fmt.Sprintf("one activity per POST, %d clients, one target", r.cfg.Clients),
			"≥ 3,000 req/s", r.cfg.Clients, 1, same,
			func() cell {
				return measured(rawPublish(ctx, jsDir("one"), false, r.cfg.Clients, 1, 1, payload, r.cfg.Duration))
			}, nil},
		{"batch-one", fmt.Sprintf("arrays of %d into one target, 4 clients", r.cfg.Batch),
			"≥ 60,000 activities/s", 4, r.cfg.Batch, same,
			func() cell {
				return measured(rawPublish(ctx, jsDir("batch-one"), false, 4, r.cfg.Batch, 1, payload, r.cfg.Duration))
			}, nil},
		{"batch-spread", fmt.Sprintf("arrays of %d over %d targets, 4 clients", r.cfg.Batch, len(targets)),
			"≥ 60,000 activities/s", 4, r.cfg.Batch, spread,
			func() cell {
				return measured(rawPublish(ctx, jsDir("batch-spread"), false, 4, r.cfg.Batch, len(targets), payload, r.cfg.Duration))
			}, nil},
	}
	for _, w := range runs {
		r.logf("POST: %s", w.figure)
		res, err := r.vegeta(ctx, attack{name: w.name, workers: w.workers, dur: r.cfg.Duration,
			next: postBodies(s.base, w.per, w.pick)})
		if err != nil {
			return err
		}
		r.posted += res.ok() * w.per
		peer := text("–")
		if w.peer != nil {
			peer = w.peer()
		}
		r.table.add(w.figure, w.target, httpFigure(res, w.per), w.raw(), peer)
	}
	return nil
}

// eventPayload is about the size of one stored event.
func (r *run) eventPayload() []byte {
	return body([]activity.Activity{newActivity(uuid.NewString(), time.Now(), 0)})
}

// lag writes at a steady rate with vegeta while probes each write one
// activity and poll the head of its target until it shows.
func (r *run) lag(ctx context.Context, s *service, targets []string) error {
	r.logf("projection lag at %d writes/s", r.cfg.LagRate)
	pctx, stop := context.WithCancel(ctx)
	var (
		mu    sync.Mutex
		lags  []time.Duration
		wg    sync.WaitGroup
		perr  error
		probe = newClient(r.token, 4)
	)
	for p := range 4 {
		wg.Go(func() {
			target := uuid.NewString()
			for i := 0; pctx.Err() == nil; i++ {
				d, err := r.probeOnce(pctx, probe, s.base, target, i)
				if err != nil {
					if pctx.Err() == nil {
						mu.Lock()
						perr = fmt.Errorf("lag probe %d: %w", p, err)
						mu.Unlock()
					}
					return
				}
				mu.Lock()
				lags = append(lags, d)
				mu.Unlock()
			}
		})
	}
	res, err := r.vegeta(ctx, attack{name: "lag", rate: r.cfg.LagRate, dur: r.cfg.Duration,
		next: postBodies(s.base, 1, func(i, _ int) string { return targets[i%len(targets)] })})
	stop()
	wg.Wait()
	if err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	r.posted += res.ok() + len(lags)
	slices.Sort(lags)
	if len(lags) == 0 {
		return errors.New("lag: no probe completed")
	}
	r.table.add(fmt.Sprintf("projection lag, 201 → visible in GET, at %s writes/s", thousands(float64(r.cfg.LagRate))),
		"p99 ≤ 100 ms", fmt.Sprintf("p50 %s, p99 %s, max %s (%d probes; writes: %s)",
			ms(quantile(lags, 0.5)), ms(quantile(lags, 0.99)), ms(lags[len(lags)-1]), len(lags), httpFigure(res, 1)),
		text("–"), text("–"))
	return nil
}

// probeOnce posts one activity and returns how long after its 201 the
// head page of its target shows it.
func (r *run) probeOnce(ctx context.Context, c *client, base, target string, i int) (time.Duration, error) {
	a := newActivity(target, time.Now(), i)
	status, out, err := c.do(ctx, http.MethodPost, base+apiPath, body([]activity.Activity{a}))
	if err != nil {
		return 0, err
	}
	if status != http.StatusCreated {
		return 0, fmt.Errorf("status %d: %.200s", status, out)
	}
	acked := time.Now()
	u := pageURL(base, target, "", 1)
	for {
		status, out, err := c.do(ctx, http.MethodGet, u, nil)
		if err != nil {
			return 0, err
		}
		if status == http.StatusOK {
			var page struct {
				Results []struct {
					ID string `json:"id"`
				} `json:"results"`
			}
			if err := json.Unmarshal(out, &page); err != nil {
				return 0, err
			}
			if len(page.Results) > 0 && page.Results[0].ID == a.ID {
				return time.Since(acked), nil
			}
		} else if status != http.StatusNotFound {
			return 0, fmt.Errorf("GET status %d: %.200s", status, out)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// settle waits until the Redis checkpoint stops moving.
func (r *run) settle(ctx context.Context) error {
	last := uint64(0)
	model := projection.NewRedis(r.redis.client, "ah:")
	return r.until(ctx, 5*time.Minute, func() (bool, error) {
		cp, err := model.Checkpoint(ctx)
		if err != nil {
			return false, err
		}
		same := cp == last
		last = cp
		if !same {
			time.Sleep(500 * time.Millisecond)
		}
		return same, nil
	})
}

// memoryReads serves the same store with the in-memory read model.
func (r *run) memoryReads(ctx context.Context, storeDir, deepTok string) error {
	r.logf("service on the in-memory read model: rebuilding from the store")
	start := time.Now()
	b, err := r.startService(ctx, serviceOpts{name: "service-memory", dataDir: storeDir})
	if err != nil {
		return err
	}
	defer b.stop()
	if err := b.waitReady(ctx, 20*time.Minute); err != nil {
		return err
	}
	rebuild := time.Since(start)
	if err := r.reads(ctx, b, "in-memory", deepTok, nil, nil); err != nil {
		return err
	}
	cur, peak, err := b.rss()
	if err != nil {
		return err
	}
	r.table.add("service RSS, in-memory read model", "–",
		fmt.Sprintf("%s (peak %s); start to ready (rebuild of %s activities): %s, %s events/s",
			mb(cur), mb(peak), thousands(float64(r.posted)), ms(rebuild), thousands(float64(r.posted)/rebuild.Seconds())),
		text("–"), text("–"))
	return nil
}

// catchUp runs a projector alone into an empty Redis prefix and times it
// from its first checkpoint to the last.
func (r *run) catchUp(ctx context.Context, storeDir string) error {
	want, err := projection.NewRedis(r.redis.client, "ah:").Checkpoint(ctx)
	if err != nil {
		return fmt.Errorf("checkpoint of the first service: %w", err)
	}
	r.logf("projector catch-up into Redis to position %d", want)
	p, err := r.startService(ctx, serviceOpts{name: "projector", dataDir: storeDir, redis: true, prefix: "ahc:", roles: "projector"})
	if err != nil {
		return err
	}
	defer p.stop()
	caught := projection.NewRedis(r.redis.client, "ahc:")
	var first time.Time
	var firstPos uint64
	err = r.until(ctx, 30*time.Minute, func() (bool, error) {
		pos, err := caught.Checkpoint(ctx)
		if err != nil || pos == 0 {
			return false, nil
		}
		if first.IsZero() {
			first, firstPos = time.Now(), pos
		}
		return pos >= want, nil
	})
	if err != nil {
		return fmt.Errorf("catch-up: %w", err)
	}
	elapsed := time.Since(first)
	// Positions count the store's messages; activities are what was posted.
	frac := float64(want-firstPos) / float64(want)
	rate := float64(r.posted) * frac / elapsed.Seconds()
	r.table.add("projection catch-up into Redis", "≥ 50,000 events/s",
		fmt.Sprintf("%s events/s (%s activities, %s)", thousands(rate), thousands(float64(r.posted)), ms(elapsed)),
		text("–"), text("–"))
	return nil
}

// syncAlways measures single POSTs with fsync before every ack, on a
// fresh store, beside raw publishes with the same setting.
func (r *run) syncAlways(ctx context.Context, targets []string) error {
	r.logf("EVENTSTORE_SYNC=always")
	d, err := r.startService(ctx, serviceOpts{name: "service-sync", dataDir: filepath.Join(r.cfg.WorkDir, "service-sync"),
		redis: true, prefix: "ahs:", sync: "always"})
	if err != nil {
		return err
	}
	defer d.stop()
	if err := d.waitReady(ctx, time.Minute); err != nil {
		return err
	}
	res, err := r.vegeta(ctx, attack{name: "post-sync", workers: r.cfg.Clients, dur: r.cfg.Duration,
		next: postBodies(d.base, 1, func(i, _ int) string { return targets[(i*31)%len(targets)] })})
	if err != nil {
		return err
	}
	d.stop()
	raw := measured(rawPublish(ctx, filepath.Join(r.cfg.WorkDir, "js-sync"), true, r.cfg.Clients, 1, len(targets), r.eventPayload(), r.cfg.Duration))
	r.table.add(fmt.Sprintf("EVENTSTORE_SYNC=always, one activity per POST, %d clients, %d targets", r.cfg.Clients, len(targets)),
		"≥ 5,000 req/s", httpFigure(res, 1), raw, text("–"))
	return nil
}

// until polls cond every 50 ms until it holds.
func (r *run) until(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// notes are the lines under the table.
func (r *run) notes() []string {
	return []string{"",
		fmt.Sprintf("Each load run %s; %d activities preloaded into the read target; JWT auth on; LOG_LEVEL=info.", r.cfg.Duration, r.cfg.Activities),
		"Raw parts: redis-benchmark on the same key (ZRANGE … BYLEX REV LIMIT 0 21); JetStream publishes acknowledged one by one (or in windows of the array size), " +
			"on an in-process nats-server with the embedded store's storage; PostgreSQL: pgbench on a table + index holding the same number of rows.",
		"Load generator, service, Redis and raw tools share the machine's cores; compare figures within one run.",
	}
}
