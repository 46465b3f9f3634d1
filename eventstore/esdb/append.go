package esdb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

// maxAttempts bounds how often one Append re-reads the stream after the
// server refused a write: under expected Any on a busy stream, or when
// another writer recorded one of the same event ids meanwhile.
const maxAttempts = 20

// parallelLookups bounds the id-index reads and writes in flight for one
// Append; they share the client's one gRPC connection.
const parallelLookups = 16

// opTimeout bounds one Append or Read whose context has no deadline.
const opTimeout = 30 * time.Second

// retry tells Append what to do after one attempt.
type retry int

const (
	done      retry = iota
	retryFast       // the stream moved: re-read its head and try again
	retrySlow       // an id may be recorded: look every id up first
)

// Append writes events at the end of one stream, all or nothing.
//
// Each attempt reads the stream's head, seals the new events onto its hash
// chain and writes them with the head's revision as the server-side
// expected revision, so a concurrent writer makes the server refuse the
// write (ErrConflict, or a re-read under Any) instead of forking the chain.
//
// Event ids: the server dedupes retries by event id only within a short
// window and only per stream, so each id also gets an index stream
// (idStreamName) created with expected "no stream" and pointing at the
// record. With a multi-stream append (KurrentDB 25.1+) the events and their
// index entries commit atomically: the common path then needs no id
// look-ups at all, a recorded id makes the whole write fail, and the retry
// looks the ids up. Without it, ids are looked up before the write and the
// index entries written after it, which leaves two windows: (1) a crash
// between the two writes leaves recorded events unindexed; a retry of the
// same append still finds them in the stream's tail (read for that) and
// re-creates their index entries, but a later reuse of such an id in
// another stream is not detected. (2) Two writers recording the same new
// id in different streams at the same moment both pass the look-up; the
// loser's events are written and it gets ErrDuplicateID afterwards.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := validateAppend(stream, expected, events); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	// An id given twice in one call with the same content is one event.
	var uniq []eventstore.Event
	slot := make([]int, len(events)) // events[i] is uniq[slot[i]]
	first := make(map[string]int, len(events))
	for i, ev := range events {
		if j, ok := first[ev.ID]; ok {
			if uniq[j].Type != ev.Type || !bytes.Equal(uniq[j].Data, ev.Data) {
				return eventstore.AppendResult{}, fmt.Errorf("append %s: %w: id %q given twice with different content", stream, eventstore.ErrDuplicateID, ev.ID)
			}
			slot[i] = j
			continue
		}
		first[ev.ID] = len(uniq)
		slot[i] = len(uniq)
		uniq = append(uniq, ev)
	}

	ctx, cancel := withTimeout(ctx)
	defer cancel()
	unlock, err := s.locks.lock(ctx, stream)
	if err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	defer unlock()
	slow := false
	for attempt := range maxAttempts {
		var res eventstore.AppendResult
		var next retry
		res, next, err = s.appendOnce(ctx, stream, expected, uniq, slow)
		if next == done {
			if err != nil {
				return eventstore.AppendResult{}, err
			}
			out := eventstore.AppendResult{Records: make([]eventstore.Record, len(events)), Appended: res.Appended}
			for i := range events {
				out.Records[i] = res.Records[slot[i]]
			}
			return out, nil
		}
		slow = slow || next == retrySlow
		if err := eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
		}
	}
	return eventstore.AppendResult{}, fmt.Errorf("append %s: still contended after %d attempts: %w", stream, maxAttempts, err)
}

// withTimeout bounds a call whose caller set no deadline: the client sets
// none on reads, and a half-open connection must not hang a writer.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

func (s *Store) appendOnce(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events []eventstore.Event, slow bool) (eventstore.AppendResult, retry, error) {
	fail := func(err error) (eventstore.AppendResult, retry, error) {
		return eventstore.AppendResult{}, done, fmt.Errorf("append %s: %w", stream, err)
	}
	name := s.streamName(stream)
	multi := s.multi.Load()

	// Without atomic index entries a retried append may be recorded but not
	// indexed: read as far back as this append could reach.
	tailLen := len(events)
	if multi == multiYes {
		tailLen = 1
	}
	tail, err := s.readStream(ctx, name, kurrentdb.Backwards, kurrentdb.End{}, tailLen)
	if err != nil && !errors.Is(err, eventstore.ErrNotFound) {
		return fail(err)
	}
	var head *eventstore.Head
	if len(tail) > 0 {
		r := tail[0]
		if r.Hash == "" {
			return fail(fmt.Errorf("head revision %d carries no chain hash: not written by this store", r.Revision))
		}
		head = &eventstore.Head{Stream: stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position}
	}

	known := make(map[string]eventstore.Record)
	inTail := make(map[string]eventstore.Record)
	for _, r := range tail {
		inTail[r.ID] = r
		known[r.ID] = r
	}
	fast := !slow && multi != multiNo && expectationMet(expected, head)
	if !fast {
		ids := make([]string, len(events))
		for i, ev := range events {
			ids[i] = ev.ID
		}
		found, err := s.lookupIDs(ctx, ids)
		if err != nil {
			return fail(err)
		}
		for id, r := range found {
			if t, ok := inTail[id]; ok && (r.Stream != t.Stream || r.Revision != t.Revision) {
				return fail(fmt.Errorf("%w: id %q is recorded in stream %q and in this stream", eventstore.ErrDuplicateID, id, r.Stream))
			}
			known[id] = r
		}
		s.reindex(ctx, inTail, found, events)
	}

	out := make([]eventstore.Record, len(events))
	var fresh []eventstore.Event
	var freshAt []int
	for i, ev := range events {
		orig, ok := known[ev.ID]
		if !ok {
			fresh = append(fresh, ev)
			freshAt = append(freshAt, i)
			continue
		}
		switch {
		case orig.Stream != stream:
			return fail(fmt.Errorf("%w: id %q is recorded in stream %q", eventstore.ErrDuplicateID, ev.ID, orig.Stream))
		case orig.Type != ev.Type || !bytes.Equal(orig.Data, ev.Data):
			return fail(fmt.Errorf("%w: id %q is recorded at revision %d with other type or data", eventstore.ErrDuplicateID, ev.ID, orig.Revision))
		}
		out[i] = orig
	}
	if len(fresh) == 0 {
		return eventstore.AppendResult{Records: out}, done, nil
	}
	if !expectationMet(expected, head) {
		return fail(fmt.Errorf("%w: expected %s, stream is at %s", eventstore.ErrConflict, describeExpected(expected), describeHead(head)))
	}
	sealed, err := eventstore.Seal(head, stream, fresh)
	if err != nil {
		return fail(err)
	}

	if multi != multiNo {
		supported, err := s.writeMulti(ctx, name, head, sealed)
		switch {
		case !supported:
			// Nothing was written, and the ids were not looked up yet.
			s.multi.Store(multiNo)
			s.log.Info("esdb: server has no multi-stream append; id index entries are written after the events")
			return eventstore.AppendResult{}, retrySlow, err
		case err == nil:
			s.multi.Store(multiYes)
		case errors.Is(err, eventstore.ErrConflict):
			if conflictStream(err) == name {
				return eventstore.AppendResult{}, retryFast, err
			}
			return eventstore.AppendResult{}, retrySlow, err
		default:
			return fail(err)
		}
	} else {
		if err := s.writeSingle(ctx, name, head, sealed); err != nil {
			if errors.Is(err, eventstore.ErrConflict) {
				return eventstore.AppendResult{}, retrySlow, err
			}
			return fail(err)
		}
		if err := s.writeIndexes(ctx, sealed); err != nil {
			return fail(err)
		}
	}

	stored, err := s.readStream(ctx, name, kurrentdb.Forwards, kurrentdb.Revision(sealed[0].Revision), len(sealed))
	if err != nil {
		return fail(fmt.Errorf("read back written events: %w", err))
	}
	for j, want := range sealed {
		if j >= len(stored) || stored[j].Revision != want.Revision || stored[j].ID != want.ID || stored[j].Hash != want.Hash {
			return fail(fmt.Errorf("read back written events: revision %d is not the event written", want.Revision))
		}
		out[freshAt[j]] = stored[j]
	}
	return eventstore.AppendResult{Records: out, Appended: len(sealed)}, done, nil
}

// writeMulti writes the events and one index stream per event id in one
// atomic multi-stream append. supported is false when the server has no
// multi-stream append (nothing was written).
func (s *Store) writeMulti(ctx context.Context, name string, head *eventstore.Head, recs []eventstore.Record) (supported bool, err error) {
	data := make([]kurrentdb.EventData, len(recs))
	reqs := make([]kurrentdb.AppendStreamRequest, 0, len(recs)+1)
	for i, r := range recs {
		if data[i], err = toEventData(r); err != nil {
			return true, err
		}
	}
	reqs = append(reqs, kurrentdb.AppendStreamRequest{
		StreamName: name, Events: slices.Values(data), ExpectedStreamState: streamState(head),
	})
	for _, r := range recs {
		idx, err := toIndexEventData(r)
		if err != nil {
			return true, err
		}
		reqs = append(reqs, kurrentdb.AppendStreamRequest{
			StreamName:          s.idStreamName(r.ID),
			Events:              slices.Values([]kurrentdb.EventData{idx}),
			ExpectedStreamState: kurrentdb.NoStream{},
		})
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
	data := make([]kurrentdb.EventData, len(recs))
	for i, r := range recs {
		var err error
		if data[i], err = toEventData(r); err != nil {
			return err
		}
	}
	_, err := s.client.AppendToStream(ctx, name, kurrentdb.AppendToStreamOptions{StreamState: streamState(head)}, data...)
	return translate(ctx, "append to "+name, err)
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
	idx, err := toIndexEventData(rec)
	if err != nil {
		return err
	}
	idName := s.idStreamName(rec.ID)
	_, err = s.client.AppendToStream(ctx, idName, kurrentdb.AppendToStreamOptions{StreamState: kurrentdb.NoStream{}}, idx)
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

// reindex re-creates missing index entries of events found in the stream's
// tail: what a crash between writing events and their index leaves behind.
// Best effort: the append itself does not depend on it.
func (s *Store) reindex(ctx context.Context, inTail, indexed map[string]eventstore.Record, events []eventstore.Event) {
	var missing []eventstore.Record
	for _, ev := range events {
		if r, ok := inTail[ev.ID]; ok {
			if _, ok := indexed[ev.ID]; !ok {
				missing = append(missing, r)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	if err := s.writeIndexes(ctx, missing); err != nil {
		s.log.Warn("esdb: re-creating id index entries", "stream", missing[0].Stream, "err", err)
	}
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
	rs, err := s.client.ReadStream(ctx, s.idStreamName(id), kurrentdb.ReadStreamOptions{From: kurrentdb.Start{}}, 1)
	if err != nil {
		err = translate(ctx, "read id index of "+id, err)
		if errors.Is(err, eventstore.ErrNotFound) {
			return indexEntry{}, false, nil
		}
		return indexEntry{}, false, err
	}
	defer rs.Close()
	ev, err := rs.Recv()
	if err != nil {
		err = translate(ctx, "read id index of "+id, err)
		if errors.Is(err, eventstore.ErrNotFound) || isEOF(err) {
			return indexEntry{}, false, nil
		}
		return indexEntry{}, false, err
	}
	entry, err := decodeIndexEntry(ev.Event)
	return entry, err == nil, err
}

// forEach runs f for 0..n-1 with bounded parallelism and returns the first
// error; the others are cancelled.
func forEach(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	sem := make(chan struct{}, parallelLookups)
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := f(ctx, i); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

func expectationMet(expected eventstore.ExpectedRevision, head *eventstore.Head) bool {
	switch {
	case expected == eventstore.Any:
		return true
	case expected == eventstore.NoStream:
		return head == nil
	default:
		return head != nil && head.Revision == uint64(expected)
	}
}

func streamState(head *eventstore.Head) kurrentdb.StreamState {
	if head == nil {
		return kurrentdb.NoStream{}
	}
	return kurrentdb.StreamRevision{Value: head.Revision}
}

func describeExpected(e eventstore.ExpectedRevision) string {
	switch e {
	case eventstore.Any:
		return "any"
	case eventstore.NoStream:
		return "no stream"
	}
	return fmt.Sprintf("revision %d", e)
}

func describeHead(h *eventstore.Head) string {
	if h == nil {
		return "no stream"
	}
	return fmt.Sprintf("revision %d", h.Revision)
}

// validateAppend refuses what the contract's limits or the server cannot
// take. Strings go into protobuf string fields and JSON metadata, so they
// must be UTF-8; "$" event types are the server's own.
func validateAppend(stream string, expected eventstore.ExpectedRevision, events []eventstore.Event) error {
	if err := validateStream(stream); err != nil {
		return err
	}
	if expected < eventstore.Any {
		return fmt.Errorf("%w: expected revision %d", eventstore.ErrInvalid, expected)
	}
	switch {
	case len(events) == 0:
		return fmt.Errorf("%w: no events", eventstore.ErrInvalid)
	case len(events) > eventstore.MaxEventsPerAppend:
		return fmt.Errorf("%w: %d events, at most %d", eventstore.ErrTooLarge, len(events), eventstore.MaxEventsPerAppend)
	}
	for i, ev := range events {
		switch {
		case ev.ID == "" || len(ev.ID) > eventstore.MaxEventIDLen || !utf8.ValidString(ev.ID):
			return fmt.Errorf("%w: event %d: id must be 1..%d bytes of UTF-8", eventstore.ErrInvalid, i, eventstore.MaxEventIDLen)
		case ev.Type == "" || !utf8.ValidString(ev.Type) || strings.HasPrefix(ev.Type, "$"):
			return fmt.Errorf("%w: event %q: type must be non-empty UTF-8 not starting with $", eventstore.ErrInvalid, ev.ID)
		case len(ev.Data) > eventstore.MaxEventBytes:
			return fmt.Errorf("%w: event %q: %d bytes of data, at most %d", eventstore.ErrTooLarge, ev.ID, len(ev.Data), eventstore.MaxEventBytes)
		}
	}
	return nil
}

func validateStream(stream string) error {
	if stream == "" || len(stream) > eventstore.MaxStreamNameLen || !utf8.ValidString(stream) {
		return fmt.Errorf("%w: stream name must be 1..%d bytes of UTF-8", eventstore.ErrInvalid, eventstore.MaxStreamNameLen)
	}
	return nil
}
