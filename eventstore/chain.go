package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// GenesisHash is the prevHash of every stream's first record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// chainVersion is written first in the canonical bytes so that a later
// change of layout cannot be mistaken for this one.
const chainVersion = "activityhistory/chain/v1"

// CanonicalBytes is the byte string a record's hash covers: stream,
// revision, event id, type and data, each length-prefixed so that no two
// different records share it. RecordedAt and Position are not covered: they
// are assigned by the backend and differ between stores holding the same
// history.
func CanonicalBytes(stream string, revision uint64, ev Event) []byte {
	n := len(chainVersion) + len(stream) + len(ev.ID) + len(ev.Type) + len(ev.Data) + 5*8 + 8
	b := make([]byte, 0, n)
	b = appendField(b, []byte(chainVersion))
	b = appendField(b, []byte(stream))
	b = binary.BigEndian.AppendUint64(b, revision)
	b = appendField(b, []byte(ev.ID))
	b = appendField(b, []byte(ev.Type))
	b = appendField(b, ev.Data)
	return b
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
	return append(b, f...)
}

// ChainHash returns hex SHA-256(prevHash ‖ canonical event bytes), where
// prevHash is taken as its 32 raw bytes.
func ChainHash(prevHash, stream string, revision uint64, ev Event) (string, error) {
	prev, err := hex.DecodeString(prevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("%w: prevHash %q is not a hex SHA-256", ErrInvalid, prevHash)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(CanonicalBytes(stream, revision, ev))
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seal fills Revision, PrevHash and Hash of records that continue the chain
// from head (nil for a new stream).
func Seal(head *Head, stream string, events []Event) ([]Record, error) {
	prev, rev := GenesisHash, uint64(0)
	if head != nil {
		prev, rev = head.Hash, head.Revision+1
	}
	out := make([]Record, len(events))
	for i, ev := range events {
		h, err := ChainHash(prev, stream, rev, ev)
		if err != nil {
			return nil, err
		}
		out[i] = Record{ID: ev.ID, Type: ev.Type, Stream: stream, Revision: rev, Data: ev.Data, PrevHash: prev, Hash: h}
		prev, rev = h, rev+1
	}
	return out, nil
}

// ErrChainBroken is wrapped by every verification failure.
var ErrChainBroken = errors.New("hash chain broken")

// ChainError says where and why a stream fails verification.
type ChainError struct {
	Stream   string
	Revision uint64
	Reason   string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("stream %q revision %d: %s", e.Stream, e.Revision, e.Reason)
}

func (e *ChainError) Unwrap() error { return ErrChainBroken }

// VerifyRecords checks that records are revisions 0..n-1 of one stream,
// each linked to the one before and hashing to its Hash. It returns the
// head it ended on, or a *ChainError for the first bad record.
func VerifyRecords(stream string, recs []Record, from *Head) (*Head, error) {
	prev, want := GenesisHash, uint64(0)
	if from != nil {
		prev, want = from.Hash, from.Revision+1
	}
	head := from
	for _, r := range recs {
		fail := func(reason string) error {
			return &ChainError{Stream: stream, Revision: want, Reason: reason}
		}
		switch {
		case r.Stream != stream:
			return nil, fail(fmt.Sprintf("record belongs to stream %q", r.Stream))
		case r.Revision < want:
			return nil, fail(fmt.Sprintf("revision %d appears again or out of order", r.Revision))
		case r.Revision > want:
			return nil, fail(fmt.Sprintf("missing: next record found is revision %d", r.Revision))
		case r.PrevHash != prev:
			return nil, fail("prevHash does not match the hash of the record before")
		}
		h, err := ChainHash(prev, stream, r.Revision, Event{ID: r.ID, Type: r.Type, Data: r.Data})
		if err != nil {
			return nil, fail(err.Error())
		}
		if h != r.Hash {
			return nil, fail("content does not match its hash (altered)")
		}
		head = &Head{Stream: stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position}
		prev, want = h, want+1
	}
	return head, nil
}

// StreamReader is the part of a Store that Verify needs.
type StreamReader interface {
	Read(ctx context.Context, stream string, from uint64, limit int) ([]Record, error)
}

// Verify reads a whole stream and checks its chain. expected, when not nil,
// is a head kept outside the stream (recorded after an append succeeded):
//   - the stream must hold a record at expected.Revision with expected.Hash
//     (and, when expected.Position is not 0, at that position: a record
//     removed and written again lands elsewhere), so removal of the newest
//     records, or of the whole stream, is detected;
//   - records after expected.Revision are accepted: heads are recorded after
//     the append, so a stream may be ahead of its head for a moment, and for
//     good when a writer stopped in between. Such records are only as safe
//     as the chain alone makes them.
func Verify(ctx context.Context, s StreamReader, stream string, expected *Head) (*Head, error) {
	const page = 1000
	var head *Head
	var from uint64
	matched := expected == nil
	for {
		recs, err := s.Read(ctx, stream, from, page)
		if errors.Is(err, ErrNotFound) && head == nil && expected != nil {
			return nil, &ChainError{Stream: stream, Revision: 0,
				Reason: fmt.Sprintf("no records, but the head is recorded at revision %d", expected.Revision)}
		}
		if err != nil {
			return nil, fmt.Errorf("verify %s: %w", stream, err)
		}
		if head, err = VerifyRecords(stream, recs, head); err != nil {
			return nil, err
		}
		if !matched {
			if matched, err = matchHead(stream, recs, expected); err != nil {
				return head, err
			}
		}
		if len(recs) < page || head == nil {
			break
		}
		from = head.Revision + 1
	}
	if head == nil {
		return nil, fmt.Errorf("verify %s: %w", stream, ErrNotFound)
	}
	if !matched {
		return head, &ChainError{Stream: stream, Revision: head.Revision + 1,
			Reason: fmt.Sprintf("records after revision %d are missing (head recorded at %d)", head.Revision, expected.Revision)}
	}
	return head, nil
}

// matchHead reports whether recs hold the record of the recorded head, and
// fails when they hold a different one.
func matchHead(stream string, recs []Record, expected *Head) (bool, error) {
	for _, r := range recs {
		if r.Revision != expected.Revision {
			continue
		}
		switch {
		case r.Hash != expected.Hash:
			return true, &ChainError{Stream: stream, Revision: r.Revision, Reason: "record differs from the recorded head"}
		case expected.Position != 0 && r.Position != expected.Position:
			return true, &ChainError{Stream: stream, Revision: r.Revision,
				Reason: fmt.Sprintf("record is at position %d, the recorded head at %d (removed and written again)", r.Position, expected.Position)}
		}
		return true, nil
	}
	return false, nil
}
