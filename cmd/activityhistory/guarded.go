package main

import (
	"context"
	"errors"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/guard"
	"github.com/council/activityhistory/query"
)

// guardedReader gives every read-model call of the query side a deadline
// and a circuit breaker.
type guardedReader struct {
	r query.Reader
	g *guard.Guard
}

func (gr guardedReader) Page(ctx context.Context, targetID string, q activity.PageQuery) (p activity.Page, err error) {
	err = gr.g.Do(ctx, func(ctx context.Context) error {
		var err error
		p, err = gr.r.Page(ctx, targetID, q)
		return err
	})
	return p, err
}

func (gr guardedReader) Get(ctx context.Context, id string) (doc []byte, found bool, err error) {
	err = gr.g.Do(ctx, func(ctx context.Context) error {
		var err error
		doc, found, err = gr.r.Get(ctx, id)
		return err
	})
	return doc, found, err
}

func (gr guardedReader) Ping(ctx context.Context) error { return gr.g.Do(ctx, gr.r.Ping) }

var _ query.Reader = guardedReader{}

// guardedAppender gives every append of the command side a deadline and a
// circuit breaker. A deadline passing mid-append leaves its outcome unknown:
// the client retries with the same ids (README, "Unknown outcome").
type guardedAppender struct {
	s command.Appender
	g *guard.Guard
}

func (ga guardedAppender) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (res eventstore.AppendResult, err error) {
	err = ga.g.Do(ctx, func(ctx context.Context) error {
		var err error
		res, err = ga.s.Append(ctx, stream, expected, events...)
		return err
	})
	return res, err
}

var _ command.Appender = guardedAppender{}

// storeAnswer tells the store's answers about a request (a conflict, an
// invalid or too large append) from its failures.
func storeAnswer(err error) bool {
	return errors.Is(err, eventstore.ErrConflict) || errors.Is(err, eventstore.ErrDuplicateID) ||
		errors.Is(err, eventstore.ErrInvalid) || errors.Is(err, eventstore.ErrTooLarge) ||
		errors.Is(err, eventstore.ErrNotFound)
}
