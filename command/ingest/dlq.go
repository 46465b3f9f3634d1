package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is one message of the dead-letter stream.
type DeadLetter struct {
	Seq             uint64 // in the dead-letter stream
	Reason          string
	Detail          string
	OriginalStream  string
	OriginalSubject string
	StreamSequence  uint64 // in the original stream
	DeliveryCount   uint64
	At              time.Time
	Data            []byte
}

// DLQ reads and re-drives the dead-letter stream.
type DLQ struct {
	js     jetstream.JetStream
	stream string
}

// NewDLQ returns the DLQ of the dead-letter stream named stream.
func NewDLQ(nc *nats.Conn, stream string) (*DLQ, error) {
	if stream == "" {
		stream = DefaultDLQStream
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("dlq: %w", err)
	}
	return &DLQ{js: js, stream: stream}, nil
}

// List returns the dead letters present now, oldest first; with reason,
// only those dead-lettered for it.
func (d *DLQ) List(ctx context.Context, reason string) ([]DeadLetter, error) {
	filter := d.stream + ".>"
	if reason != "" {
		filter = d.stream + "." + reason
	}
	cons, err := d.js.OrderedConsumer(ctx, d.stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil // nothing was ever dead-lettered
	}
	if err != nil {
		return nil, fmt.Errorf("dlq %s: %w", d.stream, err)
	}
	n := cons.CachedInfo().NumPending
	out := make([]DeadLetter, 0, n)
	for range n {
		nctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		msg, err := cons.Next(jetstream.FetchContext(nctx))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("dlq %s: read: %w", d.stream, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("dlq %s: %w", d.stream, err)
		}
		out = append(out, deadLetter(md.Sequence.Stream, msg.Headers(), msg.Data()))
	}
	return out, nil
}

// Get returns the dead letter at seq; jetstream.ErrMsgNotFound when there
// is none.
func (d *DLQ) Get(ctx context.Context, seq uint64) (DeadLetter, error) {
	s, err := d.js.Stream(ctx, d.stream)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dlq %s: %w", d.stream, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return DeadLetter{}, fmt.Errorf("dlq %s: seq %d: %w", d.stream, seq, err)
	}
	return deadLetter(m.Sequence, m.Header, m.Data), nil
}

func deadLetter(seq uint64, h nats.Header, data []byte) DeadLetter {
	dl := DeadLetter{
		Seq: seq, Data: data, Reason: h.Get(HeaderReason), Detail: h.Get(HeaderDetail),
		OriginalStream: h.Get(HeaderOriginalStream), OriginalSubject: h.Get(HeaderOriginalSubj),
	}
	dl.StreamSequence, _ = strconv.ParseUint(h.Get(HeaderStreamSequence), 10, 64)
	dl.DeliveryCount, _ = strconv.ParseUint(h.Get(HeaderDeliveryCount), 10, 64)
	dl.At, _ = time.Parse(time.RFC3339Nano, h.Get(HeaderDeadLetteredAt))
	return dl
}

// Replay re-processes dead letters through p (the current mapping). One
// recorded, found already recorded, or ignored now is removed from the
// stream; one still rejected stays. It stops at the first that cannot be
// recorded now (the store is unavailable), with that error. report, when
// set, hears of each.
func (d *DLQ) Replay(ctx context.Context, p *Processor, letters []DeadLetter, report func(DeadLetter, Outcome)) error {
	for _, dl := range letters {
		out := p.Process(ctx, dl.Data)
		if out.Result == Retried {
			return fmt.Errorf("replay seq %d: not recorded, try again later: %w", dl.Seq, out.Err)
		}
		if out.Result != DeadLettered {
			if err := d.remove(ctx, dl.Seq); err != nil {
				return err
			}
		}
		if report != nil {
			report(dl, out)
		}
	}
	return nil
}

func (d *DLQ) remove(ctx context.Context, seq uint64) error {
	s, err := d.js.Stream(ctx, d.stream)
	if err != nil {
		return fmt.Errorf("dlq %s: %w", d.stream, err)
	}
	if err := s.DeleteMsg(ctx, seq); err != nil {
		// Already removed (a replay run twice) is done.
		if _, gerr := s.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
			return nil
		}
		return fmt.Errorf("dlq %s: remove seq %d: %w", d.stream, seq, err)
	}
	return nil
}
