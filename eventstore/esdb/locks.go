package esdb

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
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

// backoff is a jittered pause before attempt n+1 after a refused write,
// so that writers in different processes stop colliding.
func backoff(attempt int) time.Duration {
	ceil := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	return time.Duration(rand.Int64N(int64(ceil))) + 100*time.Microsecond
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
