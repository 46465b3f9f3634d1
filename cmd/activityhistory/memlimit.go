package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/council/activityhistory/projection"
)

// defaultMemoryLimit is the floor of the Go runtime's soft memory limit
// of a process whose read model is in Redis, when GOMEMLIMIT does not set
// one. Without a limit the heap grows to twice what is live after every
// burst (an array POST, a catch-up) and the runtime keeps those pages: at
// 200,000 activities the RSS was 390 MB for about 110 MB live; with it,
// under 200 MB. The in-memory read model holds every document on the
// heap, so it gets no limit.
const defaultMemoryLimit = 160 << 20

// memoryLimitHeadroom is the limit above the live heap when that is
// larger than the floor: the embedded store's in-memory indexes grow
// with the number of activities, and a limit below what is live would
// have the collector run without pause.
const memoryLimitHeadroom = 1.5

// processMemoryLimit is set by main: a soft limit is process-wide, so
// tests, which run many services in one process, leave it alone.
var processMemoryLimit bool

// memoryLimitFloor is defaultMemoryLimit, plus the page cache's budget
// when one is in front of the model; 0 when GOMEMLIMIT is set (the
// runtime has then read it) or the model is in memory.
func memoryLimitFloor(getenv func(string) string, a *app) int64 {
	if getenv("GOMEMLIMIT") != "" || a.redis == nil {
		return 0
	}
	floor := int64(defaultMemoryLimit)
	if _, ok := a.model.(*projection.PageCache); ok {
		floor += int64(a.cfg.PageCacheMB) << 20
	}
	return floor
}

// adaptMemoryLimit keeps the soft limit at the floor or, once the live
// heap outgrows it, memoryLimitHeadroom times the live heap, re-read every
// interval, until ctx ends.
func adaptMemoryLimit(ctx context.Context, floor int64, interval time.Duration, log *slog.Logger) {
	log.Info("Go soft memory limit (GOMEMLIMIT overrides it)", "floor_mib", floor>>20)
	sample := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		metrics.Read(sample)
		debug.SetMemoryLimit(memoryLimit(floor, sample[0].Value.Uint64()))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func memoryLimit(floor int64, live uint64) int64 {
	return max(floor, int64(float64(live)*memoryLimitHeadroom))
}
