package ingest

import (
	"context"
	"errors"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/eventstore"
)

// Result is what handling one event came to; the values label the
// messages metric.
type Result string

// The results of handling an event.
const (
	Recorded     Result = "recorded"      // a new activity
	Duplicate    Result = "duplicate"     // its activity was already recorded
	Ignored      Result = "ignored"       // the mapping ignores its type
	DeadLettered Result = "dead_lettered" // it can never become an activity
	Retried      Result = "retried"       // not now: the store is unavailable; try again
)

// Recorder records activities: command.Service, the one write path of
// HTTP POSTs and ingest alike.
type Recorder interface {
	Record(ctx context.Context, acts []activity.Activity) (command.Result, error)
}

// Outcome is the result of handling one event.
type Outcome struct {
	Result      Result
	Translation Translation
	// Rejection says why, when Result is DeadLettered.
	Rejection *Rejection
	// Err is the cause when Result is Retried.
	Err error
}

// Processor handles events: translate, then record.
type Processor struct {
	t   *Translator
	rec Recorder
}

// NewProcessor returns a Processor recording through rec.
func NewProcessor(t *Translator, rec Recorder) *Processor {
	return &Processor{t: t, rec: rec}
}

// Process handles the event in data. Only a Retried outcome may succeed
// another time.
func (p *Processor) Process(ctx context.Context, data []byte) Outcome {
	tr, err := p.t.Translate(data)
	var rej *Rejection
	if errors.As(err, &rej) {
		return Outcome{Result: DeadLettered, Translation: tr, Rejection: rej}
	}
	if tr.Activity == nil {
		return Outcome{Result: Ignored, Translation: tr}
	}
	res, err := p.rec.Record(ctx, []activity.Activity{*tr.Activity})
	switch {
	case err == nil && res.AllRecorded:
		return Outcome{Result: Duplicate, Translation: tr}
	case err == nil:
		return Outcome{Result: Recorded, Translation: tr}
	}
	if rej := permanent(err); rej != nil {
		return Outcome{Result: DeadLettered, Translation: tr, Rejection: rej}
	}
	// Unavailable, contended, cancelled or unknown: never dead-lettered,
	// since nothing says another try would fail too.
	return Outcome{Result: Retried, Translation: tr, Err: err}
}

// permanent returns the rejection of a record error that no retry can fix;
// nil for any other.
func permanent(err error) *Rejection {
	var ce *command.ConflictError
	var ve *activity.ValidationError
	switch {
	case errors.As(err, &ce):
		return reject(ReasonConflict, "id", "its activity id "+ce.ID+" is already recorded with different content: the event id was reused")
	case errors.As(err, &ve):
		return &Rejection{Reason: ReasonInvalid, Fields: eventFields(ve.Fields)}
	case errors.Is(err, eventstore.ErrTooLarge):
		return reject(ReasonInvalid, "eventData", "is too large for the event store")
	case errors.Is(err, eventstore.ErrInvalid):
		return reject(ReasonInvalid, "entityId", "the event store cannot take it")
	}
	return nil
}
