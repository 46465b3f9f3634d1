package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

const (
	defaultBatchSize = 1000
	// Retries of a failing read model or subscription back off from
	// retryMin, doubling up to retryMax, for as long as ctx lasts: the
	// projector waits out an outage instead of taking the process down.
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
)

// ProjectorOptions configures a Projector. Every field is optional.
type ProjectorOptions struct {
	Logger *slog.Logger
	// Registerer receives the projector's metrics; nil registers none.
	Registerer prometheus.Registerer
	// BatchSize is the most activities per ReadModel.Apply; default 1000.
	BatchSize int
	// Lease, when set, makes this projector apply only while it holds the
	// lease, to the model of its term (the model given to NewProjector is
	// then not written). Without one it applies whenever it runs.
	Lease Lease
	// Head, when set, gives the store's last position, for the lag metrics.
	Head HeadReader
	// Sweep, when its Interval is set, removes expired activities from the
	// model during each term (with a Lease, only the holder sweeps).
	Sweep SweepOptions
}

// HeadReader reads the global position of the store's last record.
type HeadReader interface {
	LastPosition(ctx context.Context) (uint64, error)
}

// Projector follows the event store in global order and applies every
// recorded activity to a read model, which keeps the checkpoint.
type Projector struct {
	store   eventstore.Store
	model   ReadModel
	log     *slog.Logger
	batch   int
	lease   Lease
	head    HeadReader
	metrics projectorMetrics
	sweeper *sweeper // nil: no sweeping

	// Of the current term: the model, the queue from the subscription to
	// the applier, and the last position queued (the subscription's).
	term     ReadModel
	queue    chan chunk
	queued   uint64
	lastSeen uint64 // highest position delivered

	appliedN atomic.Uint64 // activities applied

	mu       sync.Mutex
	pos      uint64        // last applied position
	advanced chan struct{} // closed and replaced whenever pos grows
}

// NewProjector returns a projector from store to model; Run starts it.
func NewProjector(store eventstore.Store, model ReadModel, opts ProjectorOptions) *Projector {
	p := &Projector{
		store:    store,
		model:    model,
		log:      opts.Logger,
		batch:    opts.BatchSize,
		lease:    opts.Lease,
		head:     opts.Head,
		metrics:  newProjectorMetrics(opts.Registerer),
		advanced: make(chan struct{}),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.sweeper = newSweeper(opts.Sweep, opts.Registerer, p.log)
	if p.batch <= 0 {
		p.batch = defaultBatchSize
	}
	return p
}

// Run applies every record after the read model's checkpoint, then
// follows new records live. With a Lease it first waits to hold it, and
// stands by again whenever it loses it. Failures of the read model or of
// the subscription are logged and retried with backoff; Run returns nil
// when ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	if p.head != nil {
		go p.watchLag(ctx)
	}
	if p.lease == nil {
		p.metrics.leader.Set(1)
		p.runTerm(ctx, p.model)
		return nil
	}
	for ctx.Err() == nil {
		term, err := p.lease.Acquire(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.log.Error("projector lease", "err", err)
				_ = eventstore.Sleep(ctx, retryMin)
			}
			continue
		}
		p.metrics.leader.Set(1)
		p.runTerm(term.Ctx, term.Model)
		p.metrics.leader.Set(0)
		term.Release()
		if ctx.Err() == nil {
			p.log.Warn("projector lease term over; standing by")
		}
	}
	return nil
}

// queueDepth is how many decoded chunks wait for the applier: the
// subscription fetches and decodes the next while one is being applied.
const queueDepth = 2

// chunk is a decoded run of records, up to p.batch activities.
type chunk struct {
	acts []activity.Activity
	last eventstore.Record // the last record it covers (skipped ones too)
}

// runTerm applies to model until ctx ends or model is fenced off. The
// subscription decodes records into chunks; an applier applies them,
// merging what has queued up into batches of up to p.batch. The
// checkpoint moves with each apply, so a crash loses only work.
func (p *Projector) runTerm(ctx context.Context, model ReadModel) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p.term = model
	if p.sweeper != nil {
		swept := make(chan struct{})
		go func() { defer close(swept); p.sweeper.run(ctx, model) }()
		defer func() { cancel(); <-swept }()
	}
	var from uint64
	err := p.retry(ctx, "checkpoint", func() error {
		var err error
		from, err = model.Checkpoint(ctx)
		return err
	})
	if err != nil {
		return // ctx ended
	}
	p.advance(from)
	p.queued = from
	p.queue = make(chan chunk, queueDepth)
	p.log.Info("projector resuming", "position", from)
	applied := make(chan struct{})
	go func() {
		defer close(applied)
		p.applyLoop(ctx)
		cancel() // fenced off, or ctx ended
	}()
	_ = p.retry(ctx, "subscribe", func() error {
		// Queued chunks are applied whatever happens to the subscription,
		// so it resumes after the last one queued.
		err := p.store.Subscribe(ctx, p.queued, p.handle)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("subscription ended")
		}
		return err
	})
	cancel()
	<-applied
}

// applyLoop applies queued chunks until ctx ends or the model fences
// this projector off.
func (p *Projector) applyLoop(ctx context.Context) {
	var held *chunk // taken from the queue but too big to merge
	for {
		var c chunk
		if held != nil {
			c, held = *held, nil
		} else {
			select {
			case c = <-p.queue:
			case <-ctx.Done():
				return
			}
		}
	merge:
		for len(c.acts) < p.batch {
			select {
			case next := <-p.queue:
				if len(c.acts)+len(next.acts) > p.batch {
					held = &next
					break merge
				}
				c.acts = append(c.acts, next.acts...)
				c.last = next.last
			default:
				break merge
			}
		}
		if err := p.apply(ctx, c); err != nil {
			return
		}
	}
}

// apply applies one batch, retrying until it succeeds, ctx ends or the
// model fences this projector off.
func (p *Projector) apply(ctx context.Context, c chunk) error {
	err := p.retry(ctx, "apply", func() error {
		start := time.Now()
		if err := p.term.Apply(ctx, c.last.Position, c.acts); err != nil {
			return err
		}
		p.metrics.duration.Observe(time.Since(start).Seconds())
		return nil
	})
	if err != nil {
		return err
	}
	p.metrics.applied.Add(float64(len(c.acts)))
	p.appliedN.Add(uint64(len(c.acts)))
	p.metrics.batch.Observe(float64(len(c.acts)))
	if !c.last.RecordedAt.IsZero() {
		lag := max(time.Since(c.last.RecordedAt).Seconds(), 0)
		p.metrics.lagSeconds.Set(lag)
		p.metrics.lag.Observe(lag)
	}
	p.advance(c.last.Position)
	return nil
}

// handle decodes a subscription batch into chunks of at most p.batch
// activities and queues them for the applier. Records it cannot use are
// skipped, never fatal: a read model that stops at one odd event is worse
// than one missing it.
func (p *Projector) handle(ctx context.Context, recs []eventstore.Record) error {
	c := chunk{acts: make([]activity.Activity, 0, min(len(recs), p.batch))}
	send := func() error {
		if c.last.Position == 0 {
			return nil
		}
		select {
		case p.queue <- c:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.queued = c.last.Position
		// A fresh slice: the model may keep the one it was given.
		c = chunk{acts: make([]activity.Activity, 0, cap(c.acts))}
		return nil
	}
	for _, r := range recs {
		if r.Position <= p.queued {
			continue // delivered again: already queued or applied
		}
		c.last = r
		p.seen(r.Position)
		a, err := activity.DecodeEvent(r.Type, r.Data)
		switch {
		case err != nil && r.Type != activity.EventRecorded:
			p.metrics.skipped.WithLabelValues("unknown_type").Inc()
			p.log.Warn("projector skipping event of unknown type",
				"type", r.Type, "stream", r.Stream, "position", r.Position, "id", r.ID)
		case err != nil:
			p.metrics.skipped.WithLabelValues("undecodable").Inc()
			p.log.Error("projector skipping undecodable event",
				"stream", r.Stream, "position", r.Position, "id", r.ID, "err", err)
		default:
			c.acts = append(c.acts, a)
		}
		if len(c.acts) == p.batch {
			if err := send(); err != nil {
				return err
			}
		}
	}
	// Skipped records still move the checkpoint, so they are not read again.
	return send()
}

// Applied counts the activities this projector has applied.
func (p *Projector) Applied() uint64 { return p.appliedN.Load() }

// Position is the last applied position: 0 until Run has read the
// checkpoint.
func (p *Projector) Position() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pos
}

// WaitFor blocks until the projector has applied position, or ctx ends.
func (p *Projector) WaitFor(ctx context.Context, position uint64) error {
	for {
		p.mu.Lock()
		pos, advanced := p.pos, p.advanced
		p.mu.Unlock()
		if pos >= position {
			return nil
		}
		select {
		case <-advanced:
		case <-ctx.Done():
			return fmt.Errorf("wait for position %d (at %d): %w", position, pos, ctx.Err())
		}
	}
}

func (p *Projector) advance(pos uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pos <= p.pos {
		return
	}
	p.pos = pos
	close(p.advanced)
	p.advanced = make(chan struct{})
	p.metrics.position.Set(float64(pos))
}

// seen notes the highest position delivered, for the lag in events.
func (p *Projector) seen(pos uint64) {
	p.mu.Lock()
	p.lastSeen = max(p.lastSeen, pos)
	p.mu.Unlock()
}

// watchLag sets the lag in events from the store's head every second,
// and the lag in seconds to 0 once caught up.
func (p *Projector) watchLag(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, err := p.head.LastPosition(ctx)
		if err != nil {
			continue
		}
		p.mu.Lock()
		head = max(head, p.lastSeen)
		lag := head - min(head, p.pos)
		p.mu.Unlock()
		p.metrics.lagEvents.Set(float64(lag))
		if lag == 0 {
			p.metrics.lagSeconds.Set(0)
		}
	}
}

// retry runs op until it succeeds or ctx ends, logging each failure and
// backing off between attempts. It returns ctx.Err() when ctx ended.
func (p *Projector) retry(ctx context.Context, what string, op func() error) error {
	wait := retryMin
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := op()
		if err == nil {
			return nil
		}
		if time.Since(start) > retryMax {
			// It had been working (a subscription that ran for a while):
			// this is a new outage, not the next attempt of the last one.
			attempt, wait = 1, retryMin
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrFenced) {
			// Another projector or generation took over: end the term.
			p.log.Warn("projector fenced off", "op", what, "err", err)
			return err
		}
		p.metrics.errors.WithLabelValues(what).Inc()
		p.log.Error("projector "+what+" failed, retrying",
			"attempt", attempt, "retry_in", wait, "position", p.Position(), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		wait = min(2*wait, retryMax)
	}
}

type projectorMetrics struct {
	applied    prometheus.Counter
	skipped    *prometheus.CounterVec
	errors     *prometheus.CounterVec
	duration   prometheus.Histogram
	position   prometheus.Gauge
	batch      prometheus.Histogram
	lag        prometheus.Histogram
	lagSeconds prometheus.Gauge
	lagEvents  prometheus.Gauge
	leader     prometheus.Gauge
}

// newProjectorMetrics registers with reg; with nil the metrics are kept
// but not registered.
func newProjectorMetrics(reg prometheus.Registerer) projectorMetrics {
	f := promauto.With(reg)
	m := projectorMetrics{
		applied: f.NewCounter(prometheus.CounterOpts{
			Name: "activityhistory_projector_events_applied_total",
			Help: "Activities applied to the read model.",
		}),
		skipped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_projector_events_skipped_total",
			Help: "Events the projector skipped, by reason (unknown_type, undecodable).",
		}, []string{"reason"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_projector_errors_total",
			Help: "Failed projector operations that were retried, by operation.",
		}, []string{"op"}),
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "activityhistory_projector_apply_duration_seconds",
			Help:    "Time to apply one batch to the read model.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		position: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_projector_position",
			Help: "Global position of the last applied event.",
		}),
		batch: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "activityhistory_projector_batch_size",
			Help:    "Activities per batch applied to the read model.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
		lag: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "activityhistory_projector_lag_seconds",
			Help:    "Time from an event being recorded to its batch being applied, per batch (newest event of the batch).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		lagSeconds: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_projector_lag_current_seconds",
			Help: "Age of the newest event of the last applied batch; 0 once caught up with the store.",
		}),
		lagEvents: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_projector_lag_events",
			Help: "Events recorded in the store and not yet applied (store head minus position).",
		}),
		leader: f.NewGauge(prometheus.GaugeOpts{
			Name: "activityhistory_projector_lease_held",
			Help: "1 while this process holds the projector lease and applies; 0 on standby.",
		}),
	}
	// Every known series from the start, at zero: a rate() or an alert on
	// them works before the first increment.
	for _, reason := range []string{"unknown_type", "undecodable"} {
		m.skipped.WithLabelValues(reason)
	}
	for _, op := range []string{"checkpoint", "subscribe", "apply"} {
		m.errors.WithLabelValues(op)
	}
	return m
}
