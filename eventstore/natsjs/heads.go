package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// Heads kept outside the stream. The indexer (index.go) writes each
// stream's newest head (revision, hash, position) to the key-value bucket
// <Stream>_HEADS, key = the encoded stream name, normally milliseconds
// after the append. A stream that ends before its recorded head lost
// records; the chain alone cannot tell, since every prefix of a chain is a
// valid chain.
//
// The window: until the indexer has passed an append, the stream is ahead
// of its head, which Verify accepts; those records are covered by the
// chain alone. Head and Heads wait for the indexer to pass every event
// stored before the call. A recorded head never moves back, nor to a
// record written again at a later position: a write expects the key's
// last sequence and gives way to a head of the same or a later revision.

// headsSuffix names the bucket after the stream.
const headsSuffix = "_HEADS"

// validBucket reports whether JetStream takes name as a bucket name.
func validBucket(name string) bool {
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return name != ""
}

// headEntry is the value of a head key.
type headEntry struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
	Hash     string `json:"hash"`
	Position uint64 `json:"position"`
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

// recordHead writes h as the recorded head of stream unless a head at the
// same or a later revision is recorded already. kvSeq is the sequence of
// the key's last write when known (0: unknown). It returns the sequence
// of the key's write that holds h or a later head, and that revision.
func (s *Store) recordHead(ctx context.Context, stream string, h head, kvSeq uint64) (seq, revision uint64, err error) {
	// A new stream has no head yet: expect none rather than look.
	known := kvSeq != 0 || h.revision == 0
	for attempt := 1; ; attempt++ {
		if !known {
			rec, seq, err := s.loadHead(ctx, stream, true)
			if err != nil && !errors.Is(err, errHeadDeleted) {
				return 0, 0, err
			}
			if rec != nil && rec.Revision >= h.revision {
				return seq, rec.Revision, nil
			}
			kvSeq, known = seq, true
		}
		m, err := s.headMsg(eventstore.Record{Stream: stream, Revision: h.revision, Hash: h.hash, Position: h.seq}, kvSeq)
		if err != nil {
			return 0, 0, err
		}
		pctx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := s.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			return ack.Sequence, h.revision, nil
		}
		if !isWrongLastSeq(err) {
			return 0, 0, fmt.Errorf("record head: %w", backendErr(ctx, err))
		}
		if attempt == maxAttempts {
			return 0, 0, fmt.Errorf("record head: still contended after %d attempts: %w", attempt, eventstore.ErrUnavailable)
		}
		// Another process wrote the key: look again.
		known = false
		if err := eventstore.Sleep(ctx, eventstore.ConflictBackoff(attempt)); err != nil {
			return 0, 0, fmt.Errorf("record head: %w", backendErr(ctx, err))
		}
	}
}

// head is a stream's last record as recordHead takes it.
type head struct {
	revision uint64
	hash     string
	seq      uint64
}

// headMsg is the write of r as its stream's recorded head, expecting the
// key's last write at kvSeq (0: none).
func (s *Store) headMsg(r eventstore.Record, kvSeq uint64) (*nats.Msg, error) {
	body, err := json.Marshal(headEntry{Stream: r.Stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position})
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(s.headSubject(r.Stream))
	m.Data = body
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(kvSeq, 10))
	return m, nil
}

// errHeadDeleted: the head key holds a delete marker. This package never
// deletes a head.
var errHeadDeleted = errors.New("its recorded head was deleted")

// loadHead returns the recorded head of stream (nil when none) and the
// sequence of the key's last write (0 when never written), or
// errHeadDeleted with that sequence. fresh asks the bucket's leader rather
// than any replica.
func (s *Store) loadHead(ctx context.Context, stream string, fresh bool) (*headEntry, uint64, error) {
	req := directReq{LastFor: s.headSubject(stream)}
	var m rawMsg
	var ok bool
	var err error
	if fresh {
		m, ok, err = s.leaderGet(ctx, "KV_"+s.headsBucket(), req)
	} else {
		m, ok, err = s.directOneOn(ctx, "KV_"+s.headsBucket(), req)
	}
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
	return &e, m.seq, nil
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
	e, _, err := s.loadHead(ctx, stream, false)
	switch {
	case errors.Is(err, errHeadDeleted):
		return nil, &eventstore.ChainError{Stream: stream, Reason: err.Error()}
	case err != nil:
		return nil, fmt.Errorf("head %s: %w", stream, err)
	case e == nil:
		return nil, fmt.Errorf("head %s: %w", stream, eventstore.ErrNotFound)
	}
	return &eventstore.Head{Stream: stream, Revision: e.Revision, Hash: e.Hash, Position: e.Position}, nil
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
	var deleted []error
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return fmt.Errorf("heads: %w", ctx.Err())
		case got, open := <-w.Updates():
			if !open {
				return fmt.Errorf("heads: watcher stopped: %w", eventstore.ErrUnavailable)
			}
			e = got
		}
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
		if err := fn(eventstore.Head{Stream: stream, Revision: h.Revision, Hash: h.Hash, Position: h.Position}); err != nil {
			return err
		}
	}
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
