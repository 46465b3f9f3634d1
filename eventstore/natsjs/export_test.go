package natsjs

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// TamperableConfig returns cfg for a store whose JetStream stream allows
// deleting and purging messages and keeps message ids for dupWindow only
// (0: the default), so that tests can tamper with it the way someone with
// server access could. Tests only: the product never opens such a stream.
func TamperableConfig(cfg Config, dupWindow time.Duration) Config {
	cfg.allowDelete = true
	cfg.dupWindow = dupWindow
	return cfg
}

// EventSubject is the subject of stream's events.
func (s *Store) EventSubject(stream string) string { return s.evSubject(stream) }

// IDSubject is the subject of an event id's index message.
func (s *Store) IDSubject(id string) string { return s.idSubject(id) }

// HeadSubject is the subject of stream's recorded head.
func (s *Store) HeadSubject(stream string) string { return s.headSubject(stream) }

// WithoutRepairer returns cfg for a store that does not run the id index
// indexer, so that tests can leave an event unindexed.
func WithoutRepairer(cfg Config) Config {
	cfg.noRepair = true
	return cfg
}

// AppendUnindexed does what a single-event append does up to storing the
// event, then stops: a writer that crashed before writing the id index
// entry (and the head).
func (s *Store) AppendUnindexed(ctx context.Context, stream string, ev eventstore.Event) (eventstore.Record, error) {
	var prev *eventstore.Head
	var prevSeq uint64
	raw, ok, err := s.get(ctx, s.cfg.Stream, directReq{LastFor: s.evSubject(stream)}, false)
	if err != nil {
		return eventstore.Record{}, err
	}
	if ok {
		rec, err := s.record(raw)
		if err != nil {
			return eventstore.Record{}, err
		}
		prev = &eventstore.Head{Stream: stream, Revision: rec.Revision, Hash: rec.Hash, Position: rec.Position}
		prevSeq = rec.Position
	}
	sealed, err := eventstore.Seal(prev, stream, []eventstore.Event{ev})
	if err != nil {
		return eventstore.Record{}, err
	}
	sealed[0].RecordedAt = time.Now().UTC()
	m := eventMsg(s.evSubject(stream), sealed[0])
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(prevSeq, 10))
	ack, err := s.js.PublishMsg(ctx, m)
	if err != nil {
		return eventstore.Record{}, err
	}
	if ack.Duplicate {
		return eventstore.Record{}, errors.New("append unindexed: a duplicate")
	}
	sealed[0].Position = ack.Sequence
	return sealed[0], nil
}

// RepairEvery returns cfg for a store whose indexer saves its checkpoint
// every d rather than every few seconds.
func RepairEvery(cfg Config, d time.Duration) Config {
	cfg.repairEvery = d
	return cfg
}

// RepairCheckpointKey is the heads bucket key of the indexer's checkpoint.
const RepairCheckpointKey = indexKey
