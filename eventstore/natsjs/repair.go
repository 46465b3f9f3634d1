package natsjs

import (
	"github.com/prometheus/client_golang/prometheus"

	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// The index repairer. A single-event append stores its event, then its
// id-index entry; a writer that stops in between leaves the event
// unindexed, found after the duplicate window only as its stream's head
// (appendOnce) or not at all. Every store runs the repairer: it follows
// the event subjects from a checkpoint and writes the entry of any event
// that lacks one. Normally there is none, and its cost is one ordered
// consumer (headers only) and one multi-subject get per batch. Several processes may run
// it at once: entries expect an empty subject, and the checkpoint never
// moves back.
const (
	// repairKey holds the checkpoint in the heads bucket. Head keys are
	// base64url, which has no '='.
	repairKey = "=index-repair"
	// repairBatch bounds the events checked per multi-subject get.
	repairBatch = 256
	// repairGrace leaves a just-stored event to the append writing its
	// entry, so the two do not race to write it.
	repairGrace = time.Second
	// repairLinger is how long a batch waits for more events.
	repairLinger = 50 * time.Millisecond
	// repairCheckpointEvery is how often the checkpoint is saved (tests
	// may set Config.repairEvery).
	repairCheckpointEvery = 5 * time.Second
)

// IndexRepairs counts the id-index entries this store's repairer wrote:
// events whose writer stopped before indexing them.
func (s *Store) IndexRepairs() uint64 { return s.indexRepairs.Load() }

// IndexConflicts counts the events this store found indexed to another
// record: an id recorded twice. Each is logged at error level.
func (s *Store) IndexConflicts() uint64 { return s.indexConflicts.Load() }

// repairLoop runs the repairer until Close, starting again after failures
// (an election, a reconnect).
func (s *Store) repairLoop() {
	defer s.workers.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	for n := 1; ; n++ {
		err := s.repair(ctx)
		if ctx.Err() != nil || s.closed() {
			return
		}
		s.log.Warn("id index repairer stopped, restarting", "err", err)
		if eventstore.Sleep(ctx, eventstore.UnavailableBackoff(n)) != nil {
			return
		}
	}
}

// repair checks events from the checkpoint on until ctx ends or a
// request fails.
func (s *Store) repair(ctx context.Context) error {
	done, rev, err := s.loadCheckpoint(ctx)
	if err != nil {
		return err
	}
	// Headers name the event and its index entry; the data is read only
	// for an event that needs an entry.
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{s.evAll}, DeliverPolicy: jetstream.DeliverAllPolicy, HeadersOnly: true}
	if done > 0 {
		cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cfg.OptStartSeq = done + 1
	}
	cctx, cancel := withTimeout(ctx)
	cons, err := s.js.OrderedConsumer(cctx, s.cfg.Stream, cfg)
	cancel()
	if err != nil {
		return fmt.Errorf("repair: %w", backendErr(ctx, err))
	}
	it, err := cons.Messages(jetstream.PullMaxMessagesWithBytesLimit(2*repairBatch, 32<<20))
	if err != nil {
		return fmt.Errorf("repair: %w", backendErr(ctx, err))
	}
	defer it.Stop()
	// While the ordered consumer is being recreated (after a node loss)
	// Next does not watch ctx; stopping the iterator ends it.
	defer context.AfterFunc(ctx, it.Stop)()
	every := cmp.Or(s.cfg.repairEvery, repairCheckpointEvery)
	saved := done
	lastSave := time.Now()
	for ctx.Err() == nil {
		// Wake up now and then to save the checkpoint when idle.
		wait, stop := context.WithTimeout(ctx, every)
		batch, err := s.nextBatch(wait, it)
		stop()
		if err != nil {
			return err
		}
		if len(batch) > 0 {
			newest := batch[len(batch)-1]
			// Capped: another node's clock may be ahead.
			if err := eventstore.Sleep(ctx, min(repairGrace-time.Since(newest.time), repairGrace)); err != nil {
				return err
			}
			if err := s.repairBatch(ctx, batch); err != nil {
				return err
			}
			done = newest.seq
		}
		if done > saved && time.Since(lastSave) >= every {
			if rev, err = s.saveCheckpoint(ctx, done, rev); err != nil {
				return err
			}
			saved, lastSave = done, time.Now()
		}
	}
	return ctx.Err()
}

// nextBatch returns the next events, up to repairBatch; none when ctx
// (a wake-up timer) ends first.
func (s *Store) nextBatch(ctx context.Context, it jetstream.MessagesContext) ([]rawMsg, error) {
	var batch []rawMsg
	for len(batch) < repairBatch {
		next := ctx
		var stop context.CancelFunc = func() {}
		if len(batch) > 0 {
			next, stop = context.WithTimeout(ctx, repairLinger)
		}
		m, err := it.Next(jetstream.NextContext(next))
		stop()
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return batch, nil // the caller's ctx is checked by its next wait
		}
		if err != nil {
			return nil, fmt.Errorf("repair: %w", backendErr(ctx, err))
		}
		raw, err := fromConsumer(m)
		if err != nil {
			return nil, fmt.Errorf("repair: %w", err)
		}
		batch = append(batch, raw)
	}
	return batch, nil
}

// repairBatch writes the missing id-index entries of batch's events
// (headers only).
func (s *Store) repairBatch(ctx context.Context, batch []rawMsg) error {
	evs := make([]eventstore.Record, 0, len(batch))
	subjects := make([]string, 0, len(batch))
	for _, m := range batch {
		rec, err := s.record(m)
		if err != nil {
			continue // not an event of this package's; Verify reports it
		}
		evs = append(evs, rec)
		subjects = append(subjects, s.idSubject(rec.ID))
	}
	if len(evs) == 0 {
		return nil
	}
	found, _, err := s.directBatch(ctx, directReq{MultiLast: subjects})
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	entries := make(map[string]rawMsg, len(found))
	for _, m := range found {
		entries[m.subject] = m
	}
	for _, rec := range evs {
		if m, ok := entries[s.idSubject(rec.ID)]; ok {
			var e idEntry
			if err := json.Unmarshal(m.data, &e); err != nil {
				return fmt.Errorf("repair: id index of %s: %w", rec.ID, err)
			}
			if e.Stream == rec.Stream && e.Revision == rec.Revision {
				continue
			}
			// Another record's, or a replica answering from behind:
			// writeIndex asks the leader before calling it a conflict.
		}
		if err := s.repairOne(ctx, rec.Position); err != nil {
			return fmt.Errorf("repair: %w", err)
		}
	}
	return nil
}

// repairOne writes the id-index entry of the event at seq, read in full.
func (s *Store) repairOne(ctx context.Context, seq uint64) error {
	m, ok, err := s.leaderGet(ctx, s.cfg.Stream, directReq{Seq: seq})
	if err != nil || !ok {
		return err // !ok: removed since (a tamperable stream)
	}
	rec, err := s.record(m)
	if err != nil {
		return nil
	}
	ev := eventstore.Event{ID: rec.ID, Type: rec.Type, Data: rec.Data}
	if h, err := eventstore.ChainHash(rec.PrevHash, rec.Stream, rec.Revision, ev); err != nil || h != rec.Hash {
		return nil // forged or altered: must not claim its id; Verify reports it
	}
	got, err := s.writeIndex(ctx, rec, contentSum(ev))
	if err != nil {
		return err
	}
	if got == indexWritten {
		s.indexRepairs.Add(1)
		s.log.Warn("id index repaired: an append stopped before writing it",
			"id", rec.ID, "stream", rec.Stream, "revision", rec.Revision, "position", rec.Position)
	}
	return nil
}

// loadCheckpoint returns the last position the repairer has checked (0:
// none) and the key's revision (0: never written).
func (s *Store) loadCheckpoint(ctx context.Context) (done, rev uint64, err error) {
	gctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	e, err := s.kv.Get(gctx, repairKey)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound): // or deleted: Create takes it
		return 0, 0, nil
	case err != nil:
		return 0, 0, fmt.Errorf("repair checkpoint: %w", backendErr(ctx, err))
	}
	done, err = strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("repair checkpoint %q: %w", e.Value(), err)
	}
	return done, e.Revision(), nil
}

// saveCheckpoint stores done unless another repairer stored a later one,
// and returns the key's new revision.
func (s *Store) saveCheckpoint(ctx context.Context, done, rev uint64) (uint64, error) {
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		val := []byte(strconv.FormatUint(done, 10))
		var err error
		var next uint64
		if rev == 0 {
			next, err = s.kv.Create(pctx, repairKey, val)
		} else {
			next, err = s.kv.Update(pctx, repairKey, val, rev)
		}
		cancel()
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !isWrongLastSeq(err) {
			return rev, fmt.Errorf("repair checkpoint: %w", backendErr(ctx, err))
		}
		// Another repairer wrote it: keep the later of the two.
		theirs, theirRev, err := s.loadCheckpoint(ctx)
		if err != nil {
			return rev, err
		}
		if theirs >= done || attempt == maxAttempts {
			return theirRev, nil
		}
		rev = theirRev
	}
}

func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == codeWrongLastSeq || apiErr.ErrorCode == codeWrongLastSeqConst)
}

// RegisterMetrics exposes the id-index repairer's counters: repairs mean an
// append died between its event and its index entry; conflicts mean an id
// was recorded for two events and need an operator.
func (s *Store) RegisterMetrics(reg prometheus.Registerer) {
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "activityhistory_eventstore_index_repairs_total",
			Help: "Event id index entries written by the repairer after an interrupted append.",
		}, func() float64 { return float64(s.IndexRepairs()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "activityhistory_eventstore_index_conflicts_total",
			Help: "Event ids found recorded for two different events.",
		}, func() float64 { return float64(s.IndexConflicts()) }),
	)
}
