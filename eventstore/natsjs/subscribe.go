package natsjs

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

const (
	// subscribeBatch bounds a batch handed to a subscriber: large enough
	// that a catch-up costs few handler calls, while a live tail gets
	// whatever has arrived, at once (no linger).
	subscribeBatch = 2000
	// followBytes bounds the bytes pulled ahead of the handler.
	followBytes = 32 << 20
)

// subscribe hands h every record after position after, in batches.
func (s *Store) subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	return s.follow(ctx, after, subscribeBatch, 0, func(msgs []rawMsg) error {
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
// position after+1 and calls fn with batches of up to size messages. A
// reader goroutine keeps pulling while fn runs, so fn gets whatever has
// arrived meanwhile; a batch smaller than size then waits up to linger
// for more (0: none). fn must not keep the slice. It returns ctx.Err()
// or fn's error.
func (s *Store) follow(ctx context.Context, after uint64, size int, linger time.Duration, fn func([]rawMsg) error) error {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.evAll}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = after + 1
	}
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("follow after %d: %w", after, backendErr(ctx, err))
	}
	cctx, cancel := withTimeout(ctx)
	cons, err := s.js.OrderedConsumer(cctx, s.cfg.Stream, cfg)
	cancel()
	if err != nil {
		return fail(err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2*size, followBytes))
	if err != nil {
		return fail(err)
	}
	defer it.Stop()
	// While the ordered consumer is being recreated (after a node loss)
	// Next does not watch ctx; stopping the iterator ends it.
	defer context.AfterFunc(ctx, it.Stop)()

	// The reader turns messages into rawMsgs ahead of fn, up to 2*size.
	rctx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	msgs := make(chan rawMsg, 2*size)
	failed := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next(jetstream.NextContext(rctx))
			var raw rawMsg
			if err == nil {
				raw, err = fromConsumer(m)
			}
			if err != nil {
				failed <- err
				return
			}
			select {
			case msgs <- raw:
			case <-rctx.Done():
				return
			}
		}
	}()
	batch := make([]rawMsg, 0, size)
	for {
		batch = batch[:0]
		select {
		case m := <-msgs:
			batch = append(batch, m)
		case err := <-failed:
			return fail(err)
		case <-ctx.Done():
			return ctx.Err()
		}
		var timeout <-chan time.Time
		if linger > 0 {
			timeout = time.After(linger)
		}
	fill:
		for len(batch) < size {
			select {
			case m := <-msgs:
				batch = append(batch, m)
				continue
			default:
			}
			if timeout == nil {
				break
			}
			select {
			case m := <-msgs:
				batch = append(batch, m)
			case <-timeout:
				break fill
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if err := fn(batch); err != nil {
			return err
		}
		after = batch[len(batch)-1].seq
	}
}
