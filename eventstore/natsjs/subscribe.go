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

// subscribe hands h every record after position after, in batches.
func (s *Store) subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	return s.follow(ctx, after, subscribeBatch, subscribeLinger, func(msgs []rawMsg) error {
		batch := make([]eventstore.Record, len(msgs)) // the handler may keep it
		for i, m := range msgs {
			var err error
			if batch[i], err = s.record(m); err != nil {
				return fmt.Errorf("subscribe after %d: %w", after, err)
			}
		}
		if err := h(ctx, batch); err != nil {
			return err
		}
		after = batch[len(batch)-1].Position
		return nil
	})
}

// follow reads every event subject with an ordered consumer (no
// server-side state to clean up, recreated on gaps or reconnects) from
// position after+1 and calls fn with batches of up to size messages, each
// waiting up to linger to fill once it has one. It returns ctx.Err() or
// fn's error.
func (s *Store) follow(ctx context.Context, after uint64, size int, linger time.Duration, fn func([]rawMsg) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.evAll}, DeliverPolicy: jetstream.DeliverAllPolicy}
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
		return fmt.Errorf("follow after %d: %w", after, backendErr(ctx, err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2*size, 32<<20))
	if err != nil {
		return fmt.Errorf("follow after %d: %w", after, backendErr(ctx, err))
	}
	defer it.Stop()
	// While the ordered consumer is being recreated (after a node loss)
	// Next does not watch ctx; stopping the iterator ends it.
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		var batch []rawMsg
		wait, stop := ctx, context.CancelFunc(func() {})
		for len(batch) < size {
			m, err := it.Next(jetstream.NextContext(wait))
			if len(batch) > 0 && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
				break // linger over (or ctx done: checked below)
			}
			if err == nil {
				var raw rawMsg
				if raw, err = fromConsumer(m); err == nil {
					batch = append(batch, raw)
				}
			}
			if err != nil {
				stop()
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("follow after %d: %w", after, backendErr(ctx, err))
			}
			if len(batch) == 1 {
				wait, stop = context.WithTimeout(ctx, linger)
			}
		}
		stop()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := fn(batch); err != nil {
			return err
		}
		after = batch[len(batch)-1].seq
	}
}
