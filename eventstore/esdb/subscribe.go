package esdb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

// maxBatch bounds the records handed to a Handler at once.
const maxBatch = 256

// Backoff between resubscriptions after the server or the network dropped
// the subscription.
const (
	minResubscribeDelay = 100 * time.Millisecond
	maxResubscribeDelay = 10 * time.Second
)

// Subscribe follows $all from position after, filtered on the server to
// streams with our prefix (index streams have another prefix). Events that
// arrive together are handed over as one batch. When the subscription
// drops for a reason that can pass (server restart, leader change, network),
// it resubscribes after the last record handed over, with backoff; records
// at or below that position are never handed over twice.
//
// Checkpoints the server sends while scanning other streams are read but
// not resumed from: several server versions sent checkpoints from which a
// resubscription skips an event, so a resubscription starts after the last
// record delivered and re-scans the other streams' events since then.
func (b backend) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	s := b.s
	last := after
	delay := minResubscribeDelay
	for {
		prev := last
		from, err := s.startPosition(ctx, after, last)
		var herr error
		if err == nil {
			herr, err = s.subscribeOnce(ctx, from, &last, h)
		}
		if herr != nil {
			return herr
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !resubscribable(err) {
			return fmt.Errorf("subscribe after %d: %w", last, err)
		}
		if last != prev {
			delay = minResubscribeDelay
		}
		s.log.Warn("esdb: subscription dropped, resubscribing", "after", last, "in", delay, "err", err)
		if err := eventstore.Sleep(ctx, delay); err != nil {
			return err
		}
		delay = min(2*delay, maxResubscribeDelay)
	}
}

// startPosition is where a subscription that has handed over everything
// up to last starts. The server reads $all only from the start of a record,
// and a caller's `after` need not be one (any number is a valid argument),
// so a position not yet seen in a record is first tried with a one-event
// read; when the server refuses it, the subscription starts at the
// beginning of $all and records up to `after` are dropped here.
func (s *Store) startPosition(ctx context.Context, after, last uint64) (kurrentdb.AllPosition, error) {
	if last == 0 {
		return kurrentdb.Start{}, nil
	}
	// Our records are written without explicit transactions: their
	// commit and prepare positions are the same.
	pos := kurrentdb.Position{Commit: last, Prepare: last}
	if last != after {
		return pos, nil // the position of a record handed over
	}
	rs, err := s.client.ReadAll(ctx, kurrentdb.ReadAllOptions{From: pos}, 1)
	if _, err = s.collect(ctx, "check $all position", rs, err, 1); err == nil {
		return pos, nil
	}
	if ctx.Err() != nil || errors.Is(err, eventstore.ErrUnavailable) {
		return nil, err
	}
	s.log.Info("esdb: subscribe: position is not the start of a record; reading $all from the beginning", "after", after, "err", err)
	return kurrentdb.Start{}, nil
}

// subscribeOnce runs one server subscription until it drops (err), ctx
// ends (err) or h fails (herr). last is the position of the last record
// handed to h.
func (s *Store) subscribeOnce(ctx context.Context, from kurrentdb.AllPosition, last *uint64, h eventstore.Handler) (herr, err error) {
	opts := kurrentdb.SubscribeToAllOptions{
		From:   from,
		Filter: &kurrentdb.SubscriptionFilter{Type: kurrentdb.StreamFilterType, Prefixes: []string{s.prefix}},
	}
	sub, err := s.client.SubscribeToAll(ctx, opts)
	if err != nil {
		return nil, err
	}

	// Recv blocks per event; a reader goroutine lets the loop below see
	// what has already arrived and hand it over as one batch. It sends our
	// new records, then why the subscription dropped.
	recs := make(chan eventstore.Record, maxBatch)
	dropped := make(chan error, 1)
	stop := make(chan struct{})
	seen := *last // the reader's own copy: the loop below moves last
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			ev := sub.Recv()
			if d := ev.SubscriptionDropped; d != nil {
				dropped <- cmp.Or(d.Error, errors.New("subscription dropped"))
				return
			}
			if ev.EventAppeared == nil || ev.EventAppeared.Event == nil {
				continue // checkpoints and the like
			}
			rec, ok := s.subscribedRecord(ev.EventAppeared.Event, seen)
			if !ok {
				continue
			}
			seen = rec.Position
			select {
			case recs <- rec:
			case <-stop:
				return
			}
		}
	})
	defer func() {
		close(stop)
		_ = sub.Close()
		wg.Wait()
	}()

	for {
		var batch []eventstore.Record
		select {
		case rec := <-recs:
			batch = append(batch, rec)
		case err := <-dropped:
			// Records still buffered are read again after last.
			return nil, err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case rec := <-recs:
				batch = append(batch, rec)
			default:
				break drain
			}
		}
		if err := h(ctx, batch); err != nil {
			return err, nil
		}
		*last = batch[len(batch)-1].Position
	}
}

// subscribedRecord maps an event of the subscription, leaving out server
// events ("$" types such as stream tombstones) and anything at or below
// the last record passed on.
func (s *Store) subscribedRecord(ev *kurrentdb.RecordedEvent, last uint64) (eventstore.Record, bool) {
	if strings.HasPrefix(ev.EventType, "$") || !strings.HasPrefix(ev.StreamID, s.prefix) {
		return eventstore.Record{}, false
	}
	rec := toRecord(s.prefix, ev)
	return rec, rec.Position > last
}

// resubscribable tells a drop that may pass (resubscribe) from one that
// will not (wrong credentials, closed store, a bug).
func resubscribable(err error) bool {
	if kerr, ok := errors.AsType[*kurrentdb.Error](err); ok {
		switch kerr.Code() {
		case kurrentdb.ErrorCodeAccessDenied,
			kurrentdb.ErrorCodeUnauthenticated,
			kurrentdb.ErrorCodeConnectionClosed,
			kurrentdb.ErrorCodeUnsupportedFeature,
			kurrentdb.ErrorCodeParsing,
			kurrentdb.ErrorCodeInternalClient:
			return false
		}
	}
	return true
}
