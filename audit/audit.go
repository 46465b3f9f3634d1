// Package audit serves what auditors and analysts read straight from the
// event store: a target's raw stream (replay), its hash-chain verification,
// and an export of every activity in store order for reporting tools.
// It is mounted on the query engine; the read model plays no part.
package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/query"
)

// Streams reads one stream of the event store.
type Streams interface {
	Read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error)
}

// Heads returns the head recorded for a stream outside it, so that removal
// of the newest records is found; eventstore.ErrNotFound when none is.
type Heads interface {
	Head(ctx context.Context, stream string) (*eventstore.Head, error)
}

// Log is the store's global order: every stream from a position, and the
// position of the last record.
type Log interface {
	Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error
	LastPosition(ctx context.Context) (uint64, error)
}

// Store is what the service reads. Heads and Log are optional: without
// Heads a stream is verified by its chain alone; without Log there is no
// export.
type Store struct {
	Streams Streams
	Heads   Heads
	Log     Log
}

// ErrNoExport is returned by Export when the store cannot serve one.
var ErrNoExport = errors.New("this event store cannot serve an export (it cannot tell its last position)")

// Options configure a Service.
type Options struct {
	// Cursors sign pagination tokens (the query side's, so one secret).
	Cursors *query.Cursors
	// Validator canonicalises target ids and checks filters.
	Validator *activity.Validator
	// Now is the clock an export judges expiry by (nil: time.Now).
	Now func() time.Time
}

// Service holds the audit and export use cases.
type Service struct {
	st      Store
	cursors *query.Cursors
	v       *activity.Validator
	now     func() time.Time
}

// New returns a Service over st.
func New(st Store, opts Options) (*Service, error) {
	if st.Streams == nil {
		return nil, errors.New("audit: a stream reader is required")
	}
	if opts.Cursors == nil || opts.Validator == nil {
		return nil, errors.New("audit: cursors and a validator are required")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, cursors: opts.Cursors, v: opts.Validator, now: now}, nil
}

// targetID checks a target id from a path, naming the field on error.
func (s *Service) targetID(raw string) (string, error) {
	tid, err := s.v.TargetID(raw)
	if err != nil {
		return "", activity.Invalid("targetId", err.Error())
	}
	return tid, nil
}

// storeErr turns the store's not-found into the query side's, so that the
// one error mapping answers it with 404.
func storeErr(what string, err error) error {
	if errors.Is(err, eventstore.ErrNotFound) {
		return fmt.Errorf("%s: %w", what, query.ErrNotFound)
	}
	return fmt.Errorf("%s: %w", what, err)
}
