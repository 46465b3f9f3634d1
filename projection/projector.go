package projection

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

const (
	defaultBatchSize = 500
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
	// BatchSize is the most activities per ReadModel.Apply; default 500.
	BatchSize int
}

// Projector follows the event store in global order and applies every
// recorded activity to a read model, which keeps the checkpoint.
type Projector struct {
	store   eventstore.Store
	model   ReadModel
	log     *slog.Logger
	batch   int
	metrics projectorMetrics

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
		metrics:  newProjectorMetrics(opts.Registerer),
		advanced: make(chan struct{}),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.batch <= 0 {
		p.batch = defaultBatchSize
	}
	return p
}

// Run resumes from the read model's checkpoint and applies every record
// after it, then follows new records live. Failures of the read model or
// of the subscription are logged and retried with backoff; Run returns nil
// when ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	var from uint64
	err := p.retry(ctx, "checkpoint", func() error {
		var err error
		from, err = p.model.Checkpoint(ctx)
		return err
	})
	if err != nil {
		return nil // ctx ended
	}
	p.advance(from)
	p.log.Info("projector resuming", "position", from)
	_ = p.retry(ctx, "subscribe", func() error {
		err := p.store.Subscribe(ctx, p.Position(), p.handle)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = errors.New("subscription ended")
		}
		return err
	})
	return nil
}

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

// handle applies a subscription batch in chunks of at most p.batch
// activities. Records it cannot use are skipped, never fatal: a read
// model that stops at one odd event is worse than one missing it.
func (p *Projector) handle(ctx context.Context, recs []eventstore.Record) error {
	applied := p.Position()
	acts := make([]activity.Activity, 0, min(len(recs), p.batch))
	var last uint64
	flush := func() error {
		if last == 0 {
			return nil
		}
		err := p.retry(ctx, "apply", func() error {
			start := time.Now()
			if err := p.model.Apply(ctx, last, acts); err != nil {
				return err
			}
			p.metrics.duration.Observe(time.Since(start).Seconds())
			return nil
		})
		if err != nil {
			return err
		}
		p.metrics.applied.Add(float64(len(acts)))
		p.advance(last)
		// A fresh slice: the model may keep the one it was given.
		acts, last = make([]activity.Activity, 0, cap(acts)), 0
		return nil
	}
	for _, r := range recs {
		if r.Position <= applied {
			continue // delivered again: already in the read model
		}
		last = r.Position
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
			acts = append(acts, a)
		}
		if len(acts) == p.batch {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	// Skipped records still move the checkpoint, so they are not read again.
	return flush()
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
	applied  prometheus.Counter
	skipped  *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration prometheus.Histogram
	position prometheus.Gauge
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
