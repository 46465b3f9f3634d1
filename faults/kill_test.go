package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/council/activityhistory/projection/redistest"
)

// kill -9 of the all-in-one process while writers POST: every write it
// acknowledged is in the store after the restart, once; a write it never
// answered is retried with the same id and createdAt and lands once.
func TestKill9AllInOne(t *testing.T) {
	t.Parallel()
	for _, model := range []string{"memory", "redis"} {
		t.Run(model, func(t *testing.T) {
			t.Parallel()
			at := storeAt{dataDir: t.TempDir()}
			env := at.env()
			if model == "redis" {
				env["REDIS_URL"] = redistest.StartServer(t).URL()
			}
			s := newService(t, env)
			l := newLedger(pick(20, 200))
			stop := l.run(t, s.url, pick(4, 16), "", 0, nil)
			kills := pick(2, 5)
			phases(t, kills, pick(1500*time.Millisecond, 12*time.Second), func(int) {
				s.proc.kill9()
				s.start()
			})
			stop()
			if t.Failed() {
				return
			}
			l.finish(t, s.url, at, func() { s.proc.term(30 * time.Second) })
			t.Logf("kill -9 ×%d (%s read model)", kills, model)
			logFigure(t, fmt.Sprintf("kill -9 all-in-one, %s", model), kills, l)
		})
	}
}
