package natsjs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/council/activityhistory/eventstore"
)

// Group commit. nats-server stages every atomic batch of an R1 file
// stream in a file store of its own (mkdir, O_SYNC meta files, fsyncs,
// removal) and does so on the stream's single ingest goroutine, so each
// batch costs milliseconds whatever its size and batches never overlap.
// Appends that are ready together are therefore committed as one batch.
// Each append's messages stay contiguous and keep their own expectations,
// so the batch is still all-or-nothing per append; when a shared batch is
// refused, its appends are committed one by one so each gets its own answer.
const (
	commitWorkers  = 2    // batches in flight at once
	maxBatchMsgs   = 1000 // nats-server's default limit per atomic batch
	maxGroupBytes  = 8 << 20
	commitQueueLen = 1024
)

// commit is one append's messages waiting for a batch.
type commit struct {
	ctx   context.Context
	msgs  []*nats.Msg
	bytes int
	done  chan commitResult // buffered: the worker never waits
}

type commitResult struct {
	firstSeq uint64 // stream sequence of msgs[0]
	err      error
}

// commit queues c and waits for its batch. It returns the sequence of c's
// first message, or an error sorted by classify.
func (s *Store) commit(ctx context.Context, c *commit) (uint64, error) {
	select {
	case s.commits <- c:
	case <-ctx.Done():
		return 0, backendErr(ctx, ctx.Err())
	case <-s.stop:
		return 0, fmt.Errorf("%w: store closed", eventstore.ErrUnavailable)
	}
	select {
	case r := <-c.done:
		if r.err != nil {
			return 0, classify(ctx, r.err)
		}
		return r.firstSeq, nil
	case <-ctx.Done():
		// Unknown whether the batch went in; a retry with the same ids
		// finds out.
		return 0, backendErr(ctx, ctx.Err())
	case <-s.stop:
		return 0, fmt.Errorf("%w: store closed", eventstore.ErrUnavailable)
	}
}

// commitLoop takes a queued append and whatever else is queued behind it
// (up to the batch limits) and commits them as one batch.
func (s *Store) commitLoop() {
	defer s.workers.Done()
	var next *commit
	for {
		if next == nil {
			select {
			case next = <-s.commits:
			case <-s.stop:
				return
			}
		}
		group := []*commit{next}
		n, size := len(next.msgs), next.bytes
		next = nil
	gather:
		for n < maxBatchMsgs {
			select {
			case c := <-s.commits:
				if n+len(c.msgs) > maxBatchMsgs || size+c.bytes > maxGroupBytes {
					next = c
					break gather
				}
				group = append(group, c)
				n, size = n+len(c.msgs), size+c.bytes
			default:
				break gather
			}
		}
		s.commitGroup(group)
	}
}

func (s *Store) commitGroup(group []*commit) {
	live := group[:0]
	var msgs []*nats.Msg
	for _, c := range group {
		if err := c.ctx.Err(); err != nil {
			c.done <- commitResult{err: err} // given up while queued: never sent
			continue
		}
		live = append(live, c)
		msgs = append(msgs, c.msgs...)
	}
	if len(live) == 0 {
		return
	}
	// A batch sent to a leader that died is never answered: give up soon,
	// the appends are retried (see Append).
	ctx, cancel := context.WithTimeout(context.Background(), attemptTimeout)
	defer cancel()
	// No ack on the first message: the commit's answer covers the batch,
	// and skipping it saves a round trip.
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false})
	if err == nil {
		seq := ack.Sequence - ack.BatchSize + 1
		for _, c := range live {
			c.done <- commitResult{firstSeq: seq}
			seq += uint64(len(c.msgs))
		}
		return
	}
	var apiErr *jetstream.APIError
	if len(live) > 1 && errors.As(err, &apiErr) {
		for _, c := range live {
			s.commitGroup([]*commit{c})
		}
		return
	}
	for _, c := range live {
		c.done <- commitResult{err: err}
	}
}
