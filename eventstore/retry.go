package eventstore

import (
	"context"
	"math/rand/v2"
	"time"
)

// ConflictBackoff is a jittered pause before attempt n+1 of an append that
// lost a race for a stream's head, so that writers in different processes
// stop colliding: up to 1 ms doubling to 50 ms.
func ConflictBackoff(attempt int) time.Duration {
	ceil := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	return time.Duration(rand.Int64N(int64(ceil))) + 100*time.Microsecond
}

// Sleep waits d, or until ctx ends and returns its error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// UnavailableBackoff is the wait before the n-th retry of a call that met
// an unavailable backend: 50ms doubling to 1s, with jitter.
func UnavailableBackoff(n int) time.Duration {
	ceil := min(50*time.Millisecond<<min(n-1, 5), time.Second)
	return ceil/2 + time.Duration(rand.Int64N(int64(ceil/2)))
}
