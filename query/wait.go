package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Waiter waits until the read model has applied a global position of the
// event store (or ctx ends).
type Waiter interface {
	WaitFor(ctx context.Context, position uint64) error
}

// DefaultReadWaitMax bounds how long a read waits for the read model.
const DefaultReadWaitMax = 2 * time.Second

// ErrBehind is returned when the read model has not applied the position
// a read needs within the wait bound: the one the client asked for, or
// the store's position as of start.
var ErrBehind = errors.New("the read model has not caught up")

// progress is the read side's view of how far the read model has applied.
type progress struct {
	applied Waiter
	waitMax time.Duration
	start   func(ctx context.Context) (uint64, error)

	once     sync.Once
	known    chan struct{} // closed once floor is set
	floor    uint64        // the store's position as of start
	caughtUp atomic.Bool   // the read model has applied floor
}

func newProgress(opts Options) *progress {
	p := &progress{applied: opts.Applied, waitMax: opts.ReadWaitMax, start: opts.StartPosition, known: make(chan struct{})}
	if p.waitMax <= 0 {
		p.waitMax = DefaultReadWaitMax
	}
	if p.start == nil || p.applied == nil {
		p.caughtUp.Store(true)
	}
	return p
}

// learnFloor reads the store's position as of start, retrying until it
// has it: reads wait for it (bounded) rather than serve a partial model.
func (p *progress) learnFloor() {
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		pos, err := p.start(ctx)
		cancel()
		if err == nil {
			p.floor = pos
			close(p.known)
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 2*time.Second)
	}
}

// Await returns once the read model has applied minPosition and the
// store's position as of start, waiting at most the configured bound;
// past it, ErrBehind. It costs nothing once both are known to be applied.
func (s *Service) Await(ctx context.Context, minPosition uint64) error {
	p := s.progress
	if p.applied == nil || (minPosition == 0 && p.caughtUp.Load()) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, p.waitMax)
	defer cancel()
	target := minPosition
	if !p.caughtUp.Load() {
		p.once.Do(func() { go p.learnFloor() })
		select {
		case <-p.known:
		case <-ctx.Done():
			return behind(ctx, "the event store's position as of start is not known yet")
		}
		target = max(target, p.floor)
	}
	if err := p.applied.WaitFor(ctx, target); err != nil {
		if ctx.Err() != nil {
			return behind(ctx, fmt.Sprintf("position %d is not applied yet", target))
		}
		return fmt.Errorf("wait for position %d: %w", target, err)
	}
	if !p.caughtUp.Load() && target >= p.floor {
		p.caughtUp.Store(true)
	}
	return nil
}

// behind is ErrBehind, unless the caller itself went away.
func behind(ctx context.Context, why string) error {
	if errors.Is(context.Cause(ctx), context.Canceled) {
		return ctx.Err()
	}
	return fmt.Errorf("%w: %s", ErrBehind, why)
}

// ParsePosition reads a minPosition value.
func ParsePosition(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, errors.New("must be a non-negative integer (the X-Activity-Position of a write)")
	}
	return n, nil
}
