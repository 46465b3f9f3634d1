package natsjs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

const (
	readBatch    = 1000     // messages per direct batch get
	readMaxBytes = 16 << 20 // bytes per direct batch get
)

// read returns up to limit records of stream from revision from. The first
// record is found by a binary search over stream sequences (revisions grow
// with sequence on a subject), the rest by batch direct gets filtered on
// the stream's subject, which the file store serves from its subject index.
// Any replica answers direct gets, a follower from a little behind the
// leader: what the leader holds now is the least a read returns (a
// follower short of it is asked again), so a read sees every append
// acknowledged before it.
func (s *Store) read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	subj := s.evSubject(stream)
	want := 0
	if s.cfg.Replicas > 1 {
		last, ok, err := s.get(ctx, s.cfg.Stream, directReq{LastFor: subj}, true)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, err)
		}
		if !ok {
			return nil, fmt.Errorf("read %s: %w", stream, eventstore.ErrNotFound)
		}
		headRev, err := revisionOf(last)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", stream, &eventstore.ChainError{Stream: stream, Revision: from, Reason: err.Error()})
		}
		if from <= headRev {
			want = int(min(uint64(limit), headRev-from+1))
		}
	}
	var recs []eventstore.Record
	err := s.retryUnavailable(ctx, func() (err error) {
		recs, err = s.readOnce(ctx, stream, subj, from, limit)
		if len(recs) < want && (err == nil || errors.Is(err, eventstore.ErrNotFound)) {
			return fmt.Errorf("replica behind the leader (%d of %d records): %w", len(recs), want, eventstore.ErrUnavailable)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", stream, err)
	}
	return recs, nil
}

// readOnce reads through direct gets from whichever replica answers. A
// message on the stream's subject that is not the next record is reported
// as a broken chain: the stream was written behind this package's back.
func (s *Store) readOnce(ctx context.Context, stream, subj string, from uint64, limit int) ([]eventstore.Record, error) {
	start := uint64(1)
	if from > 0 {
		seq, err := s.seqOfRevision(ctx, stream, subj, from)
		if err != nil {
			return nil, err
		}
		if seq == 0 {
			return []eventstore.Record{}, nil
		}
		start = seq
	}
	out := make([]eventstore.Record, 0, min(limit, readBatch))
	for len(out) < limit {
		msgs, pending, err := s.direct(ctx, s.cfg.Stream, directReq{Seq: start, NextFor: subj, Batch: min(limit-len(out), readBatch), MaxBytes: readMaxBytes})
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			want := from + uint64(len(out))
			r, err := s.record(m)
			if err != nil {
				return nil, &eventstore.ChainError{Stream: stream, Revision: want, Reason: err.Error()}
			}
			if r.Revision > want { // erased records (erase.go)
				gap, err := s.erased(ctx, stream, want, min(r.Revision, want+uint64(limit-len(out))))
				if err != nil {
					return nil, err
				}
				if out = append(out, gap...); len(out) == limit {
					return out, nil
				}
				want = r.Revision
			}
			if r.Revision != want {
				return nil, &eventstore.ChainError{Stream: stream, Revision: want,
					Reason: fmt.Sprintf("found revision %d at position %d where %d belongs", r.Revision, m.seq, want)}
			}
			out = append(out, r)
			start = m.seq + 1
		}
		if len(msgs) == 0 || pending == 0 {
			break
		}
	}
	if len(out) == 0 && from == 0 {
		return nil, eventstore.ErrNotFound
	}
	return out, nil
}

// seqOfRevision returns the sequence of revision rev on subject subj, 0 when
// the stream ends before it, or ErrNotFound when the stream is empty.
func (s *Store) seqOfRevision(ctx context.Context, stream, subj string, rev uint64) (uint64, error) {
	head, ok, err := s.get(ctx, s.cfg.Stream, directReq{LastFor: subj}, false)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, eventstore.ErrNotFound
	}
	headRev, err := revisionOf(head)
	if err != nil {
		return 0, &eventstore.ChainError{Stream: stream, Revision: rev, Reason: err.Error()}
	}
	switch {
	case rev > headRev:
		return 0, nil
	case rev == headRev:
		return head.seq, nil
	}
	// Each revision has its own sequence, which bounds where rev can be.
	// An erased rev has none left: the first record after it is returned.
	lo, hi := rev+1, head.seq-(headRev-rev)
	var after uint64
	for lo <= hi {
		mid := lo + (hi-lo)/2
		m, ok, err := s.get(ctx, s.cfg.Stream, directReq{Seq: mid, NextFor: subj}, false)
		if err != nil {
			return 0, err
		}
		if !ok {
			break
		}
		r, err := revisionOf(m)
		if err != nil {
			return 0, &eventstore.ChainError{Stream: stream, Revision: rev, Reason: err.Error()}
		}
		switch {
		case r == rev:
			return m.seq, nil
		case r < rev:
			lo = m.seq + 1
		default:
			after, hi = m.seq, mid-1
		}
	}
	if after != 0 {
		return after, nil
	}
	return 0, &eventstore.ChainError{Stream: stream, Revision: rev, Reason: fmt.Sprintf("missing below head revision %d", headRev)}
}

func revisionOf(m rawMsg) (uint64, error) {
	r, err := strconv.ParseUint(m.header.Get(hdrRevision), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("message %d: bad %s header: %w", m.seq, hdrRevision, err)
	}
	return r, nil
}

// directReq is JetStream's direct get request (JSApiMsgGetRequest).
type directReq struct {
	Seq       uint64   `json:"seq,omitempty"`
	LastFor   string   `json:"last_by_subj,omitempty"`
	NextFor   string   `json:"next_by_subj,omitempty"`
	Batch     int      `json:"batch,omitempty"`
	MaxBytes  int      `json:"max_bytes,omitempty"`
	MultiLast []string `json:"multi_last,omitempty"`
}

// direct answers a direct get on a JetStream stream with its messages
// (none when no message matches) and, for a batch or multi-last get, the
// count of matching messages left after them. Unlike jetstreamext.GetBatch
// it tells a complete batch (end-of-batch marker) from one cut short by a
// timeout.
func (s *Store) direct(ctx context.Context, stream string, req directReq) ([]rawMsg, uint64, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, err
	}
	r := s.replies.open()
	defer s.replies.close(r)
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, r.inbox, body); err != nil {
		return nil, 0, backendErr(ctx, err)
	}
	batch := req.Batch > 0 || len(req.MultiLast) > 0
	var out []rawMsg
	for {
		resp, err := r.next(ctx, attemptTimeout)
		if err != nil {
			return nil, 0, backendErr(ctx, err)
		}
		switch st := resp.Header.Get("Status"); st {
		case "":
			m, err := parseDirect(resp)
			if err != nil {
				return nil, 0, err
			}
			if out = append(out, m); !batch {
				return out, 0, nil
			}
		case "204": // end of batch
			pending, _ := strconv.ParseUint(resp.Header.Get("Nats-Num-Pending"), 10, 64)
			return out, pending, nil
		case "404":
			if len(out) > 0 {
				return nil, 0, errors.New("direct get: message lost mid-batch")
			}
			return nil, 0, nil
		case "503":
			return nil, 0, fmt.Errorf("direct get: %w", backendErr(ctx, nats.ErrNoResponders))
		default:
			return nil, 0, fmt.Errorf("direct get: status %s %s", st, resp.Header.Get("Description"))
		}
	}
}

// lastBySubject gets the last message of each subject (at most 1024) in
// one multi-last direct get, by subject; a subject without one is absent.
func (s *Store) lastBySubject(ctx context.Context, subjects []string) (map[string]rawMsg, error) {
	msgs, _, err := s.direct(ctx, s.cfg.Stream, directReq{MultiLast: subjects})
	if err != nil {
		return nil, err
	}
	out := make(map[string]rawMsg, len(msgs))
	for _, m := range msgs {
		out[m.subject] = m
	}
	return out, nil
}

func parseDirect(m *nats.Msg) (rawMsg, error) {
	seq, err := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return rawMsg{}, fmt.Errorf("direct get: bad sequence header: %w", err)
	}
	ts, err := time.Parse(time.RFC3339Nano, m.Header.Get(jetstream.TimeStampHeaer))
	if err != nil {
		return rawMsg{}, fmt.Errorf("direct get: bad time header: %w", err)
	}
	return rawMsg{subject: m.Header.Get(jetstream.SubjectHeader), seq: seq, time: ts.UTC(), header: m.Header, data: m.Data}, nil
}

// replyMux routes multi-message answers to their requests through one
// wildcard inbox subscription: a subscription per request would cost a
// SUB/UNSUB round and a large channel allocation each time.
type replyMux struct {
	prefix string
	mu     sync.Mutex
	seq    uint64
	m      map[string]*reply
}

// reply collects the messages answering one request.
type reply struct {
	inbox  string
	mu     sync.Mutex
	msgs   []*nats.Msg
	signal chan struct{} // cap 1: messages arrived
}

func (x *replyMux) subscribe(nc *nats.Conn) error {
	x.prefix = nc.NewInbox() + "."
	x.m = make(map[string]*reply)
	sub, err := nc.Subscribe(x.prefix+"*", x.dispatch)
	if err != nil {
		return err
	}
	// Batch answers come in bursts of up to readBatch messages per request.
	return sub.SetPendingLimits(-1, 256<<20)
}

func (x *replyMux) open() *reply {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.seq++
	r := &reply{inbox: x.prefix + strconv.FormatUint(x.seq, 36), signal: make(chan struct{}, 1)}
	x.m[r.inbox] = r
	return r
}

func (x *replyMux) close(r *reply) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.m, r.inbox)
}

func (x *replyMux) dispatch(m *nats.Msg) {
	x.mu.Lock()
	r := x.m[m.Subject]
	x.mu.Unlock()
	if r == nil {
		return // its request gave up
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// next returns the next message, or an error when none comes within
// idle: a request that reached a node just before it died is never
// answered.
func (r *reply) next(ctx context.Context, idle time.Duration) (*nats.Msg, error) {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		r.mu.Lock()
		if len(r.msgs) > 0 {
			m := r.msgs[0]
			r.msgs[0] = nil
			r.msgs = r.msgs[1:]
			r.mu.Unlock()
			return m, nil
		}
		r.mu.Unlock()
		select {
		case <-r.signal:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, fmt.Errorf("no answer in %s: %w", idle, nats.ErrTimeout)
		}
	}
}
