package main

import (
	"log/slog"
	"runtime/debug"

	"github.com/council/activityhistory/projection"
)

// defaultMemoryLimit is the Go runtime's soft memory limit of a process
// whose read model is in Redis, when GOMEMLIMIT does not set one. Without
// it the heap grows to twice what is live after every burst (an array
// POST, a catch-up) and the runtime keeps those pages: at 200,000
// activities the RSS was 390 MB for under 100 MB live; with it, 200 MB.
// The in-memory read model holds every document on the heap, so it gets
// no limit (GC would run without end once the documents outgrow it).
const defaultMemoryLimit = 160 << 20

// processMemoryLimit is set by main: a soft limit is process-wide, so
// tests, which run many services in one process, leave it alone.
var processMemoryLimit bool

// setMemoryLimit applies defaultMemoryLimit, plus the page cache's budget
// when one is in front of the model, unless GOMEMLIMIT is set (the
// runtime has then read it) or the model is in memory. It returns the
// limit set, 0 when none.
func setMemoryLimit(getenv func(string) string, a *app, log *slog.Logger) int64 {
	if !processMemoryLimit || getenv("GOMEMLIMIT") != "" || a.redis == nil {
		return 0
	}
	limit := int64(defaultMemoryLimit)
	if _, ok := a.model.(*projection.PageCache); ok {
		limit += int64(a.cfg.PageCacheMB) << 20
	}
	debug.SetMemoryLimit(limit)
	log.Info("Go soft memory limit set (GOMEMLIMIT overrides it)", "mib", limit>>20)
	return limit
}
