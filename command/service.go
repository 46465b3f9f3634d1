// Package command is the write side of Activity History: it validates
// activities and appends them to the event store, one stream per target.
package command

import (
	"context"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

// Appender is the part of eventstore.Store the command side uses.
type Appender interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error)
}

// DefaultConcurrency is how many targets one request appends to at once
// when Options.Concurrency is not set.
const DefaultConcurrency = 16

// Options tune the Service.
type Options struct {
	// Concurrency bounds the appends one Record call has in flight, one per
	// target; 0 means DefaultConcurrency.
	Concurrency int
}

// Service runs the write use cases.
type Service struct {
	store       Appender
	validator   *activity.Validator
	concurrency int
}

// NewService returns a Service appending to store. v validates what the
// HTTP engine (and later ingest) receives.
func NewService(store Appender, v *activity.Validator, opts Options) *Service {
	n := opts.Concurrency
	if n <= 0 {
		n = DefaultConcurrency
	}
	return &Service{store: store, validator: v, concurrency: n}
}
