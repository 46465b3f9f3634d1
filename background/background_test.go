package background

import (
	"context"
	"testing"
	"time"
)

// A step with more work waiting is followed soon; an idle one waits the
// interval; the loop ends with its context.
func TestLoop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var at []time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, time.Hour, time.Millisecond, func(context.Context) bool {
			at = append(at, time.Now())
			if len(at) == 3 {
				cancel()
			}
			return true
		})
	}()
	select {
	case <-done:
		t.Fatal("loop stepped before its first interval")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	<-done
	if len(at) != 0 {
		t.Fatalf("%d steps before the first interval of an hour", len(at))
	}

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done = make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, time.Millisecond, time.Millisecond, func(context.Context) bool {
			at = append(at, time.Now())
			if len(at) == 3 {
				cancel()
			}
			return len(at) < 2
		})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("loop did not end with its context")
	}
	if len(at) != 3 {
		t.Fatalf("%d steps, want 3", len(at))
	}
}
