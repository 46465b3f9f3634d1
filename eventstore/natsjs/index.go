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
// writes the id-index entry of each event at once, and the recorded head of
// each stream (key-value bucket <Stream>_HEADS, key = the encoded stream
// name) at most once a second and before Head, Heads and Verify answer. A
// stream that ends before its recorded head lost records; a stream ahead of
// it is accepted (those records are covered by the chain alone). Only
// events whose content matches their hash are indexed, so a forged message
// claims no id; a head never moves back; the checkpoint never passes a head
// not recorded yet. Several processes may run it at once: entries expect an
// empty subject and heads expect the key's last write.
//
// Ids stay unique: until its entry is written an event is guarded by the
// server's duplicate window (its id is Nats-Msg-Id), and appends wait while
// this store's own appends are unindexed for more than half the window, or
// while events stored before the store opened are (admit).
const (
	// indexKey holds the checkpoint in the heads bucket. Head keys are
	// base64url, which has no '='.
	indexKey = "=index-repair"
	// indexBatch bounds the events indexed at once.
	indexBatch = 512
	// indexLinger is how long a batch waits for more events.
	indexLinger = 5 * time.Millisecond
	// indexFlushEvery is how often heads and the checkpoint are saved
	// (tests may set Config.repairEvery).
	indexFlushEvery = time.Second
	// headsSuffix names the bucket after the stream.
	headsSuffix = "_HEADS"
)

// indexState is how far this store's indexer got, the appends this store
// committed that it has not reached yet, and the heads it has not
// recorded yet.
type indexState struct {
	mu        sync.Mutex
	done      uint64    // events up to this position are indexed
	pending   []lagMark // committed, not indexed; in position order
	wake      chan struct{}
	heads     map[string]eventstore.Head // newest seen, not recorded
	contended bool                       // entries were found written: look before writing
	flushing  sync.Mutex
}

type lagMark struct {
	pos uint64
	at  time.Time
}

// kvSeq is a stream's last head write, remembered so that the next one
// expects it without reading the key first.
type kvSeq struct{ seq, revision uint64 }

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

// progress records that events up to pos are indexed and heads newer.
func (s *Store) progress(pos uint64, heads []eventstore.Head) {
	s.ix.mu.Lock()
	defer s.ix.mu.Unlock()
	for _, h := range heads {
		if old, ok := s.ix.heads[h.Stream]; !ok || h.Revision > old.Revision {
			s.ix.heads[h.Stream] = h
		}
	}
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
	return s.waitIndexer(ctx, func() bool {
		return len(s.ix.pending) == 0 || time.Since(s.ix.pending[0].at) <= s.dupWindow()/2
	}, "the id indexer is behind")
}

// waitIndexed waits until the indexer has passed every event stored
// before the call and the heads it saw are recorded.
func (s *Store) waitIndexed(ctx context.Context) error {
	if s.cfg.noRepair {
		return nil
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return err
	}
	if err := s.waitIndexer(ctx, func() bool { return s.ix.done >= last }, "waiting for the indexer"); err != nil {
		return err
	}
	return s.flushHeads(ctx)
}

// waitIndexer waits until ready holds (called under the lock).
func (s *Store) waitIndexer(ctx context.Context, ready func() bool, what string) error {
	for !s.cfg.noRepair {
		s.ix.mu.Lock()
		ok, wake := ready(), s.ix.wake
		s.ix.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s: %w", eventstore.ErrUnavailable, what, ctx.Err())
		}
	}
	return nil
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
// request fails; now and then it records the heads and then saves the
// checkpoint.
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
		t := time.NewTicker(cmp.Or(s.cfg.repairEvery, indexFlushEvery))
		defer t.Stop()
		for saved := done; ; {
			select {
			case <-ctx.Done():
				return // heads not recorded yet are after the checkpoint
			case <-t.C:
			}
			s.ix.mu.Lock()
			now := s.ix.done
			s.ix.mu.Unlock()
			// Entries and heads before the checkpoint are on disk first.
			if now > saved && s.flushHeads(ctx) == nil && s.syncEvents(now) == nil && s.saveCheckpoint(ctx, now) == nil {
				saved = now
			}
		}
	})
	return s.follow(ctx, done, indexBatch, indexLinger, func(batch []rawMsg) error {
		heads, err := s.indexBatch(ctx, batch)
		if err != nil {
			return err
		}
		s.progress(batch[len(batch)-1].seq, heads)
		return nil
	})
}

// indexBatch writes the id-index entries of batch's events, pipelined, and
// returns the newest head of each stream in it. While other indexers
// write entries too, it first looks which are written.
func (s *Store) indexBatch(ctx context.Context, batch []rawMsg) ([]eventstore.Head, error) {
	var recs []eventstore.Record
	var heads []eventstore.Head
	for _, m := range batch {
		rec, err := s.record(m)
		if err != nil {
			continue // not an event of this package's; Verify reports it
		}
		if h, err := eventstore.RecordHash(rec); err != nil || h != rec.Hash {
			continue // forged or altered: must not claim its id; Verify reports it
		}
		recs = append(recs, rec)
		heads = append(heads, eventstore.Head{Stream: rec.Stream, Revision: rec.Revision, Hash: rec.Hash, Position: rec.Position})
	}
	s.ix.mu.Lock()
	look := s.ix.contended
	s.ix.mu.Unlock()
	written := map[string]idEntry{}
	if look && len(recs) > 0 {
		subjects := make([]string, len(recs))
		for i, rec := range recs {
			subjects[i] = s.idSubject(rec.ID)
		}
		found, _, err := s.direct(ctx, s.cfg.Stream, directReq{MultiLast: subjects})
		if err != nil {
			return nil, fmt.Errorf("index: %w", err)
		}
		for _, m := range found {
			var e idEntry
			if json.Unmarshal(m.data, &e) == nil {
				written[m.subject] = e
			}
		}
	}
	msgs := make([]*nats.Msg, len(recs))
	for i, rec := range recs {
		// Another record's entry, or a replica answering from behind:
		// writeIndex asks the leader before calling it a conflict.
		if e, ok := written[s.idSubject(rec.ID)]; !ok || e.Stream != rec.Stream || e.Revision != rec.Revision {
			msgs[i] = s.indexMsg(rec)
		}
	}
	acks, errs := s.publishAll(ctx, msgs)
	contended := len(written) > 0
	for i, rec := range recs {
		if acks[i] != nil {
			s.indexed.Add(1)
		} else if isWrongLastSeq(errs[i]) {
			contended = true
			var wrote bool
			if wrote, errs[i] = s.writeIndex(ctx, rec); wrote {
				s.indexed.Add(1)
			}
		}
	}
	s.ix.mu.Lock()
	s.ix.contended = contended
	s.ix.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("index: %w", backendErr(ctx, err))
	}
	return heads, nil
}

// flushHeads records the heads the indexer saw, pipelined; a head another
// process wrote first is settled by recordHead. Heads not recorded stay
// for the next flush.
func (s *Store) flushHeads(ctx context.Context) error {
	s.ix.flushing.Lock()
	defer s.ix.flushing.Unlock()
	s.ix.mu.Lock()
	heads := s.ix.heads
	s.ix.heads = map[string]eventstore.Head{}
	s.ix.mu.Unlock()
	var todo []eventstore.Head
	var msgs []*nats.Msg
	for _, h := range heads {
		if kv, ok := s.kvs.Get(h.Stream); !ok || kv.revision < h.Revision {
			todo, msgs = append(todo, h), append(msgs, s.headMsg(h, kv.seq))
		}
	}
	acks, errs := s.publishAll(ctx, msgs)
	var failed []eventstore.Head
	var last error
	for i, h := range todo {
		if acks[i] != nil {
			s.kvs.Put(h.Stream, kvSeq{acks[i].Sequence, h.Revision})
			continue
		}
		err := errs[i]
		if isWrongLastSeq(err) {
			err = s.recordHead(ctx, h)
		}
		if err != nil {
			failed, last = append(failed, h), err
		}
	}
	if len(failed) == 0 {
		return nil
	}
	s.progress(0, failed)
	return fmt.Errorf("record heads: %d not recorded: %w", len(failed), backendErr(ctx, last))
}

// recordHead writes h as the recorded head of its stream unless a head at
// the same or a later revision is recorded already, looking at the key
// first.
func (s *Store) recordHead(ctx context.Context, h eventstore.Head) error {
	for attempt := 1; ; attempt++ {
		rec, seq, err := s.loadHead(ctx, h.Stream, true)
		if err != nil && !errors.Is(err, errHeadDeleted) {
			return err
		}
		if rec != nil && rec.Revision >= h.Revision {
			s.kvs.Put(h.Stream, kvSeq{seq, rec.Revision})
			return nil
		}
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := s.js.PublishMsg(pctx, s.headMsg(h, seq))
		cancel()
		switch {
		case err == nil:
			s.kvs.Put(h.Stream, kvSeq{ack.Sequence, h.Revision})
			return nil
		case !isWrongLastSeq(err):
			return fmt.Errorf("record head: %w", backendErr(ctx, err))
		case attempt == maxAttempts:
			return fmt.Errorf("record head: still contended after %d attempts: %w", attempt, eventstore.ErrUnavailable)
		}
		// Another process wrote the key: look again.
		if err := eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)); err != nil {
			return fmt.Errorf("record head: %w", backendErr(ctx, err))
		}
	}
}

// headMsg is the write of h as its stream's recorded head, expecting the
// key's last write at kvSeq (0: none).
func (s *Store) headMsg(h eventstore.Head, kvSeq uint64) *nats.Msg {
	m := nats.NewMsg(s.headSubject(h.Stream))
	m.Data, _ = json.Marshal(headEntry(h))
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(kvSeq, 10))
	return m
}

// headEntry is the value of a head key.
type headEntry struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	Position uint64 `json:"position"`
}

// errHeadDeleted: the head key holds a delete marker. This package never
// deletes a head.
var errHeadDeleted = errors.New("its recorded head was deleted")

// validBucket reports whether JetStream takes name as a bucket name.
func validBucket(name string) bool {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return name != ""
}

func (s *Store) headsBucket() string { return s.cfg.Stream + headsSuffix }

// headSubject is the subject of a stream's head key in the bucket.
func (s *Store) headSubject(stream string) string {
	return "$KV." + s.headsBucket() + "." + enc(stream)
}

func (s *Store) ensureHeads(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := s.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      s.headsBucket(),
		Description: "Activity History: the head of every event stream of " + s.cfg.Stream,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    s.cfg.Replicas,
	})
	if err != nil {
		return fmt.Errorf("create bucket %s: %w", s.headsBucket(), backendErr(ctx, err))
	}
	s.kv = kv
	return nil
}

// loadHead returns the recorded head of stream (nil when none) and the
// sequence of the key's last write (0 when never written), or
// errHeadDeleted with that sequence. fresh asks the bucket's leader rather
// than any replica.
func (s *Store) loadHead(ctx context.Context, stream string, fresh bool) (*eventstore.Head, uint64, error) {
	m, ok, err := s.get(ctx, "KV_"+s.headsBucket(), directReq{LastFor: s.headSubject(stream)}, fresh)
	if err != nil || !ok {
		return nil, 0, err
	}
	if m.header.Get("KV-Operation") != "" { // a DEL or PURGE marker
		return nil, m.seq, errHeadDeleted
	}
	var e headEntry
	if err := json.Unmarshal(m.data, &e); err != nil {
		return nil, 0, fmt.Errorf("head of %s: %w", stream, err)
	}
	return (*eventstore.Head)(&e), m.seq, nil
}

// Head returns the recorded head of stream, ErrNotFound when none is
// recorded, a *eventstore.ChainError when it was deleted. It waits for the
// indexer to pass every event stored before the call. On a cluster any
// replica answers, so the head may lag the stream's by the last appends.
func (s *Store) Head(ctx context.Context, stream string) (*eventstore.Head, error) {
	if err := eventstore.CheckStream(stream); err != nil {
		return nil, fmt.Errorf("head: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := s.waitIndexed(ctx); err != nil {
		return nil, fmt.Errorf("head %s: %w", stream, err)
	}
	h, _, err := s.loadHead(ctx, stream, false)
	switch {
	case errors.Is(err, errHeadDeleted):
		return nil, &eventstore.ChainError{Stream: stream, Reason: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("head %s: %w", stream, err)
	case h == nil:
		return nil, fmt.Errorf("head %s: %w", stream, eventstore.ErrNotFound)
	}
	h.Stream = stream
	return h, nil
}

// Heads calls fn with every recorded head, in no particular order, until
// fn fails. Heads are never deleted by this package, so a deleted head key
// is reported too: Heads returns a *eventstore.ChainError for each (joined)
// once every head has been passed to fn.
func (s *Store) Heads(ctx context.Context, fn func(eventstore.Head) error) error {
	if err := s.waitIndexed(ctx); err != nil {
		return fmt.Errorf("heads: %w", err)
	}
	w, err := s.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("heads: %w", backendErr(ctx, err))
	}
	defer w.Stop()
	defer context.AfterFunc(ctx, func() { w.Stop() })() // ends Updates
	var deleted []error
	for e := range w.Updates() {
		if e == nil { // every key's last value has been delivered
			return errors.Join(deleted...)
		}
		if e.Key() == indexKey {
			continue
		}
		stream, err := decodeToken(e.Key())
		if err != nil {
			return fmt.Errorf("heads: key %q: %w", e.Key(), err)
		}
		if e.Operation() != jetstream.KeyValuePut {
			deleted = append(deleted, &eventstore.ChainError{Stream: stream, Reason: errHeadDeleted.Error()})
			continue
		}
		var h headEntry
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			return fmt.Errorf("heads: head of %q: %w", stream, err)
		}
		h.Stream = stream
		if err := fn(eventstore.Head(h)); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("heads: %w", ctx.Err())
	}
	return fmt.Errorf("heads: watcher stopped: %w", eventstore.ErrUnavailable)
}

// Verify checks the chain of stream against its recorded head (see
// eventstore.Verify for what that catches). A stream without a recorded
// head is checked by its chain alone.
func (s *Store) Verify(ctx context.Context, stream string) (*eventstore.Head, error) {
	expected, err := s.Head(ctx, stream)
	if errors.Is(err, eventstore.ErrNotFound) {
		expected, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", stream, err)
	}
	return eventstore.Verify(ctx, s, stream, expected)
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
	code := apiCode(err)
	return code == codeWrongLastSeq || code == codeWrongLastSeqConst
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
