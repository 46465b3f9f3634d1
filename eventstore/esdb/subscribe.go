package esdb

import (
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

// handlerError carries the Handler's own error out of the receive loop.
type handlerError struct{ err error }

func (e *handlerError) Error() string { return e.err.Error() }

// subscribe follows $all from position after, filtered on the server to
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
func (s *Store) subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	last := after
	delay := minResubscribeDelay
	for {
		from, err := s.startPosition(ctx, after, last)
		var progressed bool
		if err == nil {
			progressed, err = s.subscribeOnce(ctx, from, &last, h)
		}
		if herr, ok := errors.AsType[*handlerError](err); ok {
			return herr.err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !resubscribable(err) {
			return fmt.Errorf("subscribe after %d: %w", last, err)
		}
		if progressed {
			delay = minResubscribeDelay
		}
		s.log.Warn("esdb: subscription dropped, resubscribing", "after", last, "in", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
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
	if err == nil {
		defer rs.Close()
		_, err = rs.Recv()
	}
	if err == nil || isEOF(err) {
		return pos, nil
	}
	err = translate(ctx, "check $all position", err)
	if ctx.Err() != nil || errors.Is(err, eventstore.ErrUnavailable) {
		return nil, err
	}
	s.log.Info("esdb: subscribe: position is not the start of a record; reading $all from the beginning", "after", after, "err", err)
	return kurrentdb.Start{}, nil
}

// subscribeOnce runs one server subscription until it drops, ctx ends or
// h fails. last is the position of the last record handed to h.
func (s *Store) subscribeOnce(ctx context.Context, from kurrentdb.AllPosition, last *uint64, h eventstore.Handler) (progressed bool, err error) {
	opts := kurrentdb.SubscribeToAllOptions{
		From:   from,
		Filter: &kurrentdb.SubscriptionFilter{Type: kurrentdb.StreamFilterType, Prefixes: []string{s.prefix}},
	}
	sub, err := s.client.SubscribeToAll(ctx, opts)
	if err != nil {
		return false, err
	}

	// Recv blocks per event; a reader goroutine lets the loop below see
	// what has already arrived and hand it over as one batch.
	events := make(chan *kurrentdb.SubscriptionEvent, maxBatch)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			ev := sub.Recv()
			select {
			case events <- ev:
			case <-stop:
				return
			}
			if ev.SubscriptionDropped != nil {
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
		var ev *kurrentdb.SubscriptionEvent
		select {
		case ev = <-events:
		case <-ctx.Done():
			return progressed, ctx.Err()
		}
		var batch []eventstore.Record
		var dropped error
		take := func(ev *kurrentdb.SubscriptionEvent) {
			switch {
			case ev.EventAppeared != nil && ev.EventAppeared.Event != nil:
				rec, ok := s.subscribedRecord(ev.EventAppeared.Event, *last, batch)
				if ok {
					batch = append(batch, rec)
				}
			case ev.CheckPointReached != nil:
				s.log.Debug("esdb: subscription checkpoint", "commit", ev.CheckPointReached.Commit)
			case ev.SubscriptionDropped != nil:
				dropped = ev.SubscriptionDropped.Error
				if dropped == nil {
					dropped = errors.New("subscription dropped")
				}
			}
		}
		take(ev)
	drain:
		for dropped == nil && len(batch) < maxBatch {
			select {
			case ev = <-events:
				take(ev)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			if err := h(ctx, batch); err != nil {
				return progressed, &handlerError{err: err}
			}
			*last = batch[len(batch)-1].Position
			progressed = true
		}
		if dropped != nil {
			return progressed, dropped
		}
	}
}

// subscribedRecord maps an event of the subscription, leaving out server
// events ("$" types such as stream tombstones) and anything at or below
// what was already handed over.
func (s *Store) subscribedRecord(ev *kurrentdb.RecordedEvent, last uint64, batch []eventstore.Record) (eventstore.Record, bool) {
	if strings.HasPrefix(ev.EventType, "$") || !strings.HasPrefix(ev.StreamID, s.prefix) {
		return eventstore.Record{}, false
	}
	rec := toRecord(s.prefix, ev)
	if len(batch) > 0 {
		last = batch[len(batch)-1].Position
	}
	if rec.Position <= last {
		return eventstore.Record{}, false
	}
	return rec, true
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
