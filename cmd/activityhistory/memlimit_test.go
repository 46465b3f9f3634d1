package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"testing"
	"time"

	"github.com/council/activityhistory/projection"
)

func TestMemoryLimitFloor(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	redisApp := &app{redis: &projection.Redis{}, cfg: config{PageCacheMB: 64}}
	redisApp.model = redisApp.redis
	if got := memoryLimitFloor(env(nil), redisApp); got != defaultMemoryLimit {
		t.Errorf("Redis model: floor %d, want %d", got, defaultMemoryLimit)
	}
	redisApp.model = projection.NewPageCache(redisApp.redis, 64<<20)
	if got := memoryLimitFloor(env(nil), redisApp); got != defaultMemoryLimit+64<<20 {
		t.Errorf("with a page cache: floor %d, want %d", got, defaultMemoryLimit+64<<20)
	}
	if got := memoryLimitFloor(env(map[string]string{"GOMEMLIMIT": "1GiB"}), redisApp); got != 0 {
		t.Errorf("GOMEMLIMIT set: floor %d, want none", got)
	}
	if got := memoryLimitFloor(env(nil), &app{model: projection.NewMemory()}); got != 0 {
		t.Errorf("in-memory model: floor %d, want none", got)
	}
	// Above the floor the limit follows the live heap, so it never sits
	// below what is live.
	if got := memoryLimit(100, 50); got != 100 {
		t.Errorf("live under the floor: limit %d, want the floor", got)
	}
	if got := memoryLimit(100, 400); got != 600 {
		t.Errorf("live 400 over a floor of 100: limit %d, want 600", got)
	}
}

// Not parallel: the limit is process-wide.
func TestAdaptMemoryLimitSetsTheRuntimeLimit(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	const floor = 1 << 40 // above any live heap here
	go func() { defer close(done); adaptMemoryLimit(ctx, floor, time.Hour, slog.New(slog.DiscardHandler)) }()
	deadline := time.Now().Add(5 * time.Second)
	for debug.SetMemoryLimit(-1) != floor {
		if time.Now().After(deadline) {
			t.Fatalf("runtime limit %d, want %d", debug.SetMemoryLimit(-1), floor)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
