// Package background runs the service's periodic jobs (retention sweeps and
// erasures) with one loop.
package background

import (
	"context"
	"time"
)

// Loop calls step every interval until ctx ends. After a step that
// reports more work waiting (it did a full batch) the next comes after
// soon instead, so a backlog drains without any one step being long.
func Loop(ctx context.Context, interval, soon time.Duration, step func(context.Context) (more bool)) {
	wait := interval
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = interval
		if step(ctx) {
			wait = soon
		}
	}
}
