package natsjs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

const (
	subscribeBatch = 500
	// subscribeLinger is how long a batch waits for more records once it
	// has one: long enough to group a burst, short enough for live tails.
	subscribeLinger = 2 * time.Millisecond
)

// Subscribe follows every event subject with an ordered consumer (no
// server-side state to clean up, recreated on gaps or reconnects), from
// position after+1, in batches.
func (s *Store) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{s.evAll},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	cctx, cancel := withTimeout(ctx)
	cons, err := s.js.OrderedConsumer(cctx, s.cfg.Stream, cfg)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("subscribe after %d: %w", after, backendErr(ctx, err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2*subscribeBatch, 32<<20))
	if err != nil {
		return fmt.Errorf("subscribe after %d: %w", after, backendErr(ctx, err))
	}
	defer it.Stop()
	// While the ordered consumer is being recreated (after a node loss)
	// Next does not watch ctx; stopping the iterator ends it.
	defer context.AfterFunc(ctx, it.Stop)()

	batch := make([]eventstore.Record, 0, subscribeBatch)
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("subscribe after %d: %w", after, backendErr(ctx, err))
		}
		batch = batch[:0]
		if batch, err = s.appendMsg(batch, m); err != nil {
			return fmt.Errorf("subscribe after %d: %w", after, err)
		}
		linger, stop := context.WithTimeout(ctx, subscribeLinger)
		for len(batch) < subscribeBatch {
			m, err := it.Next(jetstream.NextContext(linger))
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				break // linger over (or ctx done: checked below)
			}
			if err != nil {
				stop()
				if ctx.Err() != nil {
					// ctx ending stops the iterator: Next says "closed".
					return ctx.Err()
				}
				return fmt.Errorf("subscribe after %d: %w", after, backendErr(ctx, err))
			}
			if batch, err = s.appendMsg(batch, m); err != nil {
				stop()
				return fmt.Errorf("subscribe after %d: %w", after, err)
			}
		}
		stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := h(ctx, batch); err != nil {
			return err
		}
		after = batch[len(batch)-1].Position
		// The handler may keep the slice.
		batch = make([]eventstore.Record, 0, subscribeBatch)
	}
}

func (s *Store) appendMsg(batch []eventstore.Record, m jetstream.Msg) ([]eventstore.Record, error) {
	raw, err := fromConsumer(m)
	if err != nil {
		return batch, err
	}
	r, err := s.record(raw)
	if err != nil {
		return batch, err
	}
	return append(batch, r), nil
}
