package main

import (
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/council/activityhistory/projection"
)

// Not parallel: the limit is process-wide.
func TestMemoryLimitDefault(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	processMemoryLimit = true
	t.Cleanup(func() { debug.SetMemoryLimit(prev); processMemoryLimit = false })
	log := slog.New(slog.DiscardHandler)
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	redisApp := &app{redis: &projection.Redis{}, cfg: config{PageCacheMB: 64}}
	redisApp.model = redisApp.redis

	if got := setMemoryLimit(env(nil), redisApp, log); got != defaultMemoryLimit || debug.SetMemoryLimit(-1) != defaultMemoryLimit {
		t.Fatalf("Redis model: limit %d (runtime %d), want %d", got, debug.SetMemoryLimit(-1), defaultMemoryLimit)
	}
	debug.SetMemoryLimit(prev)
	redisApp.model = projection.NewPageCache(redisApp.redis, 64<<20)
	if got := setMemoryLimit(env(nil), redisApp, log); got != defaultMemoryLimit+64<<20 {
		t.Fatalf("with a page cache: limit %d, want %d", got, defaultMemoryLimit+64<<20)
	}
	debug.SetMemoryLimit(prev)
	if got := setMemoryLimit(env(map[string]string{"GOMEMLIMIT": "1GiB"}), redisApp, log); got != 0 || debug.SetMemoryLimit(-1) != prev {
		t.Fatalf("GOMEMLIMIT set: limit %d, want none", got)
	}
	if got := setMemoryLimit(env(nil), &app{model: projection.NewMemory()}, log); got != 0 || debug.SetMemoryLimit(-1) != prev {
		t.Fatalf("in-memory model: limit %d, want none", got)
	}
}
