package faults

import (
	"testing"
	"time"

	"github.com/council/activityhistory/projection/redistest"
)

// The Redis read model stalled (SIGSTOP) and killed and restarted while
// clients write and read: writes keep being acknowledged (they need only
// the event store), reads answer 503 with Retry-After while Redis is away
// — never a 500 or a hang — and the projector catches up once it is back.
func TestRedisStalledAndRestarted(t *testing.T) {
	t.Parallel()
	rs := redistest.StartServer(t)
	at := storeAt{dataDir: t.TempDir()}
	env := at.env()
	env["REDIS_URL"] = rs.URL()
	env["DEPENDENCY_TIMEOUT"] = "500ms"
	s := newService(t, env)
	l := newLedger(pick(20, 200))
	var reads readStats
	stop := l.run(t, s.url, pick(3, 12), s.url, pick(3, 8), &reads)
	faults := pick(1, 3)
	away := pick(2*time.Second, 5*time.Second)
	phases(t, faults, pick(1500*time.Millisecond, 10*time.Second), func(int) {
		rs.Stall()
		time.Sleep(away)
		rs.Resume()
		time.Sleep(pick(1500*time.Millisecond, 10*time.Second))
		rs.Kill()
		time.Sleep(away)
		rs.Start()
	})
	stop()
	if t.Failed() {
		return
	}
	if reads.unavailable.Load() == 0 {
		t.Errorf("no read answered 503 while Redis was away (%s)", &reads)
	}
	t.Logf("Redis stalled ×%d and killed ×%d for %v each; %s", faults, faults, away, &reads)
	l.finish(t, s.url, at, func() { s.proc.term(30 * time.Second) })
	logFigure(t, "Redis stalled (SIGSTOP) and killed + restarted", 2*faults, l)
}
