package esdb

import (
	"context"
	"sync"
)

// streamLocks serialises appends to one stream within this process, so
// local writers queue instead of failing each other's expected-revision
// checks; different streams never wait on each other. Writers in other
// processes are still kept apart by the server's check.
type streamLocks struct {
	mu sync.Mutex
	m  map[string]*streamLock
}

type streamLock struct {
	ch   chan struct{} // holds a token while locked
	refs int
}

// lock waits for stream's lock or for ctx to end.
func (l *streamLocks) lock(ctx context.Context, stream string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*streamLock)
	}
	e := l.m[stream]
	if e == nil {
		e = &streamLock{ch: make(chan struct{}, 1)}
		l.m[stream] = e
	}
	e.refs++
	l.mu.Unlock()
	release := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, stream)
		}
		l.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		return func() { <-e.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
