package natsjs

// Erasure. A record's payload goes by deleting its message (a secure
// delete: the server overwrites the bytes). What remains of the record —
// its headers and its payload's digest — is written first as its skeleton
// on its own subject, <prefix>.er.<stream>.<revision>, in the same
// JetStream stream. Reads fill the gap a deleted message leaves from the
// skeletons, as Erased records; a gap without one is a broken chain, as
// before. The erasure record that names them is the caller's to append.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

const (
	hdrErasedID  = "Ah-Erased-Id" // the record's id: Nats-Msg-Id is its message's
	hdrDigest    = "Ah-Digest"
	hdrPosition  = "Ah-Position"
	erasedPerGet = 1000 // skeletons per multi-last get (the server answers 1024 at most)
)

// ErrDeletesDenied: the JetStream stream was created denying message
// deletes, before erasure existed; the server cannot lift that.
var ErrDeletesDenied = fmt.Errorf("the JetStream stream was created denying message deletes, so payloads cannot be erased from it: %w", errors.ErrUnsupported)

func (s *Store) erSubject(stream string, rev uint64) string {
	return s.cfg.SubjectPrefix + ".er." + enc(stream) + "." + strconv.FormatUint(rev, 10)
}

// deletesDenied tells whether the stream exists and denies deletes; a new
// stream allows them (and still denies purges).
func (s *Store) deletesDenied(ctx context.Context) (bool, error) {
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", s.cfg.Stream, backendErr(ctx, err))
	}
	return st.CachedInfo().Config.DenyDelete, nil
}

// ErasePayloads removes the payloads of recs, records as Read returns them
// (erased ones are skipped), keeping each one's skeleton. Calling it again
// finishes what an interrupted call left. On a stream that denies deletes
// it fails with ErrDeletesDenied, even for no records.
func (s *Store) ErasePayloads(ctx context.Context, recs []eventstore.Record) error {
	if s.denyDelete {
		return fmt.Errorf("erase: %w", ErrDeletesDenied)
	}
	if len(recs) == 0 {
		return nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.cfg.Stream)
	if err != nil {
		return fmt.Errorf("erase: %w", backendErr(ctx, err))
	}
	for _, r := range recs {
		if r.Erased {
			continue
		}
		if err := s.eraseOne(ctx, st, r); err != nil {
			return fmt.Errorf("erase %s revision %d: %w", r.Stream, r.Revision, err)
		}
	}
	return nil
}

func (s *Store) eraseOne(ctx context.Context, st jetstream.Stream, r eventstore.Record) error {
	m, ok, err := s.get(ctx, s.cfg.Stream, directReq{Seq: r.Position}, true)
	if err != nil {
		return err
	}
	if !ok {
		return nil // deleted already: its skeleton was written before
	}
	sk, err := s.record(m)
	if err != nil || sk.ID != r.ID || sk.Stream != r.Stream || sk.Revision != r.Revision {
		return fmt.Errorf("message %d is not record %s: %w", r.Position, r.ID, eventstore.ErrInvalid)
	}
	sk.Erased, sk.Digest, sk.Data = true, eventstore.Digest(sk.Data), nil
	msg := eventMsg(s.erSubject(r.Stream, r.Revision), sk)
	msg.Header.Del(jetstream.MsgIDHeader) // taken by the original within the duplicate window
	msg.Header.Set(hdrErasedID, r.ID)
	msg.Header.Set(hdrDigest, sk.Digest)
	msg.Header.Set(hdrPosition, strconv.FormatUint(r.Position, 10))
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	if _, err := s.js.PublishMsg(ctx, msg); err != nil && !isWrongLastSeq(err) { // wrong last seq: written before
		return backendErr(ctx, err)
	}
	if err := st.SecureDeleteMsg(ctx, r.Position); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return backendErr(ctx, err)
	}
	return nil
}

// erased returns the skeletons of revisions from..to-1 of stream as Erased
// records; a revision with neither message nor skeleton breaks the chain.
func (s *Store) erased(ctx context.Context, stream string, from, to uint64) ([]eventstore.Record, error) {
	out := make([]eventstore.Record, 0, to-from)
	for lo := from; lo < to; lo += erasedPerGet {
		hi := min(to, lo+erasedPerGet)
		subjects := make([]string, 0, hi-lo)
		for rev := lo; rev < hi; rev++ {
			subjects = append(subjects, s.erSubject(stream, rev))
		}
		bySubject, err := s.lastBySubject(ctx, subjects)
		if err != nil {
			return nil, err
		}
		for rev := lo; rev < hi; rev++ {
			m, ok := bySubject[s.erSubject(stream, rev)]
			if !ok {
				return nil, &eventstore.ChainError{Stream: stream, Revision: rev, Reason: "missing: no record and no erasure of it"}
			}
			r, err := s.skeleton(stream, m)
			if err != nil || r.Revision != rev {
				return nil, &eventstore.ChainError{Stream: stream, Revision: rev, Reason: fmt.Sprintf("bad erased record: %v", err)}
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// skeleton turns a skeleton message into the Erased record it stands for.
func (s *Store) skeleton(stream string, m rawMsg) (eventstore.Record, error) {
	pos, err := strconv.ParseUint(m.header.Get(hdrPosition), 10, 64)
	if err != nil {
		return eventstore.Record{}, fmt.Errorf("bad %s header", hdrPosition)
	}
	m.subject = s.evSubject(stream)
	m.header.Set(jetstream.MsgIDHeader, m.header.Get(hdrErasedID))
	r, err := s.record(m)
	if err != nil {
		return r, err
	}
	r.Position, r.Data, r.Erased, r.Digest = pos, nil, true, m.header.Get(hdrDigest)
	return r, nil
}
