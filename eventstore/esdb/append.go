package esdb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"
	"golang.org/x/sync/errgroup"

	"github.com/council/activityhistory/eventstore"
)

// parallelLookups bounds the id-index reads and writes in flight for one
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
// record. With a multi-stream append (KurrentDB 25.1+) a group's events
// and their index entries commit atomically: the engine then looks no ids
// up before the first attempt, a recorded id makes the write fail, and the
// retry looks the ids up. Without it, ids are looked up before the write
// and the index entries written after it, which leaves two windows: (1) a
// crash between the two writes leaves recorded events unindexed; a retry
// of the same append still finds them in the stream's tail (read for
// that) and re-creates their index entries, but a later reuse of such an
// id in another stream is not detected. (2) Two writers recording the same
// new id in different streams at the same moment both pass the look-up;
// the loser's events are written and it gets ErrDuplicateID afterwards.
type backend struct{ s *Store }

func (b backend) Find(ctx context.Context, qs []eventstore.Query) ([]eventstore.Found, error) {
	out := make([]eventstore.Found, len(qs))
	err := forEach(ctx, len(qs), func(ctx context.Context, i int) (err error) {
		out[i], err = b.s.find(ctx, qs[i])
		return err
	})
	return out, err
}

func (b backend) Commit(ctx context.Context, batches []*eventstore.Batch) []error {
	return b.s.commit(ctx, batches)
}

func (b backend) Read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	recs, err := b.s.readStream(ctx, b.s.streamName(stream), kurrentdb.Forwards, kurrentdb.Revision(from), limit)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return recs, nil
}

func (b backend) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	return b.s.subscribe(ctx, after, h)
}

// find reads a stream's tail and looks ids up. Without atomic index
// entries a retried append may be recorded but not indexed: the tail is
// read as far back as this append could reach, and such events are
// reported recorded and indexed again.
func (s *Store) find(ctx context.Context, q eventstore.Query) (eventstore.Found, error) {
	f := eventstore.Found{Recorded: map[string]eventstore.Record{}}
	tailLen := 1
	if s.multi.Load() != multiYes {
		tailLen = max(1, len(q.IDs))
	}
	var tail []eventstore.Record
	if q.Tail || tailLen > 1 {
		var err error
		tail, err = s.readStream(ctx, s.streamName(q.Stream), kurrentdb.Backwards, kurrentdb.End{}, tailLen)
		if err != nil && !errors.Is(err, eventstore.ErrNotFound) {
			return f, err
		}
	}
	if len(tail) > 0 && q.Tail {
		if tail[0].Hash == "" {
			return f, fmt.Errorf("head revision %d carries no chain hash: not written by this store", tail[0].Revision)
		}
		f.Tail = &tail[0]
	}
	found, err := s.lookupIDs(ctx, q.IDs)
	if err != nil {
		return f, err
	}
	var missing []eventstore.Record
	for _, r := range tail {
		if !slices.Contains(q.IDs, r.ID) {
			continue
		}
		if idx, ok := found[r.ID]; !ok {
			missing = append(missing, r)
			found[r.ID] = r
		} else if idx.Stream != r.Stream || idx.Revision != r.Revision {
			return f, fmt.Errorf("%w: id %q is recorded in stream %q and in this stream", eventstore.ErrDuplicateID, r.ID, idx.Stream)
		}
	}
	if len(missing) > 0 {
		// Best effort: the append itself does not depend on it.
		if err := s.writeIndexes(ctx, missing); err != nil {
			s.log.Warn("esdb: re-creating id index entries", "stream", q.Stream, "err", err)
		}
	}
	f.Recorded = found
	return f, nil
}

// commit writes a group: with multi-stream append all its batches and
// their index entries at once, else each batch, then its index entries.
// A shared write that fails is made again batch by batch, so each gets
// its own answer. Then the written events are read back for their
// positions and times, which the server assigns.
func (s *Store) commit(ctx context.Context, batches []*eventstore.Batch) []error {
	errs := make([]error, len(batches))
	if s.multi.Load() != multiNo {
		supported, err := s.writeMulti(ctx, batches)
		switch {
		case !supported:
			// Nothing was written; the retry looks ids up first.
			s.multi.Store(multiNo)
			s.log.Info("esdb: server has no multi-stream append; id index entries are written after the events")
			for i := range errs {
				errs[i] = fmt.Errorf("%w: %w", eventstore.ErrConflict, err)
			}
			return errs
		case err != nil && len(batches) > 1:
			for i := range batches {
				errs[i] = s.commit(ctx, batches[i:i+1])[0]
			}
			return errs
		case err == nil:
			s.multi.Store(multiYes)
		case errors.Is(err, eventstore.ErrConflict) && conflictStream(err) != s.streamName(batches[0].Stream):
			errs[0] = &eventstore.TakenError{}
		default:
			errs[0] = err
		}
	} else {
		_ = forEach(ctx, len(batches), func(ctx context.Context, i int) error {
			b := batches[i]
			if errs[i] = s.writeSingle(ctx, s.streamName(b.Stream), b.Prev, b.Records); errs[i] == nil {
				errs[i] = s.writeIndexes(ctx, b.Records)
			}
			return nil
		})
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
// atomic multi-stream append. supported is false when the server has no
// multi-stream append (nothing was written).
func (s *Store) writeMulti(ctx context.Context, batches []*eventstore.Batch) (supported bool, err error) {
	var reqs []kurrentdb.AppendStreamRequest
	for _, b := range batches {
		reqs = append(reqs, kurrentdb.AppendStreamRequest{
			StreamName: s.streamName(b.Stream), Events: eventData(b.Records), ExpectedStreamState: streamState(b.Prev),
		})
	}
	for _, b := range batches {
		for _, r := range b.Records {
			reqs = append(reqs, kurrentdb.AppendStreamRequest{
				StreamName:          s.idStreamName(r.ID),
				Events:              slices.Values([]kurrentdb.EventData{toIndexEventData(r)}),
				ExpectedStreamState: kurrentdb.NoStream{},
			})
		}
	}
	_, err = s.client.MultiStreamAppend(ctx, slices.Values(reqs))
	var kerr *kurrentdb.Error
	if errors.As(err, &kerr) && kerr.Code() == kurrentdb.ErrorCodeUnsupportedFeature {
		return false, err
	}
	return true, translate(ctx, "multi-stream append", err)
}

// writeSingle writes the events to their stream alone.
func (s *Store) writeSingle(ctx context.Context, name string, head *eventstore.Head, recs []eventstore.Record) error {
	_, err := s.client.AppendToStream(ctx, name, kurrentdb.AppendToStreamOptions{StreamState: streamState(head)}, slices.Collect(eventData(recs))...)
	return translate(ctx, "append to "+name, err)
}

// eventData is what the client writes for recs.
func eventData(recs []eventstore.Record) iter.Seq[kurrentdb.EventData] {
	return func(yield func(kurrentdb.EventData) bool) {
		for _, r := range recs {
			if !yield(toEventData(r)) {
				return
			}
		}
	}
}

// writeIndexes writes the index entries of records already written.
func (s *Store) writeIndexes(ctx context.Context, recs []eventstore.Record) error {
	return forEach(ctx, len(recs), func(ctx context.Context, i int) error {
		return s.writeIndex(ctx, recs[i])
	})
}

// writeIndex creates the index stream of rec's id. An existing entry for
// the same record is fine (a repair raced another); one pointing elsewhere
// means the id was recorded twice.
func (s *Store) writeIndex(ctx context.Context, rec eventstore.Record) error {
	idName := s.idStreamName(rec.ID)
	_, err := s.client.AppendToStream(ctx, idName, kurrentdb.AppendToStreamOptions{StreamState: kurrentdb.NoStream{}}, toIndexEventData(rec))
	err = translate(ctx, "index id "+rec.ID, err)
	if !errors.Is(err, eventstore.ErrConflict) {
		return err
	}
	entry, found, err := s.readIndex(ctx, rec.ID)
	switch {
	case err != nil:
		return err
	case found && entry.Stream == rec.Stream && entry.Revision == rec.Revision:
		return nil
	}
	s.log.Error("esdb: event id recorded in two streams (concurrent appends without multi-stream append)",
		"id", rec.ID, "stream", rec.Stream, "revision", rec.Revision, "indexedStream", entry.Stream)
	return fmt.Errorf("%w: id %q is also recorded in stream %q; the events of this append were written all the same",
		eventstore.ErrDuplicateID, rec.ID, entry.Stream)
}

// lookupIDs finds where ids are recorded, reading their index streams.
func (s *Store) lookupIDs(ctx context.Context, ids []string) (map[string]eventstore.Record, error) {
	recs := make([]*eventstore.Record, len(ids))
	err := forEach(ctx, len(ids), func(ctx context.Context, i int) error {
		entry, found, err := s.readIndex(ctx, ids[i])
		if err != nil || !found {
			return err
		}
		got, err := s.readStream(ctx, s.streamName(entry.Stream), kurrentdb.Forwards, kurrentdb.Revision(entry.Revision), 1)
		if err != nil && !errors.Is(err, eventstore.ErrNotFound) {
			return err
		}
		if len(got) == 0 || got[0].ID != ids[i] {
			return fmt.Errorf("id index of %q points at %s revision %d, which does not hold it", ids[i], entry.Stream, entry.Revision)
		}
		recs[i] = &got[0]
		return nil
	})
	if err != nil {
		return nil, err
	}
	found := make(map[string]eventstore.Record)
	for i, r := range recs {
		if r != nil {
			found[ids[i]] = *r
		}
	}
	return found, nil
}

// readIndex reads the index entry of one id.
func (s *Store) readIndex(ctx context.Context, id string) (indexEntry, bool, error) {
	recs, err := s.readStream(ctx, s.idStreamName(id), kurrentdb.Forwards, kurrentdb.Start{}, 1)
	switch {
	case errors.Is(err, eventstore.ErrNotFound) || err == nil && len(recs) == 0:
		return indexEntry{}, false, nil
	case err != nil:
		return indexEntry{}, false, err
	}
	entry, err := decodeIndexEntry(recs[0])
	return entry, err == nil, err
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

func streamState(head *eventstore.Head) kurrentdb.StreamState {
	if head == nil {
		return kurrentdb.NoStream{}
	}
	return kurrentdb.StreamRevision{Value: head.Revision}
}
