package natsjs

import "sync"

// streamLocks serialises appends to one stream within this process, so
// local writers queue instead of failing each other's expected-sequence
// checks; different streams never wait on each other.
type streamLocks struct {
	mu sync.Mutex
	m  map[string]*streamLock
}

type streamLock struct {
	mu   sync.Mutex
	refs int
}

func (l *streamLocks) lock(stream string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*streamLock)
	}
	e := l.m[stream]
	if e == nil {
		e = &streamLock{}
		l.m[stream] = e
	}
	e.refs++
	l.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.m, stream)
		}
		l.mu.Unlock()
	}
}

// head is the last record of a stream as far as this process knows.
type head struct {
	revision uint64
	hash     string
	seq      uint64
	// kvSeq is the sequence of the head key's write that recorded this
	// head; 0 when not known to be recorded.
	kvSeq uint64
}

// headCache remembers stream heads so an append to a known stream goes
// straight to the publish; the server's expected-sequence check catches a
// stale entry. Bounded: when full, an arbitrary entry goes.
type headCache struct {
	mu  sync.Mutex
	m   map[string]head
	max int
}

func (c *headCache) get(stream string) (head, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[stream]
	return h, ok
}

func (c *headCache) put(stream string, h head) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[string]head)
	}
	if _, ok := c.m[stream]; !ok && len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[stream] = h
}

func (c *headCache) drop(stream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, stream)
}
