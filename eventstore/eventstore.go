// Package eventstore is the append-only store behind Activity History: one
// stream per target, every record hash-chained to the one before it, all
// streams readable in one global order. Adapters live in sub-packages.
package eventstore

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Adapters translate their backend's errors into these and
// wrap them with %w.
var (
	// ErrConflict: the stream is not at the expected revision.
	ErrConflict = errors.New("stream is not at the expected revision")
	// ErrNotFound: the stream (or record) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrDuplicateID: an event id is already recorded with other data or in
	// another stream.
	ErrDuplicateID = errors.New("event id already recorded with different data")
	// ErrTooLarge: an append holds more events or bytes than the store takes.
	ErrTooLarge = errors.New("append too large")
	// ErrInvalid: a stream name, event id or argument the store cannot take.
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the backend cannot be reached.
	ErrUnavailable = errors.New("event store unavailable")
)

// ExpectedRevision is the optimistic-concurrency expectation of an append:
// the revision of the stream's last record, or one of Any / NoStream.
type ExpectedRevision int64

const (
	// Any appends whatever the stream's state.
	Any ExpectedRevision = -2
	// NoStream requires the stream not to exist yet.
	NoStream ExpectedRevision = -1
)

// At expects the stream's last record to be at revision r.
func At(r uint64) ExpectedRevision { return ExpectedRevision(r) }

// Limits every adapter accepts at least; the conformance suite checks them.
const (
	MaxEventsPerAppend = 500
	MaxEventBytes      = 256 << 10
	MaxStreamNameLen   = 128
	MaxEventIDLen      = 128
	MaxEventTypeLen    = 256 // types travel in headers or metadata
)

// Event is what a writer appends.
type Event struct {
	ID   string // unique across the store; retries reuse it
	Type string
	Data []byte
}

// Record is an event as stored.
type Record struct {
	ID         string
	Type       string
	Stream     string
	Revision   uint64 // per stream, 0-based
	Position   uint64 // global, strictly increasing, starts at 1; may have gaps
	RecordedAt time.Time
	Data       []byte
	PrevHash   string // hex SHA-256; GenesisHash for revision 0
	Hash       string // hex SHA-256(prevHash ‖ canonical event bytes)
	Version    int    // chain form: ChainV2, or 0/ChainV1 (see chain.go)
	Digest     string // hex SHA-256 of the removed Data, on erased records
	Erased     bool   // Data was removed; Digest and the rest remain
}

// AppendResult tells where an append landed.
type AppendResult struct {
	// Records holds one record per event, in the order given. An event
	// already recorded in the stream with the same type and data is not
	// written again: its original record is returned.
	Records []Record
	// Appended counts the events this call wrote; 0 when every event was
	// already recorded (a retry).
	Appended int
}

// Position is the highest global position among the records.
func (r AppendResult) Position() uint64 {
	var p uint64
	for _, rec := range r.Records {
		p = max(p, rec.Position)
	}
	return p
}

// Handler receives records in global order, in batches. Returning an error
// stops the subscription with that error.
type Handler func(ctx context.Context, batch []Record) error

// Store is the event store contract.
type Store interface {
	// Append writes events to the end of one stream, all or nothing.
	// Events whose id is already recorded in that stream with the same type
	// and data are skipped and their original records returned; when all
	// are, nothing is written and expected is not checked. An id recorded
	// with other data or in another stream gives ErrDuplicateID; a stream
	// not at the expected revision gives ErrConflict.
	Append(ctx context.Context, stream string, expected ExpectedRevision, events ...Event) (AppendResult, error)
	// Read returns up to limit records of a stream from revision from, in
	// order; ErrNotFound when the stream has no records.
	Read(ctx context.Context, stream string, from uint64, limit int) ([]Record, error)
	// Subscribe calls h with every record whose Position is greater than
	// after, in global order and in batches, then follows new records live
	// until ctx ends or h fails. It returns ctx.Err() or h's error.
	Subscribe(ctx context.Context, after uint64, h Handler) error
}

// Head is the last record of a stream: what the chain must continue from.
type Head struct {
	Stream   string
	Revision uint64
	Hash     string
	Position uint64
}
