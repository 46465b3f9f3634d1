package natsjs

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/eventstore"
)

// The indexer. An append stores its events and nothing else; every store
// runs an indexer that follows the event subjects from a checkpoint and
// writes, pipelined, what is derived from them: the id-index entry of each
// event and the recorded head of each stream (one write per stream per
// batch). It indexes only events whose content matches their hash, so a
// forged message cannot claim an id, and it never moves a head back.
// Several processes may run it at once: entries expect an empty subject
// and heads expect the key's last write.
//
// Ids stay unique: an event is guarded by the server's duplicate window
// (its id is Nats-Msg-Id) until its entry is written, and appends wait
// while this store's own appends are unindexed for more than half the
// window, or while events stored before the store opened are (admit).
const (
	// indexKey holds the checkpoint in the heads bucket. Head keys are
	// base64url, which has no '='.
	indexKey = "=index-repair"
	// indexBatch bounds the events indexed at once.
	indexBatch = 512
	// indexLinger is how long a batch waits for more events.
	indexLinger = 5 * time.Millisecond
	// indexCheckpointEvery is how often the checkpoint is saved (tests
	// may set Config.repairEvery).
	indexCheckpointEvery = 5 * time.Second
)

// indexState is how far this store's indexer got, and the appends this
// store committed that it has not reached yet.
type indexState struct {
	mu      sync.Mutex
	done    uint64    // events up to this position are indexed
	pending []lagMark // committed, not indexed; in position order
	wake    chan struct{}
}

type lagMark struct {
	pos uint64
	at  time.Time
}

// Indexed counts the id-index entries this store's indexer wrote.
func (s *Store) Indexed() uint64 { return s.indexed.Load() }

// IndexConflicts counts the events this store found indexed to another
// record: an id recorded twice. Each is logged at error level.
func (s *Store) IndexConflicts() uint64 { return s.indexConflicts.Load() }

// committed notes an append this store committed, up to pos.
func (s *Store) committed(pos uint64) {
	if s.cfg.noRepair {
		return
	}
	s.ix.mu.Lock()
	defer s.ix.mu.Unlock()
	if pos > s.ix.done {
		s.ix.pending = append(s.ix.pending, lagMark{pos: pos, at: time.Now()})
	}
}

// progress records that events up to pos are indexed.
func (s *Store) progress(pos uint64) {
	s.ix.mu.Lock()
	defer s.ix.mu.Unlock()
	s.ix.done = max(s.ix.done, pos)
	n := 0
	for n < len(s.ix.pending) && s.ix.pending[n].pos <= s.ix.done {
		n++
	}
	s.ix.pending = s.ix.pending[n:]
	close(s.ix.wake)
	s.ix.wake = make(chan struct{})
}

// admit waits while the indexer is too far behind for the duplicate
// window to cover the events it has not indexed.
func (s *Store) admit(ctx context.Context) error {
	if s.cfg.noRepair {
		return nil
	}
	for {
		s.ix.mu.Lock()
		behind := len(s.ix.pending) > 0 && time.Since(s.ix.pending[0].at) > s.dupWindow()/2
		wake := s.ix.wake
		s.ix.mu.Unlock()
		if !behind {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: the id indexer is behind", eventstore.ErrUnavailable)
		}
	}
}

// waitIndexed waits until the indexer has passed every event stored
// before the call, so that recorded heads are up to date.
func (s *Store) waitIndexed(ctx context.Context) error {
	if s.cfg.noRepair {
		return nil
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	for {
		s.ix.mu.Lock()
		done, wake := s.ix.done >= last, s.ix.wake
		s.ix.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the indexer: %w", ctx.Err())
		}
	}
}

// indexLoop runs the indexer until Close, starting again after failures
// (an election, a reconnect).
func (s *Store) indexLoop(ctx context.Context) {
	defer s.workers.Done()
	for n := 1; ; n++ {
		err := s.runIndexer(ctx)
		if ctx.Err() != nil || s.closed() {
			return
		}
		s.log.Warn("id indexer stopped, restarting", "err", err)
		if eventstore.Sleep(ctx, eventstore.UnavailableBackoff(n)) != nil {
			return
		}
	}
}

// runIndexer indexes events from the checkpoint on until ctx ends or a
// request fails, saving the checkpoint now and then.
func (s *Store) runIndexer(ctx context.Context) error {
	done, err := s.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() {
		t := time.NewTicker(cmp.Or(s.cfg.repairEvery, indexCheckpointEvery))
		defer t.Stop()
		for saved := done; ; {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.ix.mu.Lock()
			now := s.ix.done
			s.ix.mu.Unlock()
			if now > saved && s.saveCheckpoint(ctx, now) == nil {
				saved = now
			}
		}
	})
	return s.follow(ctx, done, indexBatch, indexLinger, func(batch []rawMsg) error {
		if err := s.indexBatch(ctx, batch); err != nil {
			return err
		}
		s.progress(batch[len(batch)-1].seq)
		return nil
	})
}

// indexBatch writes the missing id-index entries of batch's events and
// the newest head of each stream in it, pipelined.
func (s *Store) indexBatch(ctx context.Context, batch []rawMsg) error {
	var recs []eventstore.Record
	var subjects []string
	heads := map[string]eventstore.Record{}
	for _, m := range batch {
		rec, err := s.record(m)
		if err != nil {
			continue // not an event of this package's; Verify reports it
		}
		if h, err := eventstore.RecordHash(rec); err != nil || h != rec.Hash {
			continue // forged or altered: must not claim its id; Verify reports it
		}
		recs = append(recs, rec)
		subjects = append(subjects, s.idSubject(rec.ID))
		if h, ok := heads[rec.Stream]; !ok || rec.Revision > h.Revision {
			heads[rec.Stream] = rec
		}
	}
	if len(recs) == 0 {
		return nil
	}
	// Entries another indexer (or an earlier run) wrote are skipped.
	found, _, err := s.directBatch(ctx, directReq{MultiLast: subjects})
	if err != nil {
		return fmt.Errorf("index: %w", err)
	}
	entries := make(map[string]rawMsg, len(found))
	for _, m := range found {
		entries[m.subject] = m
	}
	var writes []write
	for _, rec := range recs {
		if m, ok := entries[s.idSubject(rec.ID)]; ok {
			var e idEntry
			if json.Unmarshal(m.data, &e) == nil && e.Stream == rec.Stream && e.Revision == rec.Revision {
				continue
			}
			// Another record's, or a replica answering from behind:
			// writeIndex asks the leader before calling it a conflict.
		}
		writes = append(writes, s.publish(rec, false))
	}
	for _, rec := range heads {
		if kv, ok := s.kvs.Get(rec.Stream); !ok || rec.Revision > kv.revision {
			writes = append(writes, s.publish(rec, true))
		}
	}
	var errs []error
	for _, w := range writes {
		errs = append(errs, s.settleWrite(ctx, w))
	}
	return errors.Join(errs...)
}

// write is an id entry or head being published.
type write struct {
	rec  eventstore.Record
	head bool
	fut  jetstream.PubAckFuture
	err  error
}

func (s *Store) publish(rec eventstore.Record, isHead bool) write {
	w := write{rec: rec, head: isHead}
	var m *nats.Msg
	if isHead {
		kv, _ := s.kvs.Get(rec.Stream)
		m, w.err = s.headMsg(rec, kv.seq)
	} else {
		m, w.err = s.indexMsg(rec)
	}
	if w.err == nil {
		w.fut, w.err = s.js.PublishMsgAsync(m)
	}
	return w
}

// settleWrite waits for w's ack; when someone else wrote the subject it
// looks and decides (writeIndex, recordHead).
func (s *Store) settleWrite(ctx context.Context, w write) error {
	err := w.err
	if err == nil {
		select {
		case ack := <-w.fut.Ok():
			if w.head {
				s.kvs.Put(w.rec.Stream, kvSeq{ack.Sequence, w.rec.Revision})
			} else {
				s.indexed.Add(1)
			}
			return nil
		case err = <-w.fut.Err():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	switch {
	case !isWrongLastSeq(err):
		return fmt.Errorf("index %s: %w", w.rec.ID, backendErr(ctx, err))
	case w.head:
		seq, rev, err := s.recordHead(ctx, w.rec.Stream, head{revision: w.rec.Revision, hash: w.rec.Hash, seq: w.rec.Position}, 0)
		if err == nil {
			s.kvs.Put(w.rec.Stream, kvSeq{seq, rev})
		}
		return err
	}
	wrote, err := s.writeIndex(ctx, w.rec)
	if wrote {
		s.indexed.Add(1)
	}
	return err
}

// loadCheckpoint returns the last position the indexer has passed (0:
// none).
func (s *Store) loadCheckpoint(ctx context.Context) (uint64, error) {
	gctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	e, err := s.kv.Get(gctx, indexKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("index checkpoint: %w", backendErr(ctx, err))
	}
	done, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("index checkpoint %q: %w", e.Value(), err)
	}
	return done, nil
}

// saveCheckpoint stores done. Another indexer may store an earlier one
// after it: that costs a restart some work already done (entries written
// are skipped), nothing else.
func (s *Store) saveCheckpoint(ctx context.Context, done uint64) error {
	pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	if _, err := s.kv.Put(pctx, indexKey, []byte(strconv.FormatUint(done, 10))); err != nil {
		return fmt.Errorf("index checkpoint: %w", backendErr(ctx, err))
	}
	return nil
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == codeWrongLastSeq || apiErr.ErrorCode == codeWrongLastSeqConst)
}

// RegisterMetrics exposes the indexer's counters: conflicts mean an id was
// recorded for two events and need an operator.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "activityhistory_eventstore_indexed_total",
			Help: "Event id index entries written by this process's indexer.",
		}, func() float64 { return float64(s.Indexed()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "activityhistory_eventstore_index_conflicts_total",
			Help: "Event ids found recorded for two different events.",
		}, func() float64 { return float64(s.IndexConflicts()) }),
	)
}
