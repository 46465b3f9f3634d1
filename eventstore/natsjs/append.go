package natsjs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// JetStream error codes an append reacts to (nats-server errors.json).
const (
	codeWrongLastSeq      = 10071 // expected last (subject) sequence did not match
	codeWrongLastSeqConst = 10164 // same, or another write to the subject is in flight
	codeDupMsgInBatch     = 10201 // a Nats-Msg-Id of the batch is already recorded
	codeDupMsgInProcess   = 10158 // a Nats-Msg-Id is being written right now
	codeBatchIncomplete   = 10176 // batch lost a message, e.g. rejected before commit
	codeTooManyBatches    = 10210 // too many atomic batches in flight
	codeMsgTooLarge       = 10054
	codeBatchTooLarge     = 10199
)

// maxAttempts bounds retries after a lost race or a busy server.
const maxAttempts = 50

// errRetry marks an attempt that lost a race or met a busy server.
var errRetry = errors.New("retry")

// Append writes the new events of one call. Several new events go in as
// one atomic batch: for each event its message on the stream's subject,
// then an id-index message on the id's subject. The first event message
// expects the stream's head sequence and every id-index message expects
// sequence 0, so the server rejects the whole batch when the stream moved
// or an id exists. On a single-replica stream a single new event (the
// common case) is a plain publish followed by its id-index message
// (appendSingle): there an atomic batch costs milliseconds, a publish
// microseconds.
func (s *Store) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error) {
	if err := checkStream(stream); err != nil {
		return eventstore.AppendResult{}, fmt.Errorf("append: %w", err)
	}
	switch {
	case len(events) == 0:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: no events: %w", stream, eventstore.ErrInvalid)
	case len(events) > eventstore.MaxEventsPerAppend:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: %d events > %d: %w", stream, len(events), eventstore.MaxEventsPerAppend, eventstore.ErrTooLarge)
	case expected < eventstore.Any:
		return eventstore.AppendResult{}, fmt.Errorf("append %s: expected revision %d: %w", stream, expected, eventstore.ErrInvalid)
	}
	// An id repeated within the call with the same content is one event.
	var uniq []eventstore.Event
	var sums []string
	slot := make([]int, len(events)) // events[i] is uniq[slot[i]]
	first := make(map[string]int, len(events))
	for i, ev := range events {
		if err := checkEvent(ev); err != nil {
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
		}
		sum := contentSum(ev)
		if j, ok := first[ev.ID]; ok {
			if sums[j] != sum {
				return eventstore.AppendResult{}, fmt.Errorf("append %s: event %s given twice with different content: %w", stream, ev.ID, eventstore.ErrDuplicateID)
			}
			slot[i] = j
			continue
		}
		first[ev.ID] = len(uniq)
		slot[i] = len(uniq)
		uniq = append(uniq, ev)
		sums = append(sums, sum)
	}

	ctx, cancel := withTimeout(ctx)
	defer cancel()
	unlock := s.locks.lock(stream)
	defer unlock()
	for attempt, waits := 1, 0; ; {
		recs, n, err := s.appendOnce(ctx, stream, expected, uniq, sums)
		if err == nil {
			out := eventstore.AppendResult{Records: make([]eventstore.Record, len(events)), Appended: n}
			for i := range events {
				out.Records[i] = recs[slot[i]]
			}
			return out, nil
		}
		var wait time.Duration
		switch {
		case errors.Is(err, errRetry):
			if attempt == maxAttempts {
				return eventstore.AppendResult{}, fmt.Errorf("append %s: still contended after %d attempts: %w: %w", stream, attempt, eventstore.ErrConflict, err)
			}
			wait = eventstore.ConflictBackoff(attempt)
			attempt++
		case errors.Is(err, eventstore.ErrUnavailable) && ctx.Err() == nil && !s.closed():
			// A leader election or a reconnect, over in seconds. Trying
			// again is safe whatever expected is: an attempt that went in
			// after all is found by its ids and its records returned, and
			// two attempts cannot both go in (each expects its id-index
			// subjects to be empty).
			waits++
			wait = unavailableBackoff(waits)
		default:
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
		}
		if serr := eventstore.Sleep(ctx, wait); serr != nil {
			if errors.Is(serr, context.Canceled) {
				err = serr
			}
			return eventstore.AppendResult{}, fmt.Errorf("append %s: %w", stream, backendErr(ctx, err))
		}
	}
}

// appendOnce makes one attempt. It returns the record of each event and
// how many it wrote, or an error wrapping errRetry when the caller should
// look again and retry.
func (s *Store) appendOnce(ctx context.Context, stream string, expected eventstore.ExpectedRevision, evs []eventstore.Event, sums []string) ([]eventstore.Record, int, error) {
	subj := s.evSubject(stream)
	cur, cached := s.heads.get(stream)
	if cached && !holds(expected, &cur) {
		// The cache may be behind: a conflict must come from the server.
		s.heads.drop(stream)
		cached = false
	}
	// Ids are always looked up, though the batch would refuse a recorded
	// one too: a retry must get its original records, and a refused batch
	// would fail the other appends committed with it.
	found, err := s.lookup(ctx, subj, evs, !cached)
	if err != nil {
		return nil, 0, err
	}
	recs := make([]eventstore.Record, len(evs))
	var fresh []int // indexes of events to write
	for i, ev := range evs {
		idx, ok := found.ids[ev.ID]
		if !ok {
			if found.head != nil && found.headID == ev.ID {
				// Stored by a single-event append that stopped before
				// writing its id index.
				if recs[i], err = s.adopt(ctx, stream, found.head.seq, ev.ID, sums[i]); err != nil {
					return nil, 0, err
				}
				continue
			}
			fresh = append(fresh, i)
			continue
		}
		var e idEntry
		if err := json.Unmarshal(idx.data, &e); err != nil {
			return nil, 0, fmt.Errorf("id index of %s: %w", ev.ID, err)
		}
		if e.Stream != stream || e.Sum != sums[i] {
			return nil, 0, fmt.Errorf("event %s is recorded in stream %q revision %d: %w", ev.ID, e.Stream, e.Revision, eventstore.ErrDuplicateID)
		}
		if recs[i], err = s.original(ctx, subj, ev.ID, idx.seq, e.Seq); err != nil {
			return nil, 0, err
		}
	}
	if len(fresh) == 0 {
		// A retry: its first attempt may have gone in without recording
		// the head.
		if err := s.ensureRecorded(ctx, stream, recs, cur, cached); err != nil {
			return nil, 0, err
		}
		return recs, 0, nil
	}
	at := &cur
	if !cached {
		if at = found.head; at != nil {
			s.heads.put(stream, *at)
		}
	}
	if !holds(expected, at) {
		return nil, 0, fmt.Errorf("at %s, expected %s: %w", describe(at), describeExpected(expected), eventstore.ErrConflict)
	}

	var prev *eventstore.Head
	var prevSeq uint64
	if at != nil {
		prev = &eventstore.Head{Stream: stream, Revision: at.revision, Hash: at.hash, Position: at.seq}
		prevSeq = at.seq
	}
	if len(fresh) == 1 && s.single {
		i := fresh[0]
		sealed, err := eventstore.Seal(prev, stream, evs[i:i+1])
		if err != nil {
			return nil, 0, err
		}
		rec, n, err := s.appendSingle(ctx, stream, sealed[0], sums[i], at)
		if err != nil {
			return nil, 0, err
		}
		recs[i] = rec
		if n == 0 {
			if err := s.ensureRecorded(ctx, stream, recs, head{}, false); err != nil {
				return nil, 0, err
			}
		}
		return recs, n, nil
	}
	toSeal := make([]eventstore.Event, len(fresh))
	for k, i := range fresh {
		toSeal[k] = evs[i]
	}
	sealed, err := eventstore.Seal(prev, stream, toSeal)
	if err != nil {
		return nil, 0, err
	}
	c := &commit{ctx: ctx, msgs: make([]*nats.Msg, 0, 2*len(sealed)), done: make(chan commitResult, 1)}
	for k, r := range sealed {
		m := eventMsg(subj, r)
		if k == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(prevSeq, 10))
		}
		body, err := json.Marshal(idEntry{Stream: stream, Revision: r.Revision, Sum: sums[fresh[k]]})
		if err != nil {
			return nil, 0, err
		}
		idx := nats.NewMsg(s.idSubject(r.ID))
		idx.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		idx.Data = body
		c.msgs = append(c.msgs, m, idx)
		c.bytes += len(r.Data) + len(body) + 512
	}
	firstSeq, err := s.commit(ctx, c)
	if err != nil {
		s.heads.drop(stream)
		return nil, 0, err
	}
	// An append's messages are contiguous: event, index, event, index…
	for k := range sealed {
		sealed[k].Position = firstSeq + 2*uint64(k)
	}
	s.heads.put(stream, headOf(sealed[len(sealed)-1]))
	if err := s.finish(ctx, stream, sealed, at); err != nil {
		return nil, 0, err
	}
	for k, i := range fresh {
		recs[i] = sealed[k]
	}
	return recs, len(sealed), nil
}

func headOf(r eventstore.Record) head {
	return head{revision: r.Revision, hash: r.Hash, seq: r.Position}
}

// finish records the head of just-written records (at was the head before
// them) and stamps them with RecordedAt. The two are independent round
// trips, so they overlap.
func (s *Store) finish(ctx context.Context, stream string, sealed []eventstore.Record, at *head) error {
	now := headOf(sealed[len(sealed)-1])
	var kvSeq uint64
	if at != nil {
		kvSeq = at.kvSeq
	}
	var headErr error
	var wg sync.WaitGroup
	wg.Go(func() { now.kvSeq, headErr = s.recordHead(ctx, stream, now, kvSeq) })
	stampErr := s.stamp(ctx, s.evSubject(stream), sealed)
	wg.Wait()
	if err := cmp.Or(headErr, stampErr); err != nil {
		return fmt.Errorf("appended at %d but %w", sealed[0].Position, err)
	}
	s.heads.put(stream, now)
	return nil
}

// appendSingle writes one sealed record (at: the head it continues) as a
// plain publish, then its id-index entry. It returns the record and 1, or
// the record already stored under its id and 0.
//
// Ids stay unique without the batch: the event message carries the id as
// Nats-Msg-Id, so within the stream's duplicate window the server refuses
// a second message with it on any subject and names the first one; past
// the window the id index, written before Append returns, finds it.
func (s *Store) appendSingle(ctx context.Context, stream string, r eventstore.Record, sum string, at *head) (eventstore.Record, int, error) {
	var prevSeq uint64
	if at != nil {
		prevSeq = at.seq
	}
	ack, err := s.publishEvent(ctx, r, prevSeq)
	if err != nil {
		s.heads.drop(stream)
		return eventstore.Record{}, 0, err
	}
	if ack.Duplicate {
		// Another append of this id, or an earlier attempt of this one,
		// went in first; the cached head did not see it.
		s.heads.drop(stream)
		orig, err := s.adopt(ctx, stream, ack.Sequence, r.ID, sum)
		return orig, 0, err
	}
	r.Position = ack.Sequence
	s.heads.put(stream, headOf(r))
	// The index entry, the head and the read-back overlap; all must be
	// done before Append returns.
	var idxErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, idxErr = s.writeIndex(ctx, r, sum) })
	recs := []eventstore.Record{r}
	err = s.finish(ctx, stream, recs, at)
	wg.Wait()
	if idxErr != nil {
		// A retry finds the event by its id (duplicate window) or as
		// the stream's head, and writes the entry.
		return eventstore.Record{}, 0, fmt.Errorf("appended at %d but %w", r.Position, idxErr)
	}
	if err != nil {
		return eventstore.Record{}, 0, err
	}
	return recs[0], 1, nil
}

// publishEvent publishes r's message alone, expecting the stream's last
// message at prevSeq (0: none) so that the stream cannot fork.
func (s *Store) publishEvent(ctx context.Context, r eventstore.Record, prevSeq uint64) (*jetstream.PubAck, error) {
	m := eventMsg(s.evSubject(r.Stream), r)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(prevSeq, 10))
	pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	ack, err := s.js.PublishMsg(pctx, m)
	if err != nil {
		return nil, classify(ctx, err)
	}
	return ack, nil
}

// adopt returns the stored event at seq that carries id, when it is the
// same event in stream, and makes sure it is indexed; ErrDuplicateID when
// it is another stream's or has other content.
func (s *Store) adopt(ctx context.Context, stream string, seq uint64, id, sum string) (eventstore.Record, error) {
	m, ok, err := s.directOne(ctx, directReq{Seq: seq})
	if err != nil {
		return eventstore.Record{}, err
	}
	if !ok {
		// A replica behind the leader: look again.
		return eventstore.Record{}, fmt.Errorf("%w: event %s at %d not found", errRetry, id, seq)
	}
	rec, err := s.record(m)
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("event %s at %d: %w", id, seq, err)
	}
	if rec.ID != id {
		return eventstore.Record{}, fmt.Errorf("message %d is not event %s", seq, id)
	}
	if rec.Stream != stream || contentSum(eventstore.Event{ID: rec.ID, Type: rec.Type, Data: rec.Data}) != sum {
		return eventstore.Record{}, fmt.Errorf("event %s is recorded in stream %q revision %d: %w", id, rec.Stream, rec.Revision, eventstore.ErrDuplicateID)
	}
	if _, err := s.writeIndex(ctx, rec, sum); err != nil {
		return eventstore.Record{}, err
	}
	return rec, nil
}

// indexOutcome is what writeIndex found.
type indexOutcome int

const (
	indexWritten  indexOutcome = iota // the entry is new
	indexPresent                      // the same entry was there
	indexConflict                     // an entry for another record was there
)

// writeIndex writes the id-index entry of a stored record, expecting the
// id's subject to be empty. An entry there already for the same record is
// fine. One for another record means the id was recorded twice, which the
// duplicate window and the id lookup exist to prevent: it is logged and
// counted, but not an error, as the record is stored and cannot be taken
// back (Append returns it as written).
func (s *Store) writeIndex(ctx context.Context, rec eventstore.Record, sum string) (indexOutcome, error) {
	body, err := json.Marshal(idEntry{Stream: rec.Stream, Revision: rec.Revision, Sum: sum, Seq: rec.Position})
	if err != nil {
		return 0, err
	}
	subj := s.idSubject(rec.ID)
	for attempt := 1; ; attempt++ {
		m := nats.NewMsg(subj)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		m.Data = body
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := s.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return indexWritten, nil
		}
		if !isWrongLastSeq(err) {
			return 0, fmt.Errorf("index event %s: %w", rec.ID, backendErr(ctx, err))
		}
		got, ok, err := s.leaderGet(ctx, s.cfg.Stream, directReq{LastFor: subj})
		if err != nil {
			return 0, fmt.Errorf("index event %s: %w", rec.ID, err)
		}
		if ok {
			var e idEntry
			if err := json.Unmarshal(got.data, &e); err != nil {
				return 0, fmt.Errorf("id index of %s: %w", rec.ID, err)
			}
			if e.sameEvent(rec, sum) {
				return indexPresent, nil
			}
			s.indexConflicts.Add(1)
			s.log.Error("event id recorded twice: the id index names another record",
				"id", rec.ID, "stream", rec.Stream, "revision", rec.Revision, "position", rec.Position,
				"indexed_stream", e.Stream, "indexed_revision", e.Revision, "indexed_position", e.Seq)
			return indexConflict, nil
		}
		// Still being written (a clustered write in flight): look again.
		if attempt == maxAttempts {
			return 0, fmt.Errorf("index event %s: still contended after %d attempts: %w", rec.ID, attempt, eventstore.ErrUnavailable)
		}
		if err := eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)); err != nil {
			return 0, fmt.Errorf("index event %s: %w", rec.ID, backendErr(ctx, err))
		}
	}
}

// ensureRecorded records the head of the newest of recs unless the cache
// knows a head at least as new to be recorded.
func (s *Store) ensureRecorded(ctx context.Context, stream string, recs []eventstore.Record, cur head, cached bool) error {
	newest := recs[0]
	for _, r := range recs[1:] {
		if r.Revision > newest.Revision {
			newest = r
		}
	}
	if cached && cur.kvSeq != 0 && cur.revision >= newest.Revision {
		return nil
	}
	_, err := s.recordHead(ctx, stream, head{revision: newest.Revision, hash: newest.Hash, seq: newest.Position}, 0)
	return err
}

func holds(expected eventstore.ExpectedRevision, at *head) bool {
	switch expected {
	case eventstore.Any:
		return true
	case eventstore.NoStream:
		return at == nil
	}
	return at != nil && at.revision == uint64(expected)
}

func describe(at *head) string {
	if at == nil {
		return "no stream"
	}
	return "revision " + strconv.FormatUint(at.revision, 10)
}

func describeExpected(e eventstore.ExpectedRevision) string {
	if e == eventstore.NoStream {
		return "no stream"
	}
	return "revision " + strconv.FormatInt(int64(e), 10)
}

// classify sorts a failed commit into errRetry (lost a race, server busy),
// ErrTooLarge and the rest.
func classify(ctx context.Context, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case codeWrongLastSeq, codeWrongLastSeqConst, codeDupMsgInBatch, codeDupMsgInProcess,
			codeBatchIncomplete, codeTooManyBatches:
			return fmt.Errorf("%w: %w", errRetry, err)
		case codeMsgTooLarge, codeBatchTooLarge:
			return fmt.Errorf("%w: %w", eventstore.ErrTooLarge, err)
		}
	}
	return backendErr(ctx, err)
}

type lookupResult struct {
	head   *head             // nil: the stream has no records
	headID string            // event id of the head
	ids    map[string]rawMsg // id → its id-index message, for recorded ids
}

// lookup fetches the id-index entries of evs, and the stream's head when
// withHead, in one multi-subject direct get.
func (s *Store) lookup(ctx context.Context, subj string, evs []eventstore.Event, withHead bool) (lookupResult, error) {
	subjects := make([]string, 0, len(evs)+1)
	if withHead {
		subjects = append(subjects, subj)
	}
	idOf := make(map[string]string, len(evs))
	for _, ev := range evs {
		is := s.idSubject(ev.ID)
		idOf[is] = ev.ID
		subjects = append(subjects, is)
	}
	msgs, _, err := s.directBatch(ctx, directReq{MultiLast: subjects})
	if err != nil {
		return lookupResult{}, err
	}
	res := lookupResult{ids: make(map[string]rawMsg)}
	for _, m := range msgs {
		if m.subject == subj {
			rev, err := revisionOf(m)
			if err != nil {
				return lookupResult{}, err
			}
			res.head = &head{revision: rev, hash: m.header.Get(hdrHash), seq: m.seq}
			res.headID = m.header.Get(jetstream.MsgIDHeader)
			continue
		}
		if id, ok := idOf[m.subject]; ok {
			res.ids[id] = m
		}
	}
	return res, nil
}

// original reads the recorded event of an id-index message at idxSeq: at
// evSeq when the entry names it, else the message just before the entry
// in the same batch.
func (s *Store) original(ctx context.Context, subj, id string, idxSeq, evSeq uint64) (eventstore.Record, error) {
	if evSeq == 0 {
		evSeq = idxSeq - 1
	}
	m, ok, err := s.directOne(ctx, directReq{Seq: evSeq})
	if err != nil {
		return eventstore.Record{}, err
	}
	if !ok {
		// A replica that has the index message has the event before it;
		// another replica may not have either yet.
		return eventstore.Record{}, fmt.Errorf("%w: event of id index %s at %d not found", errRetry, id, idxSeq)
	}
	if m.subject != subj || m.header.Get(jetstream.MsgIDHeader) != id {
		return eventstore.Record{}, fmt.Errorf("id index of %s at %d does not name its event", id, idxSeq)
	}
	return s.record(m)
}

// stamp sets RecordedAt of just-written records from the stored messages,
// so that Append returns what Read will. A replica answering direct gets
// may lag the leader by a moment, hence the short retry.
func (s *Store) stamp(ctx context.Context, subj string, recs []eventstore.Record) error {
	var err error
	for attempt := 1; attempt <= stampAttempts; attempt++ {
		err = s.stampOnce(ctx, subj, recs)
		if err == nil || errors.Is(err, eventstore.ErrUnavailable) {
			break
		}
		if eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)) != nil {
			break
		}
	}
	if err != nil && !errors.Is(err, eventstore.ErrUnavailable) {
		err = fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	if err != nil {
		return fmt.Errorf("reading it back: %w", err)
	}
	return nil
}

func (s *Store) stampOnce(ctx context.Context, subj string, recs []eventstore.Record) error {
	for k := 0; k < len(recs); {
		msgs, _, err := s.directBatch(ctx, directReq{Seq: recs[k].Position, NextFor: subj, Batch: len(recs) - k, MaxBytes: readMaxBytes})
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			return fmt.Errorf("message %d not found", recs[k].Position)
		}
		for _, m := range msgs[:min(len(msgs), len(recs)-k)] {
			if m.seq != recs[k].Position || m.header.Get(jetstream.MsgIDHeader) != recs[k].ID {
				return fmt.Errorf("message %d is not event %s", recs[k].Position, recs[k].ID)
			}
			recs[k].RecordedAt = m.time
			k++
		}
	}
	return nil
}

// stampAttempts bounds the read-back (about a second of waiting).
const stampAttempts = 25

// unavailableBackoff is the wait before the n-th retry of an append that
// met an unavailable backend: 50ms doubling to 1s, with jitter.
func unavailableBackoff(n int) time.Duration {
	ceil := min(50*time.Millisecond<<min(n-1, 5), time.Second)
	return ceil/2 + time.Duration(rand.Int64N(int64(ceil/2)))
}
