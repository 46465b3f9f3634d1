package faults

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/council/activityhistory/projection/redistest"
)

// natsServer is an external nats-server process with JetStream, on fixed
// ports and a store dir that outlive a kill.
type natsServer struct {
	t         *testing.T
	port, mon int
	dir       string
	proc      *proc
	n         int
}

func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, port: freePort(t), mon: freePort(t), dir: t.TempDir()}
	ns.start()
	return ns
}

func (ns *natsServer) url() string { return "nats://127.0.0.1:" + strconv.Itoa(ns.port) }

func (ns *natsServer) start() {
	ns.t.Helper()
	ns.n++
	ns.proc = startProc(ns.t, fmt.Sprintf("nats-%d", ns.n), natsBin, nil,
		"-js", "-sd", filepath.Join(ns.dir, "js"), "-a", "127.0.0.1",
		"-p", strconv.Itoa(ns.port), "-m", strconv.Itoa(ns.mon))
	c := &http.Client{Timeout: 2 * time.Second}
	checkFor(ns.t, 30*time.Second, func() error {
		resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(ns.mon) + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
}

// The external NATS server killed (-9, then restarted on its store) and
// stalled (SIGSTOP) while a command process and a query+projector process
// serve writers and readers: writes answer 503 or drop while it is away and
// are retried; nothing acknowledged is lost; the projector resumes.
func TestNATSKilledAndStalledSplitRoles(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	rs := redistest.StartServer(t)
	at := storeAt{urls: ns.url()}
	cmdEnv := map[string]string{"ROLES": "command", "EVENTSTORE_URL": ns.url(), "DATA_DIR": t.TempDir(), "DEPENDENCY_TIMEOUT": "1s"}
	qryEnv := map[string]string{"ROLES": "query,projector", "EVENTSTORE_URL": ns.url(), "REDIS_URL": rs.URL(), "DATA_DIR": t.TempDir()}
	writer := newService(t, cmdEnv)
	reader := newService(t, qryEnv)

	l := newLedger(pick(20, 200))
	var reads readStats
	stop := l.run(t, writer.url, pick(3, 12), reader.url, pick(2, 6), &reads)
	faults := pick(1, 3)
	away := pick(2*time.Second, 4*time.Second)
	load := pick(1500*time.Millisecond, 10*time.Second)
	phases(t, faults, load, func(int) {
		ns.proc.kill9()
		time.Sleep(away)
		ns.start()
		time.Sleep(load)
		ns.proc.signal(syscall.SIGSTOP)
		time.Sleep(away)
		ns.proc.signal(syscall.SIGCONT)
	})
	stop()
	if t.Failed() {
		return
	}
	t.Logf("NATS killed ×%d and stalled ×%d for %v each; %s", faults, faults, away, &reads)
	l.finish(t, reader.url, at, func() {
		writer.proc.term(30 * time.Second)
		reader.proc.term(30 * time.Second)
	})
	logFigure(t, "external NATS killed -9 + restarted, and stalled (split roles)", 2*faults, l)
}
