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
//	Page returns up to limit activity documents (API JSON) of a target,
//	newest first by (createdAt, id), starting strictly below the sort key
//	before ("" = from the newest). found reports whether the target has
//	any history at all. It is one round trip to the backend.
//
//	Get returns one activity document by id.
type Reader interface {
	Page(ctx context.Context, targetID, before string, limit int) (docs [][]byte, found bool, err error)
	Get(ctx context.Context, id string) (doc []byte, found bool, err error)
	Ping(ctx context.Context) error
}
