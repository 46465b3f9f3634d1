package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/eventstore"
)

// lazyStore opens the event store at its first use and keeps it. A
// query-only process serves history from the read model alone, so it must
// start, and stay ready, while the store is down; only the audit routes,
// which read the store, wait for it (and fail while it is unreachable).
type lazyStore struct {
	open func(context.Context) (store, error)

	mu    sync.Mutex
	s     store
	heads audit.Heads
	log   audit.Log
}

// errNoCapability: the store that was opened lacks what wiring expected.
var errNoCapability = errors.New("the event store lacks this capability")

func (l *lazyStore) get(ctx context.Context) (*lazyStore, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		s, err := l.open(ctx)
		if err != nil {
			return nil, err
		}
		l.s = s
		l.heads, _ = s.(audit.Heads)
		l.log, _ = s.(audit.Log)
	}
	return l, nil
}

// Close closes the store if it was opened.
func (l *lazyStore) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.s == nil {
		return nil
	}
	return l.s.Close()
}

func (l *lazyStore) Read(ctx context.Context, stream string, from uint64, limit int) ([]eventstore.Record, error) {
	o, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	return o.s.Read(ctx, stream, from, limit)
}

func (l *lazyStore) Head(ctx context.Context, stream string) (*eventstore.Head, error) {
	o, err := l.get(ctx)
	if err != nil {
		return nil, err
	}
	if o.heads == nil {
		return nil, fmt.Errorf("head of %s: %w", stream, errNoCapability)
	}
	return o.heads.Head(ctx, stream)
}

func (l *lazyStore) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	o, err := l.get(ctx)
	if err != nil {
		return err
	}
	return o.s.Subscribe(ctx, after, h)
}

func (l *lazyStore) LastPosition(ctx context.Context) (uint64, error) {
	o, err := l.get(ctx)
	if err != nil {
		return 0, err
	}
	if o.log == nil {
		return 0, fmt.Errorf("last position: %w", errNoCapability)
	}
	return o.log.LastPosition(ctx)
}

func (l *lazyStore) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error) {
	o, err := l.get(ctx)
	if err != nil {
		return eventstore.AppendResult{}, err
	}
	return o.s.Append(ctx, stream, expected, events...)
}

func (l *lazyStore) ErasePayloads(ctx context.Context, recs []eventstore.Record) error {
	o, err := l.get(ctx)
	if err != nil {
		return err
	}
	e, ok := o.s.(audit.Eraser)
	if !ok {
		return audit.ErrNoErasure
	}
	return e.ErasePayloads(ctx, recs)
}
