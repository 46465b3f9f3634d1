package projection

import (
	"context"
	"log/slog"
	"time"

	"github.com/council/activityhistory/background"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// DefaultSweepBatch is the most expired activities one sweep removes.
const DefaultSweepBatch = 1000

// SweepOptions configure the sweeper, which removes expired activities
// from the read model in the background. Pages and Get already skip them
// from the second they expire; the sweep frees their space.
type SweepOptions struct {
	// Interval between sweeps; 0 turns the sweeper off. After a sweep
	// that removed a full batch the next comes after a tenth of it (at
	// most a second), so a backlog drains without any one sweep being
	// long.
	Interval time.Duration
	// Batch is the most activities one sweep removes (DefaultSweepBatch
	// when 0).
	Batch int
	// Now is the clock expiry is judged by (nil: time.Now).
	Now func() time.Time
}

// sweeper runs during each term of a projector, on the term's model: with
// a lease only the holder sweeps.
type sweeper struct {
	opts  SweepOptions
	log   *slog.Logger
	swept prometheus.Counter
	fails prometheus.Counter
}

func newSweeper(opts SweepOptions, reg prometheus.Registerer, log *slog.Logger) *sweeper {
	if opts.Interval <= 0 {
		return nil
	}
	if opts.Batch <= 0 {
		opts.Batch = DefaultSweepBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := promauto.With(reg)
	return &sweeper{
		opts: opts,
		log:  log,
		swept: f.NewCounter(prometheus.CounterOpts{
			Name: "activityhistory_retention_swept_total",
			Help: "Expired activities the sweeper removed from the read model.",
		}),
		fails: f.NewCounter(prometheus.CounterOpts{
			Name: "activityhistory_retention_sweep_errors_total",
			Help: "Sweeps of expired activities that failed (retried at the next interval).",
		}),
	}
}

// run sweeps model every interval until ctx ends.
func (s *sweeper) run(ctx context.Context, model ReadModel) {
	background.Loop(ctx, s.opts.Interval, min(s.opts.Interval/10, time.Second), func(ctx context.Context) bool {
		n, err := s.sweep(ctx, model)
		switch {
		case err != nil && ctx.Err() == nil:
			s.fails.Inc()
			s.log.Warn("retention sweep", "err", err, "swept", n)
		case n > 0:
			s.log.Debug("retention sweep", "swept", n)
		}
		return n == s.opts.Batch
	})
}

// sweep removes at most one batch of activities expired now and returns
// how many it removed.
func (s *sweeper) sweep(ctx context.Context, model ReadModel) (int, error) {
	expired, err := model.Expired(ctx, s.opts.Now(), s.opts.Batch)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range expired {
		// Position 0: the checkpoint stays where the applier has it.
		if err := model.Forget(ctx, 0, e.TargetID, e.IDs); err != nil {
			return n, err
		}
		n += len(e.IDs)
		s.swept.Add(float64(len(e.IDs)))
	}
	return n, nil
}
