package audit

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/background"
	"github.com/council/activityhistory/eventstore"
)

// DefaultRetentionScan is how many records one retention tick examines.
const DefaultRetentionScan = 10_000

// RetentionOptions configure the store-side retention job.
type RetentionOptions struct {
	// Interval between ticks, full or not: the walk goes at a steady
	// Scan records per Interval, so it does not compete with the service
	// for the store.
	Interval time.Duration
	// Scan is the most records one tick examines (DefaultRetentionScan
	// when 0).
	Scan   int
	Logger *slog.Logger
}

// Retention erases expired payloads from the event store: it walks the
// store's global order, Scan records per tick, and erases every activity
// expired at the service's clock (reason "retention", by "system"), so
// that verification reports them as erased. A record not expired yet is
// met again on the next pass, which starts when a pass reaches the end.
type Retention struct {
	svc   *Service
	opts  RetentionOptions
	after uint64 // the walk goes on after this position
}

// Retention returns the job; nil when the store cannot erase or has no
// global order.
func (s *Service) Retention(opts RetentionOptions) *Retention {
	if s.st.Eraser == nil || s.st.Log == nil {
		return nil
	}
	if opts.Scan <= 0 {
		opts.Scan = DefaultRetentionScan
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Retention{svc: s, opts: opts}
}

// Run ticks until ctx ends; failures are logged and retried next tick.
func (r *Retention) Run(ctx context.Context) {
	background.Loop(ctx, r.opts.Interval, r.opts.Interval, func(ctx context.Context) bool {
		scanned, erased, err := r.Tick(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			r.opts.Logger.Warn("retention erase", "err", err, "scanned", scanned, "erased", erased)
		case erased > 0:
			r.opts.Logger.Info("retention erase", "scanned", scanned, "erased", erased)
		}
		return scanned == r.opts.Scan && err == nil
	})
}

// errScanned stops a tick's subscription.
var errScanned = errors.New("scanned enough")

// Tick examines up to Scan records after the last tick's and erases the
// expired ones among them; it returns how many it examined and erased.
func (r *Retention) Tick(ctx context.Context) (scanned, erased int, err error) {
	last, err := r.svc.st.Log.LastPosition(ctx)
	if err != nil {
		return 0, 0, err
	}
	if r.after >= last {
		r.after = 0 // a new pass
	}
	if last == 0 {
		return 0, 0, nil
	}
	now := r.svc.now()
	expired := map[string][]string{}
	var order []string
	after := r.after
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err = r.svc.st.Log.Subscribe(sctx, after, func(_ context.Context, batch []eventstore.Record) error {
		for _, rec := range batch {
			if scanned == r.opts.Scan || rec.Position > last {
				return errScanned
			}
			scanned++
			after = rec.Position
			if rec.Type != activity.EventRecorded || rec.Erased {
				continue
			}
			a, err := activity.DecodeEvent(rec.Type, rec.Data)
			if err != nil || !activity.Expired(a.Expires(), now) {
				continue
			}
			if _, ok := expired[rec.Stream]; !ok {
				order = append(order, rec.Stream)
			}
			expired[rec.Stream] = append(expired[rec.Stream], rec.ID)
		}
		if after >= last {
			return errScanned
		}
		return nil
	})
	if err != nil && !errors.Is(err, errScanned) {
		return scanned, 0, err
	}
	// A target that fails is tried again on the next pass; the rest go on.
	var errs []error
	for _, target := range order {
		res, err := r.svc.Erase(ctx, EraseRequest{TargetID: target, IDs: expired[target], Reason: RetentionReason, By: SystemActor})
		erased += len(res.Erased)
		if err != nil {
			errs = append(errs, err)
		}
	}
	r.after = after
	return scanned, erased, errors.Join(errs...)
}
