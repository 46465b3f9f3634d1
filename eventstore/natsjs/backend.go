package natsjs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/council/activityhistory/eventstore"
)

// JetStream error codes a commit reacts to (nats-server errors.json).
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

// maxAttempts bounds retries of an id-index or head write.
const maxAttempts = 50

// backend is the Store as the engine sees it.
type backend struct{ s *Store }

func (b backend) Read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error) {
	return b.s.read(ctx, stream, from, limit)
}

func (b backend) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	return b.s.subscribe(ctx, after, h)
}

// find answers the engine's look-ups with one multi-subject direct get:
// the last message of each stream's subject asked for, and the id-index
// entry of each id. The event an entry names is read only when it is in
// the asked stream (a retry): for another stream the entry says enough.
func (b backend) Find(ctx context.Context, qs []eventstore.Query) ([]eventstore.Found, error) {
	s := b.s
	if err := s.admit(ctx); err != nil {
		return nil, err
	}
	var subjects []string
	for _, q := range qs {
		if q.Tail {
			subjects = append(subjects, s.evSubject(q.Stream))
		}
		for _, id := range q.IDs {
			subjects = append(subjects, s.idSubject(id))
		}
	}
	bySubject, err := s.lastBySubject(ctx, subjects)
	if err != nil {
		return nil, err
	}
	out := make([]eventstore.Found, len(qs))
	for i, q := range qs {
		f := eventstore.Found{Recorded: map[string]eventstore.Record{}}
		var mine []eventstore.Record // recorded in this stream: a retry
		if m, ok := bySubject[s.evSubject(q.Stream)]; ok && q.Tail {
			t, err := s.record(m)
			if err != nil {
				return nil, &eventstore.ChainError{Stream: q.Stream, Reason: "last record: " + err.Error()}
			}
			f.Tail = &t
		}
		for _, id := range q.IDs {
			m, ok := bySubject[s.idSubject(id)]
			if !ok {
				continue
			}
			var e idEntry
			if err := json.Unmarshal(m.data, &e); err != nil {
				return nil, fmt.Errorf("id index of %s: %w", id, err)
			}
			if e.Stream != q.Stream {
				f.Recorded[id] = eventstore.Record{ID: id, Stream: e.Stream, Revision: e.Revision}
				continue
			}
			// No seq: written in an atomic batch, right after its event.
			rec, err := s.eventAt(ctx, cmp.Or(e.Seq, m.seq-1), id, &e)
			if err != nil {
				return nil, err
			}
			f.Recorded[id] = rec
			mine = append(mine, rec)
		}
		unindexed, err := s.unindexedTail(ctx, q, f)
		if err != nil {
			return nil, err
		}
		if mine = append(mine, unindexed...); len(mine) > 0 {
			// A retry: its first attempt may have stopped before its head
			// was recorded.
			r := slices.MaxFunc(mine, func(a, b eventstore.Record) int { return cmp.Compare(a.Revision, b.Revision) })
			if err := s.recordHead(ctx, eventstore.Head{Stream: r.Stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position}); err != nil {
				return nil, err
			}
		}
		out[i] = f
	}
	return out, nil
}

// unindexedTail adds to f, indexes and returns the asked ids that are not
// indexed yet among the newest records of the stream: an append whose
// events are the stream's newest, retried before its id-index entries were
// written.
func (s *Store) unindexedTail(ctx context.Context, q eventstore.Query, f eventstore.Found) ([]eventstore.Record, error) {
	if f.Tail == nil || !slices.Contains(q.IDs, f.Tail.ID) {
		return nil, nil
	}
	n := min(uint64(len(q.IDs)), f.Tail.Revision+1)
	tail, err := s.read(ctx, q.Stream, f.Tail.Revision+1-n, int(n))
	if err != nil {
		return nil, err
	}
	var out []eventstore.Record
	for _, r := range tail {
		if _, indexed := f.Recorded[r.ID]; indexed || !slices.Contains(q.IDs, r.ID) {
			continue
		}
		if _, err := s.writeIndex(ctx, r); err != nil {
			return nil, err
		}
		f.Recorded[r.ID] = r
		out = append(out, r)
	}
	return out, nil
}

// eventAt reads event id, stored at seq, or its skeleton when its payload
// was erased; at is where the id index says it was recorded, if known.
func (s *Store) eventAt(ctx context.Context, seq uint64, id string, at *idEntry) (eventstore.Record, error) {
	m, ok, err := s.get(ctx, s.cfg.Stream, directReq{Seq: seq}, false)
	if err != nil {
		return eventstore.Record{}, err
	}
	if !ok {
		if at != nil {
			if sk, err := s.erased(ctx, at.Stream, at.Revision, at.Revision+1); err == nil && sk[0].ID == id {
				return sk[0], nil
			}
		}
		// A replica behind the leader, or erased and not indexed yet: the
		// engine looks again.
		return eventstore.Record{}, fmt.Errorf("%w: event %s at %d not found", eventstore.ErrConflict, id, seq)
	}
	rec, err := s.record(m)
	if err != nil || rec.ID != id {
		return eventstore.Record{}, fmt.Errorf("message %d is not event %s", seq, id)
	}
	return rec, nil
}

// commit writes a batch of one record as a plain publish and the longer
// ones together as one atomic batch, all at once: the publishes pipelined,
// one wait for their acks. Each event message carries its id as
// Nats-Msg-Id and the first of each stream expects its stream's last
// sequence, so a stream cannot fork and, within the duplicate window, an
// id cannot be stored twice. Id-index entries and heads are the
// indexer's (index.go).
func (b backend) Commit(ctx context.Context, batches []*eventstore.Batch) []error {
	s := b.s
	singles := make([]*nats.Msg, len(batches))
	var multi []*eventstore.Batch
	var multiAt []int
	for i, b := range batches {
		if len(b.Records) > 1 {
			multi, multiAt = append(multi, b), append(multiAt, i)
		} else {
			singles[i] = s.batchMsgs(b)[0]
		}
	}
	var multiErrs []error
	var wg sync.WaitGroup
	wg.Go(func() { multiErrs = s.commitBatches(ctx, multi) })
	acks, errs := s.publishAll(ctx, singles)
	for i, ack := range acks {
		if ack != nil {
			errs[i] = s.acked(ctx, batches[i], ack)
		} else if errs[i] != nil {
			errs[i] = classify(ctx, errs[i])
		}
	}
	wg.Wait()
	for k, err := range multiErrs {
		errs[multiAt[k]] = err
	}
	var last uint64
	for i, b := range batches {
		if errs[i] == nil {
			last = max(last, b.Records[len(b.Records)-1].Position)
		}
	}
	if err := s.syncEvents(last); err != nil {
		for i := range errs {
			errs[i] = cmp.Or(errs[i], err)
		}
	}
	s.committed(last)
	return errs
}

// publishAll publishes msgs pipelined, skipping nil ones, and waits for
// their acks: an ack or an error for each.
func (s *Store) publishAll(ctx context.Context, msgs []*nats.Msg) ([]*jetstream.PubAck, []error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	acks := make([]*jetstream.PubAck, len(msgs))
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		if m != nil {
			futures[i], errs[i] = s.js.PublishMsgAsync(m)
		}
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case acks[i] = <-f.Ok():
		case errs[i] = <-f.Err():
		case <-ctx.Done():
			errs[i] = ctx.Err()
		}
	}
	return acks, errs
}

// batchMsgs are the event messages of b, the first expecting its stream's
// last sequence.
func (s *Store) batchMsgs(b *eventstore.Batch) []*nats.Msg {
	msgs := make([]*nats.Msg, len(b.Records))
	for k, r := range b.Records {
		msgs[k] = eventMsg(s.evSubject(b.Stream), r)
	}
	var prev uint64
	if b.Prev != nil {
		prev = b.Prev.Position
	}
	msgs[0].Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(prev, 10))
	return msgs
}

// syncEvents fsyncs, with SyncAlways on an embedded server and when
// something was written, the stream's message blocks written since the
// last call: the server has written each
// message to the OS before its ack, and one fsync per group costs much
// less than the server's one per message.
func (s *Store) syncEvents(wrote uint64) error {
	if !s.cfg.SyncAlways || s.ns == nil || wrote == 0 {
		return nil
	}
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	dir := filepath.Join(s.ns.JetStreamConfig().StoreDir, server.DEFAULT_GLOBAL_ACCOUNT, "streams", s.cfg.Stream, "msgs")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	newest := s.synced
	for _, e := range ents {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".blk"))
		if err != nil || n < s.synced || !strings.HasSuffix(e.Name(), ".blk") {
			continue
		}
		if err := fsync(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
		newest = max(newest, n)
	}
	if newest > s.synced { // a new block's name must last too
		if err := fsync(dir); err != nil {
			return err
		}
	}
	s.synced = newest
	return nil
}

func fsync(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("fsync: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", name, err)
	}
	return nil
}

// acked sets the position of a published record, or finds the record its
// id names when the server took it for a duplicate.
func (s *Store) acked(ctx context.Context, b *eventstore.Batch, ack *jetstream.PubAck) error {
	r := &b.Records[0]
	if !ack.Duplicate {
		r.Position = ack.Sequence
		return nil
	}
	orig, err := s.eventAt(ctx, ack.Sequence, r.ID, nil)
	if err != nil {
		return err
	}
	return &eventstore.TakenError{ID: r.ID, Record: &orig}
}

// commitBatches writes batches as one atomic batch (the server stages
// each atomic batch of a single-replica stream on disk, so one costs about
// what many do). When it is refused, each batch is committed on its own so
// that each gets its own answer.
func (s *Store) commitBatches(ctx context.Context, batches []*eventstore.Batch) []error {
	errs := make([]error, len(batches))
	if len(batches) == 0 {
		return errs
	}
	var msgs []*nats.Msg
	for _, b := range batches {
		msgs = append(msgs, s.batchMsgs(b)...)
	}
	// No ack on the first message: the commit's answer covers the batch.
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs, jetstreamext.BatchFlowControl{AckFirst: false})
	switch {
	case err == nil:
		seq := ack.Sequence - ack.BatchSize + 1
		for _, b := range batches {
			for k := range b.Records {
				b.Records[k].Position = seq
				seq++
			}
		}
	case len(batches) > 1 && apiCode(err) != 0:
		for k := range batches {
			errs[k] = s.commitBatches(ctx, batches[k:k+1])[0]
		}
	case apiCode(err) == codeDupMsgInBatch:
		errs[0] = &eventstore.TakenError{}
	default:
		for k := range errs {
			errs[k] = classify(ctx, err)
		}
	}
	return errs
}

// indexMsg is the id-index message of a stored record, expecting the id's
// subject to be empty.
func (s *Store) indexMsg(r eventstore.Record) *nats.Msg {
	m := nats.NewMsg(s.idSubject(r.ID))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	m.Data, _ = json.Marshal(idEntry{Stream: r.Stream, Revision: r.Revision, Seq: r.Position})
	return m
}

// writeIndex writes the id-index entry of a stored record, expecting the
// id's subject to be empty, and reports whether it wrote it. An entry
// there already for the same record is fine. One for another record means the id was recorded twice, which the
// duplicate window and the id lookup exist to prevent: it is logged and
// counted, but not an error, as the record is stored and cannot be taken
// back.
func (s *Store) writeIndex(ctx context.Context, rec eventstore.Record) (bool, error) {
	subj := s.idSubject(rec.ID)
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := s.js.PublishMsg(pctx, s.indexMsg(rec))
		cancel()
		if err == nil {
			return true, nil
		}
		if !isWrongLastSeq(err) {
			return false, fmt.Errorf("index event %s: %w", rec.ID, backendErr(ctx, err))
		}
		got, ok, err := s.get(ctx, s.cfg.Stream, directReq{LastFor: subj}, true)
		if err != nil {
			return false, fmt.Errorf("index event %s: %w", rec.ID, err)
		}
		if ok {
			var e idEntry
			if err := json.Unmarshal(got.data, &e); err != nil {
				return false, fmt.Errorf("id index of %s: %w", rec.ID, err)
			}
			// A stream has one record per revision, and only records whose
			// hash matches are indexed.
			if e.Stream == rec.Stream && e.Revision == rec.Revision {
				return false, nil
			}
			s.indexConflicts.Add(1)
			s.log.Error("event id recorded twice: the id index names another record",
				"id", rec.ID, "stream", rec.Stream, "revision", rec.Revision, "position", rec.Position,
				"indexed_stream", e.Stream, "indexed_revision", e.Revision, "indexed_position", e.Seq)
			return false, nil
		}
		// Still being written (a clustered write in flight): look again.
		if attempt == maxAttempts {
			return false, fmt.Errorf("index event %s: still contended after %d attempts: %w", rec.ID, attempt, eventstore.ErrUnavailable)
		}
		if err := eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)); err != nil {
			return false, fmt.Errorf("index event %s: %w", rec.ID, backendErr(ctx, err))
		}
	}
}

// classify sorts a failed commit into ErrConflict (lost a race, server
// busy: the engine looks again), ErrTooLarge and the rest.
func classify(ctx context.Context, err error) error {
	switch apiCode(err) {
	case codeWrongLastSeq, codeWrongLastSeqConst, codeDupMsgInProcess, codeBatchIncomplete, codeTooManyBatches:
		return fmt.Errorf("%w: %w", eventstore.ErrConflict, err)
	case codeMsgTooLarge, codeBatchTooLarge:
		return fmt.Errorf("%w: %w", eventstore.ErrTooLarge, err)
	}
	return backendErr(ctx, err)
}

// apiCode is the JetStream error code err carries, 0 when none.
func apiCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}
