// Package projection builds the read models of Activity History from the
// event store: the projector follows every stream in global order and
// applies batches to a ReadModel (Redis, or in memory for the embedded
// default), which then serves the query side.
package projection

import (
	"context"

	"github.com/council/activityhistory/activity"
)

// ReadModel is what the projector writes to.
type ReadModel interface {
	// Apply records a batch of activities and moves the checkpoint to
	// position. Applying an activity again changes nothing.
	// The checkpoint is written only after the batch is recorded and never
	// moves backwards (an older position still records the activities), so
	// a batch cut short by a crash is simply applied again.
	Apply(ctx context.Context, position uint64, acts []activity.Activity) error
	// Checkpoint is the position of the last applied batch, 0 when empty.
	Checkpoint(ctx context.Context) (uint64, error)
}

// Reader is what the query side reads; both read models implement it.
//
//	Page returns one page of a target's history, newest first by
//	(createdAt, id), each entry with its sort key: see activity.PageQuery.
//	An unfiltered or date-bounded page is one round trip to the backend;
//	a page filtered on type or sourceDomain examines at most MaxScan
//	entries (DefaultMaxScan when 0), still in one round trip.
//
//	Get returns one activity document by id.
type Reader interface {
	Page(ctx context.Context, targetID string, q activity.PageQuery) (activity.Page, error)
	Get(ctx context.Context, id string) (doc []byte, found bool, err error)
	Ping(ctx context.Context) error
}

// DefaultMaxScan bounds the entries one filtered page call examines when
// the query gives no bound: it keeps one call's work on the backend short.
const DefaultMaxScan = 1000

// scanBudget is how many entries a page call may examine: exactly the
// limit without per-entry checks, else q.MaxScan (at least the limit).
func scanBudget(q activity.PageQuery) int {
	if !entryChecks(q.Filter) {
		return q.Limit
	}
	n := q.MaxScan
	if n <= 0 {
		n = DefaultMaxScan
	}
	return max(n, q.Limit)
}

// entryChecks reports whether f needs each entry examined (not just a key
// range).
func entryChecks(f activity.Filter) bool {
	return len(f.Types) > 0 || len(f.TargetTypes) > 0 || len(f.SourceDomains) > 0
}
