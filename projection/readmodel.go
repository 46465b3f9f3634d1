// Package projection builds the read models of Activity History from the
// event store: the projector follows every stream in global order and
// applies batches to a ReadModel (Redis, or in memory for the embedded
// default), which then serves the query side.
package projection

import (
	"context"
	"time"

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
	// Forget removes the activities from the read model (documents and every index entry) and moves the checkpoint
	// to position as Apply does. Unknown ids are ignored; forgetting again changes nothing.
	Forget(ctx context.Context, position uint64, targetID string, ids []string) error
	// Expired lists at most limit activities expired at now (see
	// activity.Expired), soonest expired first, grouped by target: what
	// the sweeper forgets.
	Expired(ctx context.Context, now time.Time, limit int) ([]Expired, error)
}

// Expired names expired activities of one target.
type Expired struct {
	TargetID string
	IDs      []string
}

// expiredGroups groups expired activities by target, in order of first
// appearance, so that each target is forgotten in one call.
type expiredGroups struct {
	out []Expired
	at  map[string]int
}

func (g *expiredGroups) add(target, id string) {
	if g.at == nil {
		g.at = map[string]int{}
	}
	i, ok := g.at[target]
	if !ok {
		i = len(g.out)
		g.at[target] = i
		g.out = append(g.out, Expired{TargetID: target})
	}
	g.out[i].IDs = append(g.out[i].IDs, id)
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
//
//	Neither returns an activity expired at the model's clock: a page
//	skips it (and is still full while live entries remain; a target whose
//	every entry expired is not found), Get does not find it.
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
// Skipping expired entries is such a check, on a target that has any.
func scanBudget(q activity.PageQuery, expiring bool) int {
	if !expiring && !entryChecks(q.Filter) {
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
