package eventstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// GenesisHash is the prevHash of every stream's first record.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Chain forms. A record says its form (Record.Version; 0 is v1, the form
// of records written before forms were told apart), so records of both
// verify side by side.
const (
	// ChainV1 hashes the payload bytes: the payload cannot go.
	ChainV1 = 1
	// ChainV2 hashes the payload's SHA-256 digest instead: the payload can
	// be erased while the digest, the metadata and the link remain.
	ChainV2 = 2
)

// chainVersion is written first in the canonical bytes so that a later
// change of layout cannot be mistaken for this one.
const (
	chainVersion   = "activityhistory/chain/v1"
	chainVersionV2 = "activityhistory/chain/v2"
)

// canonical is the byte string a record's hash covers: the chain form's
// name, stream, revision, event id, type and payload (v1: the data; v2: its
// 32-byte SHA-256 digest), each but the revision length-prefixed so that no
// two different records share it. RecordedAt and Position are not covered:
// they are assigned by the backend and differ between stores holding the
// same history.
func canonical(version, stream string, revision uint64, id, typ string, data []byte) []byte {
	b := make([]byte, 0, len(version)+len(stream)+len(id)+len(typ)+len(data)+6*8)
	b = appendField(b, []byte(version))
	b = appendField(b, []byte(stream))
	b = binary.BigEndian.AppendUint64(b, revision)
	b = appendField(b, []byte(id))
	b = appendField(b, []byte(typ))
	return appendField(b, data)
}

func appendField(b, f []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
	return append(b, f...)
}

// ChainHash returns the v1 hash: hex SHA-256(prevHash ‖ canonical event
// bytes), where prevHash is taken as its 32 raw bytes.
func ChainHash(prevHash, stream string, revision uint64, ev Event) (string, error) {
	return linkHash(prevHash, canonical(chainVersion, stream, revision, ev.ID, ev.Type, ev.Data))
}

// Digest is the hex SHA-256 of a payload: what a v2 hash covers.
func Digest(data []byte) string {
	d := sha256.Sum256(data)
	return hex.EncodeToString(d[:])
}

// RecordHash recomputes r's hash in its chain form from its PrevHash: from
// the data, or, for an erased v2 record, from the digest it kept. An erased
// v1 record cannot be recomputed: its hash is returned as it is, and only
// its links prove it.
func RecordHash(r Record) (string, error) {
	if r.Version < ChainV2 {
		if r.Erased {
			return r.Hash, nil
		}
		return ChainHash(r.PrevHash, r.Stream, r.Revision, Event{ID: r.ID, Type: r.Type, Data: r.Data})
	}
	d := sha256.Sum256(r.Data)
	digest := d[:]
	if r.Erased {
		var err error
		if digest, err = hex.AppendDecode(d[:0], []byte(r.Digest)); err != nil || len(digest) != sha256.Size {
			return "", fmt.Errorf("%w: digest %q is not a hex SHA-256", ErrInvalid, r.Digest)
		}
	}
	return linkHash(r.PrevHash, canonical(chainVersionV2, r.Stream, r.Revision, r.ID, r.Type, digest))
}

func linkHash(prevHash string, canonical []byte) (string, error) {
	prev, err := hex.DecodeString(prevHash)
	if err != nil || len(prev) != sha256.Size {
		return "", fmt.Errorf("%w: prevHash %q is not a hex SHA-256", ErrInvalid, prevHash)
	}
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Seal fills Revision, PrevHash and Hash of records that continue the chain
// from head (nil for a new stream), in the current form, v2.
func Seal(head *Head, stream string, events []Event) ([]Record, error) {
	prev, rev := GenesisHash, uint64(0)
	if head != nil {
		prev, rev = head.Hash, head.Revision+1
	}
	out := make([]Record, len(events))
	for i, ev := range events {
		r := Record{ID: ev.ID, Type: ev.Type, Stream: stream, Revision: rev, Data: ev.Data, PrevHash: prev, Version: ChainV2}
		h, err := RecordHash(r)
		if err != nil {
			return nil, err
		}
		r.Hash = h
		out[i] = r
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

// ErasureType is the type of an erasure record: it names earlier records
// of its stream whose payloads were removed, and says by whom, when and why.
const ErasureType = "PayloadsErased"

// Erasure is the payload of an erasure record.
type Erasure struct {
	By      string         `json:"by"`
	At      time.Time      `json:"at"`
	Reason  string         `json:"reason"`
	Records []ErasedRecord `json:"records"`
}

// ErasedRecord names one record whose payload an erasure removed.
type ErasedRecord struct {
	Revision uint64 `json:"revision"`
	ID       string `json:"id"`
	Digest   string `json:"digest"` // hex SHA-256 of the payload removed
}

// Chain checks one stream's records in order, page after page: each must
// link to the one before and hash to its Hash, and each erased record must
// be named, with its id and digest, by a later erasure record.
type Chain struct {
	Stream string
	// Head is the last record checked; set it to continue from a known head.
	Head *Head
	// Erased lists the revisions whose payloads were erased, once an
	// erasure record has named them.
	Erased   []uint64
	unlisted map[uint64]ErasedRecord // erased but not yet named
}

// Add checks the next records; a *ChainError names the first bad one.
func (c *Chain) Add(recs []Record) error {
	prev, want := GenesisHash, uint64(0)
	if c.Head != nil {
		prev, want = c.Head.Hash, c.Head.Revision+1
	}
	for _, r := range recs {
		fail := func(reason string) error {
			return &ChainError{Stream: c.Stream, Revision: want, Reason: reason}
		}
		switch {
		case r.Stream != c.Stream:
			return fail(fmt.Sprintf("record belongs to stream %q", r.Stream))
		case r.Revision < want:
			return fail(fmt.Sprintf("revision %d appears again or out of order", r.Revision))
		case r.Revision > want:
			return fail(fmt.Sprintf("missing: next record found is revision %d", r.Revision))
		case r.PrevHash != prev:
			return fail("prevHash does not match the hash of the record before")
		}
		h, err := RecordHash(r)
		if err != nil {
			return fail(err.Error())
		}
		if h != r.Hash {
			return fail("content does not match its hash (altered)")
		}
		if r.Erased {
			if c.unlisted == nil {
				c.unlisted = map[uint64]ErasedRecord{}
			}
			c.unlisted[r.Revision] = ErasedRecord{Revision: r.Revision, ID: r.ID, Digest: r.Digest}
		} else if r.Type == ErasureType {
			if err := c.listed(r); err != nil {
				return fail(err.Error())
			}
		}
		c.Head = &Head{Stream: c.Stream, Revision: r.Revision, Hash: r.Hash, Position: r.Position}
		prev, want = h, want+1
	}
	return nil
}

// listed ticks off the erased records an erasure record names. Records it
// names that still hold their payload are an erasure not finished yet.
func (c *Chain) listed(r Record) error {
	var e Erasure
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return fmt.Errorf("erasure record: %w", err)
	}
	for _, n := range e.Records {
		got, ok := c.unlisted[n.Revision]
		if !ok {
			continue
		}
		if got != n {
			return fmt.Errorf("erased revision %d is not the record the erasure record names (id or digest differ)", n.Revision)
		}
		delete(c.unlisted, n.Revision)
		c.Erased = append(c.Erased, n.Revision)
	}
	return nil
}

// End fails when a record's payload is gone but no erasure record names
// it: removed behind the store's back.
func (c *Chain) End() error {
	slices.Sort(c.Erased)
	if len(c.unlisted) == 0 {
		return nil
	}
	first := slices.Min(slices.Collect(maps.Keys(c.unlisted)))
	return &ChainError{Stream: c.Stream, Revision: first, Reason: "payload removed, but no erasure record names it"}
}

// VerifyRecords checks that records are revisions 0..n-1 of one stream (or
// continue from), as Chain does. It returns the head it ended on, or a
// *ChainError for the first bad record.
func VerifyRecords(stream string, recs []Record, from *Head) (*Head, error) {
	c := Chain{Stream: stream, Head: from}
	if err := c.Add(recs); err != nil {
		return nil, err
	}
	if err := c.End(); err != nil {
		return nil, err
	}
	return c.Head, nil
}

// StreamReader is the part of a Store that Verify needs.
type StreamReader interface {
	Read(ctx context.Context, stream string, from uint64, limit int) ([]Record, error)
}

// Verify is VerifyStream that returns the head only.
func Verify(ctx context.Context, s StreamReader, stream string, expected *Head) (*Head, error) {
	c, err := VerifyStream(ctx, s, stream, expected)
	return c.Head, err
}

// VerifyStream reads a whole stream and checks its chain. expected, when
// not nil, is a head kept outside the stream (recorded after an append
// succeeded):
//   - the stream must hold a record at expected.Revision with expected.Hash
//     (and, when expected.Position is not 0, at that position: a record
//     removed and written again lands elsewhere), so removal of the newest
//     records, or of the whole stream, is detected;
//   - records after expected.Revision are accepted: heads are recorded after
//     the append, so a stream may be ahead of its head for a moment, and for
//     good when a writer stopped in between. Such records are only as safe
//     as the chain alone makes them.
func VerifyStream(ctx context.Context, s StreamReader, stream string, expected *Head) (Chain, error) {
	const page = 1000
	c := Chain{Stream: stream}
	var from uint64
	matched := expected == nil
	for {
		recs, err := s.Read(ctx, stream, from, page)
		if errors.Is(err, ErrNotFound) && c.Head == nil && expected != nil {
			return c, &ChainError{Stream: stream, Revision: 0,
				Reason: fmt.Sprintf("no records, but the head is recorded at revision %d", expected.Revision)}
		}
		if err != nil {
			return c, fmt.Errorf("verify %s: %w", stream, err)
		}
		if err := c.Add(recs); err != nil {
			c.Head = nil
			return c, err
		}
		// The recorded head's record is on the page where the chain passes
		// its revision (Add checked that revisions run without gaps).
		if !matched && c.Head != nil && c.Head.Revision >= expected.Revision {
			matched = true
			r := recs[expected.Revision-recs[0].Revision]
			switch {
			case r.Hash != expected.Hash:
				return c, &ChainError{Stream: stream, Revision: r.Revision, Reason: "record differs from the recorded head"}
			case expected.Position != 0 && r.Position != expected.Position:
				return c, &ChainError{Stream: stream, Revision: r.Revision,
					Reason: fmt.Sprintf("record is at position %d, the recorded head at %d (removed and written again)", r.Position, expected.Position)}
			}
		}
		if len(recs) < page || c.Head == nil {
			break
		}
		from = c.Head.Revision + 1
	}
	if c.Head == nil {
		return c, fmt.Errorf("verify %s: %w", stream, ErrNotFound)
	}
	if !matched {
		return c, &ChainError{Stream: stream, Revision: c.Head.Revision + 1,
			Reason: fmt.Sprintf("records after revision %d are missing (head recorded at %d)", c.Head.Revision, expected.Revision)}
	}
	err := c.End() // sorts c.Erased: before c is returned
	return c, err
}
