package esdb

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"golang.org/x/sync/errgroup"

	"github.com/council/activityhistory/eventstore"
)

// parallelLookups bounds the id-index and stream reads in flight for one
// group; they share the client's one gRPC connection.
const parallelLookups = 16

// opTimeout bounds one Append or Read whose context has no deadline.
const opTimeout = 30 * time.Second

// withTimeout bounds a call whose caller set no deadline: the client sets
// none on reads, and a half-open connection must not hang a writer.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

// backend is the Store as the engine sees it.
//
// Each stream's new records are written with the head's revision as the
// server-side expected revision, so a concurrent writer makes the server
// refuse the write instead of forking the chain.
//
// Event ids: the server dedupes retries by event id only within a short
// window and only per stream, so each id also gets an index stream
// (idStreamName) created with expected "no stream" and pointing at the
// record, in the same multi-stream append as the events (KurrentDB 25.1+,
// which Open requires): a group's events and their index entries commit
// atomically. The engine therefore looks no ids up before the first
// attempt; a recorded id makes the write fail, and the retry looks the ids
// up.
type backend struct{ s *Store }

func (b backend) Find(ctx context.Context, qs []eventstore.Query) ([]eventstore.Found, error) {
	out := make([]eventstore.Found, len(qs))
	err := forEach(ctx, len(qs), func(ctx context.Context, i int) (err error) {
		out[i], err = b.s.find(ctx, qs[i])
		return err
	})
	return out, err
}

func (b backend) Read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	return b.s.readStream(ctx, b.s.streamName(stream), kurrentdb.Forwards, kurrentdb.Revision(from), limit)
}

// find reads a stream's last record when asked and looks ids up.
func (s *Store) find(ctx context.Context, q eventstore.Query) (eventstore.Found, error) {
	var f eventstore.Found
	if q.Tail {
		tail, err := s.readStream(ctx, s.streamName(q.Stream), kurrentdb.Backwards, kurrentdb.End{}, 1)
		if err != nil && !errors.Is(err, eventstore.ErrNotFound) {
			return f, err
		}
		if len(tail) > 0 {
			if tail[0].Hash == "" {
				return f, fmt.Errorf("head revision %d carries no chain hash: not written by this store", tail[0].Revision)
			}
			f.Tail = &tail[0]
		}
	}
	var err error
	f.Recorded, err = s.lookupIDs(ctx, q.IDs)
	return f, err
}

// Commit writes a group, all its batches and their index entries, in one
// multi-stream append. A shared write that fails is made again batch by
// batch, so each gets its own answer. Then the written events are read
// back for their positions and times, which the server assigns.
func (b backend) Commit(ctx context.Context, batches []*eventstore.Batch) []error {
	s := b.s
	errs := make([]error, len(batches))
	err := s.writeMulti(ctx, batches)
	switch {
	case err != nil && len(batches) > 1:
		for i := range batches {
			errs[i] = b.Commit(ctx, batches[i:i+1])[0]
		}
		return errs
	case errors.Is(err, eventstore.ErrConflict) && conflictStream(err) != s.streamName(batches[0].Stream):
		// An index stream exists: an id of the batch is recorded.
		errs[0] = &eventstore.TakenError{}
	default:
		errs[0] = err
	}
	_ = forEach(ctx, len(batches), func(ctx context.Context, i int) error {
		if errs[i] == nil {
			errs[i] = s.readBack(ctx, batches[i])
		}
		return nil
	})
	return errs
}

// readBack sets Position and RecordedAt of just-written records.
func (s *Store) readBack(ctx context.Context, b *eventstore.Batch) error {
	stored, err := s.readStream(ctx, s.streamName(b.Stream), kurrentdb.Forwards, kurrentdb.Revision(b.Records[0].Revision), len(b.Records))
	if err != nil {
		return fmt.Errorf("read back written events: %w", err)
	}
	for j, want := range b.Records {
		if j >= len(stored) || stored[j].Revision != want.Revision || stored[j].ID != want.ID || stored[j].Hash != want.Hash {
			return fmt.Errorf("read back written events: revision %d is not the event written", want.Revision)
		}
		b.Records[j] = stored[j]
	}
	return nil
}

// writeMulti writes the batches and one index stream per event id in one
// atomic multi-stream append.
func (s *Store) writeMulti(ctx context.Context, batches []*eventstore.Batch) error {
	var reqs, index []kurrentdb.AppendStreamRequest
	for _, b := range batches {
		events := make([]kurrentdb.EventData, len(b.Records))
		for i, r := range b.Records {
			events[i] = toEventData(r)
			index = append(index, kurrentdb.AppendStreamRequest{
				StreamName:          s.idStreamName(r.ID),
				Events:              slices.Values([]kurrentdb.EventData{toIndexEventData(r)}),
				ExpectedStreamState: kurrentdb.NoStream{},
			})
		}
		state := kurrentdb.StreamState(kurrentdb.NoStream{})
		if b.Prev != nil {
			state = kurrentdb.StreamRevision{Value: b.Prev.Revision}
		}
		reqs = append(reqs, kurrentdb.AppendStreamRequest{
			StreamName: s.streamName(b.Stream), Events: slices.Values(events), ExpectedStreamState: state,
		})
	}
	_, err := s.client.MultiStreamAppend(ctx, slices.Values(append(reqs, index...)))
	return translate(ctx, "multi-stream append", err)
}

// lookupIDs finds where ids are recorded, reading their index streams.
func (s *Store) lookupIDs(ctx context.Context, ids []string) (map[string]eventstore.Record, error) {
	found := make(map[string]eventstore.Record)
	var mu sync.Mutex
	err := forEach(ctx, len(ids), func(ctx context.Context, i int) error {
		idx, err := s.readStream(ctx, s.idStreamName(ids[i]), kurrentdb.Forwards, kurrentdb.Start{}, 1)
		if errors.Is(err, eventstore.ErrNotFound) || err == nil && len(idx) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
		entry, err := decodeIndexEntry(idx[0])
		if err != nil {
			return err
		}
		got, err := s.readStream(ctx, s.streamName(entry.Stream), kurrentdb.Forwards, kurrentdb.Revision(entry.Revision), 1)
		if err != nil && !errors.Is(err, eventstore.ErrNotFound) {
			return err
		}
		if len(got) == 0 || got[0].ID != ids[i] {
			return fmt.Errorf("id index of %q points at %s revision %d, which does not hold it", ids[i], entry.Stream, entry.Revision)
		}
		mu.Lock()
		defer mu.Unlock()
		found[ids[i]] = got[0]
		return nil
	})
	return found, err
}

// forEach runs f for 0..n-1 with bounded parallelism and returns the first
// error; the others are cancelled.
func forEach(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(parallelLookups)
	for i := range n {
		g.Go(func() error { return f(ctx, i) })
	}
	return g.Wait()
}
