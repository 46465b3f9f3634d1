package guard_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/council/activityhistory/guard"
)

var errAnswer = errors.New("conflict")

func newGuard() *guard.Guard {
	return guard.New(guard.Options{Name: "dep", Timeout: 50 * time.Millisecond, Trips: 3, OpenFor: time.Hour,
		Benign: func(err error) bool { return errors.Is(err, errAnswer) }})
}

// A call past its deadline is ErrUnavailable; after Trips failures in a
// row the breaker opens and calls are refused without being made.
func TestDeadlineAndBreaker(t *testing.T) {
	t.Parallel()
	g := newGuard()
	stall := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	for i := range 3 {
		if err := g.Do(context.Background(), stall); !errors.Is(err, guard.ErrUnavailable) {
			t.Fatalf("call %d past its deadline: %v", i, err)
		}
	}
	called := false
	err := g.Do(context.Background(), func(context.Context) error { called = true; return nil })
	if !errors.Is(err, guard.ErrUnavailable) || called {
		t.Fatalf("breaker open: err %v, called %v", err, called)
	}
}

// Answers of the dependency pass through unmarked and do not trip the
// breaker; neither does a caller that goes away.
func TestAnswersAndCallersGoneDoNotTrip(t *testing.T) {
	t.Parallel()
	g := newGuard()
	for range 5 {
		if err := g.Do(context.Background(), func(context.Context) error { return errAnswer }); err != errAnswer {
			t.Fatalf("benign error changed: %v", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 5 {
		err := g.Do(ctx, func(ctx context.Context) error { return ctx.Err() })
		if !errors.Is(err, context.Canceled) || errors.Is(err, guard.ErrUnavailable) {
			t.Fatalf("abandoned call: %v", err)
		}
	}
	if err := g.Do(context.Background(), func(context.Context) error { return nil }); err != nil {
		t.Fatalf("breaker tripped by answers or abandoned calls: %v", err)
	}
	down := errors.New("connection refused")
	if err := g.Do(context.Background(), func(context.Context) error { return down }); !errors.Is(err, guard.ErrUnavailable) || !errors.Is(err, down) {
		t.Fatalf("failure: %v, want ErrUnavailable wrapping the cause", err)
	}
}
