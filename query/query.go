// Package query is the read side of Activity History: a target's history,
// newest first and paged with opaque cursor tokens, and single activities
// by id, served from a read model over gin.
package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/council/activityhistory/activity"
)

// Reader is what the query side needs from a read model. It has the
// methods of projection.Reader, declared here so the packages stay apart.
type Reader interface {
	// Page returns one page of targetID's history, newest first, with each
	// entry's sort key (see activity.PageQuery).
	Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error)
	Get(ctx context.Context, id string) (doc []byte, found bool, err error)
	Ping(ctx context.Context) error
}

// Page sizes when Options leave them zero.
const (
	DefaultPageSize = 10
	MaxPageSize     = 1000
)

// ErrNotFound is returned when a target has no history or an id no activity.
var ErrNotFound = errors.New("not found")

// Options configure a Service.
type Options struct {
	// CursorSecret keys the MAC of pagination tokens: at least MinSecretLen
	// bytes, the same on every query process. Required.
	CursorSecret []byte
	// Validator canonicalises target ids; nil means activity's defaults
	// (UUID target ids). Pass the command side's one so both agree.
	Validator *activity.Validator
	// DefaultPageSize applies when a request gives none (10 when zero).
	DefaultPageSize int
	// MaxPageSize is the largest page a client may ask for (1000 when zero).
	MaxPageSize int
	// Applied tells how far the read model has applied the event store;
	// nil turns read-your-writes and the start gate off.
	Applied Waiter
	// StartPosition, when set, gives the event store's position as of
	// start: history and by-id reads answer ErrBehind until the read model
	// has applied it, rather than a partial history or a false not-found.
	StartPosition func(ctx context.Context) (uint64, error)
	// ReadWaitMax bounds how long a read waits for the read model
	// (DefaultReadWaitMax when zero).
	ReadWaitMax time.Duration
	// SlowQuery is the duration above which a read is logged at warn
	// (DefaultSlowQuery when zero).
	SlowQuery time.Duration
}

// DefaultSlowQuery is SLOW_QUERY_MS's default.
const DefaultSlowQuery = 200 * time.Millisecond

// Service holds the read use cases.
type Service struct {
	r               Reader
	cursors         *Cursors
	v               *activity.Validator
	defaultPageSize int
	maxPageSize     int
	progress        *progress
	slowQuery       time.Duration
}

// New returns a Service reading from r. It fails on a missing reader, a
// short secret or page sizes that contradict each other.
func New(r Reader, opts Options) (*Service, error) {
	if r == nil {
		return nil, errors.New("query: a reader is required")
	}
	cs, err := NewCursors(opts.CursorSecret)
	if err != nil {
		return nil, fmt.Errorf("query: %w", err)
	}
	s := &Service{r: r, cursors: cs, v: opts.Validator,
		defaultPageSize: opts.DefaultPageSize, maxPageSize: opts.MaxPageSize, slowQuery: opts.SlowQuery,
		progress: newProgress(opts)}
	if s.slowQuery <= 0 {
		s.slowQuery = DefaultSlowQuery
	}
	if s.v == nil {
		if s.v, err = activity.NewValidator(activity.Rules{}); err != nil {
			return nil, fmt.Errorf("query: default validator: %w", err)
		}
	}
	if s.defaultPageSize == 0 {
		s.defaultPageSize = DefaultPageSize
	}
	if s.maxPageSize == 0 {
		s.maxPageSize = MaxPageSize
	}
	if s.defaultPageSize < 1 || s.defaultPageSize > s.maxPageSize {
		return nil, fmt.Errorf("query: default page size %d is not within 1..%d", s.defaultPageSize, s.maxPageSize)
	}
	return s, nil
}

// Ping checks that the read model answers, for readiness probes.
func (s *Service) Ping(ctx context.Context) error {
	if err := s.r.Ping(ctx); err != nil {
		return fmt.Errorf("ping read model: %w", err)
	}
	return nil
}

// pageSizeMessage is the one wording of a bad pageSize, whether it failed
// to parse (handler) or is out of range (service).
func (s *Service) pageSizeMessage() string {
	return fmt.Sprintf("must be an integer from 1 to %d", s.maxPageSize)
}
