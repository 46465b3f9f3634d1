// Package guard bounds the calls made to a dependency (the event store, the
// read model): each call gets a deadline, and a circuit breaker stops
// sending calls to a dependency that keeps failing, so a client gets a fast
// 503 rather than a hang or a pile of requests on a stalled server.
package guard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
)

// ErrUnavailable marks an error as "the dependency is down or too slow":
// the request may be retried later. Errors returned by Do wrap it when the
// call timed out, failed in the dependency, or was not tried because the
// breaker is open.
var ErrUnavailable = errors.New("dependency unavailable")

// DefaultTimeout is the deadline of one call when Options leave it zero:
// well under the HTTP server's write timeout.
const DefaultTimeout = 2 * time.Second

// Options configure a Guard.
type Options struct {
	// Name says which dependency, in errors and logs.
	Name string
	// Timeout bounds each call (DefaultTimeout when zero).
	Timeout time.Duration
	// Trips is how many failures in a row open the breaker (5 when zero).
	Trips uint32
	// OpenFor is how long the breaker stays open before letting one call
	// through to probe (1 s when zero).
	OpenFor time.Duration
	// Benign reports errors that are answers, not failures (a conflict, an
	// invalid request): they pass through unmarked and do not trip the
	// breaker. nil: every error is a failure.
	Benign func(error) bool
	// Logger logs the breaker opening and closing; nil logs nothing.
	Logger *slog.Logger
}

// Guard runs calls to one dependency.
type Guard struct {
	name    string
	timeout time.Duration
	benign  func(error) bool
	cb      *gobreaker.CircuitBreaker[struct{}]
}

// New returns a Guard.
func New(o Options) *Guard {
	g := &Guard{name: o.Name, timeout: o.Timeout, benign: o.Benign}
	if g.timeout <= 0 {
		g.timeout = DefaultTimeout
	}
	if g.benign == nil {
		g.benign = func(error) bool { return false }
	}
	trips := o.Trips
	if trips == 0 {
		trips = 5
	}
	openFor := o.OpenFor
	if openFor <= 0 {
		openFor = time.Second
	}
	g.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        o.Name,
		MaxRequests: 1,
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trips },
		IsSuccessful: func(err error) bool {
			return err == nil || g.benign(err)
		},
		// The caller going away says nothing about the dependency.
		IsExcluded: func(err error) bool { return errors.Is(err, errCallerGone) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			if o.Logger != nil {
				o.Logger.Warn("circuit breaker", "dependency", name, "from", from.String(), "to", to.String())
			}
		},
	})
	return g
}

// Timeout is the deadline each call gets.
func (g *Guard) Timeout() time.Duration { return g.timeout }

var errCallerGone = errors.New("caller gone")

// Do runs fn with a deadline of the guard's timeout (or ctx's, if sooner).
// A failure is returned wrapping ErrUnavailable; a benign error as fn
// returned it; a call the caller abandoned with ctx's error.
func (g *Guard) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	var callErr error
	_, err := g.cb.Execute(func() (struct{}, error) {
		cctx, cancel := context.WithTimeout(ctx, g.timeout)
		defer cancel()
		callErr = fn(cctx)
		if callErr != nil && ctx.Err() != nil {
			return struct{}{}, errCallerGone
		}
		return struct{}{}, callErr
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errCallerGone):
		return fmt.Errorf("%s: %w", g.name, ctx.Err())
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return fmt.Errorf("%w: %s: circuit breaker open after repeated failures", ErrUnavailable, g.name)
	case g.benign(callErr):
		return callErr
	case errors.Is(callErr, context.DeadlineExceeded):
		return fmt.Errorf("%w: %s: no answer within %s", ErrUnavailable, g.name, g.timeout)
	default:
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, g.name, callErr)
	}
}
