package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/council/activityhistory/internal/testkit"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
)

// Binaries built once by TestMain.
var (
	serviceBin string
	natsBin    string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ah-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	serviceBin = filepath.Join(dir, "activityhistory")
	natsBin = filepath.Join(dir, "nats-server")
	code := func() int {
		defer os.RemoveAll(dir)
		for _, b := range []struct{ out, pkg string }{
			{serviceBin, "github.com/council/activityhistory/cmd/activityhistory"},
			// The server of the module the event store is tested against.
			{natsBin, "github.com/nats-io/nats-server/v2"},
		} {
			cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n", b.pkg, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// long reports whether the long forms run (AH_LONG=1, make test-long).
func long() bool { return os.Getenv("AH_LONG") == "1" }

// pick is quick in make test, long under AH_LONG=1.
func pick[T any](quick, long_ T) T {
	if long() {
		return long_
	}
	return quick
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is one process of the suite, its output kept in a file.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(t *testing.T, name, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{t: t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("last output of %s:\n%s", name, b)
		}
	})
	return p
}

func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v to %s: %v", sig, p.name, err)
	}
}

// kill9 ends the process at once, as a crash would.
func (p *proc) kill9() {
	p.signal(syscall.SIGKILL)
	<-p.done
}

// term sends SIGTERM and waits for the exit; it fails the test unless the
// process exits 0 within d.
func (p *proc) term(d time.Duration) {
	p.t.Helper()
	p.signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("%s still running %v after SIGTERM", p.name, d)
	}
	if p.err != nil {
		p.t.Fatalf("%s after SIGTERM: %v", p.name, p.err)
	}
}

// service runs the binary's serve on a fixed port, so clients keep one URL
// across restarts.
type service struct {
	t    *testing.T
	env  map[string]string
	url  string
	proc *proc
	n    int
}

func newService(t *testing.T, env map[string]string) *service {
	t.Helper()
	port := freePort(t)
	full := map[string]string{
		"HTTP_ADDR":     "127.0.0.1:" + strconv.Itoa(port),
		"AUTH_DISABLED": "true",
		"LOG_LEVEL":     "warn",
	}
	for k, v := range env {
		full[k] = v
	}
	s := &service{t: t, env: full, url: "http://127.0.0.1:" + strconv.Itoa(port)}
	s.start()
	return s
}

// start (re)starts the process and waits until it is ready.
func (s *service) start() {
	s.t.Helper()
	s.n++
	s.proc = startProc(s.t, fmt.Sprintf("service-%d", s.n), serviceBin, s.env, "serve")
	s.waitReady(90 * time.Second)
}

func (s *service) waitReady(d time.Duration) {
	s.t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	checkFor(s.t, d, func() error {
		select {
		case <-s.proc.done:
			s.t.Fatalf("%s exited while starting: %v", s.proc.name, s.proc.err)
		default:
		}
		resp, err := c.Get(s.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}

// checkFor is the shared poll of the tests.
var checkFor = testkit.CheckFor

// ledger is what the writers were told: every acknowledged activity.
type ledger struct {
	mu      sync.Mutex
	acked   map[string]string // id → targetId
	targets []string

	attempts   atomic.Int64
	unknown    atomic.Int64 // attempts with no answer or a 5xx: outcome unknown
	retried200 atomic.Int64 // retries after an unknown outcome that found the activity recorded
	statuses   sync.Map     // status → *atomic.Int64 of every non-2xx answer
}

func newLedger(targets int) *ledger {
	l := &ledger{acked: map[string]string{}}
	for range targets {
		l.targets = append(l.targets, uuid.NewString())
	}
	return l
}

func (l *ledger) count(status int) {
	v, _ := l.statuses.LoadOrStore(status, &atomic.Int64{})
	v.(*atomic.Int64).Add(1)
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *ledger) summary() string {
	var parts []string
	l.statuses.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%d×%d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(parts)
	return fmt.Sprintf("acknowledged %d, attempts %d, unknown outcomes %d (retry found it recorded: %d), other answers [%s]",
		l.ackedCount(), l.attempts.Load(), l.unknown.Load(), l.retried200.Load(), strings.Join(parts, " "))
}

// write runs n writers against url until ctx ends; each POSTs one
// activity at a time and retries it, with the same id and createdAt, until
// it is acknowledged: a dropped connection or a 503 is an unknown outcome.
// A 4xx, a 500 or a wrong answer fails the test. It returns when every
// writer has its last activity acknowledged.
func (l *ledger) write(ctx context.Context, t *testing.T, url string, n int) {
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for seq := 0; ctx.Err() == nil; seq++ {
				target := l.targets[rand.IntN(len(l.targets))]
				id := uuid.NewString()
				body, _ := json.Marshal(map[string]any{
					"id": id, "targetId": target, "type": "update", "targetType": "person",
					"createdAt": time.Now().UTC().Format(time.RFC3339Nano),
					"newData":   map[string]any{"writer": w, "seq": seq},
				})
				if !l.post(t, client, url, id, body) {
					return
				}
				l.mu.Lock()
				l.acked[id] = target
				l.mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// run starts writers (and readers, when st is not nil) in the background;
// stop ends them and waits for every writer's last activity to be
// acknowledged.
func (l *ledger) run(t *testing.T, writeURL string, writers int, readURL string, readers int, st *readStats) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { l.write(ctx, t, writeURL, writers) })
	if st != nil {
		wg.Go(func() { l.read(ctx, t, readURL, readers, st) })
	}
	return func() {
		cancel()
		wg.Wait()
	}
}

// post sends body until it is acknowledged; false when the test failed or
// it could not be within two minutes.
func (l *ledger) post(t *testing.T, client *http.Client, url, id string, body []byte) bool {
	unknown := false
	for give := time.Now().Add(2 * time.Minute); time.Now().Before(give); {
		l.attempts.Add(1)
		resp, err := client.Post(url+"/api/v1/activityHistory", "application/json", bytes.NewReader(body))
		if err != nil {
			l.unknown.Add(1)
			unknown = true
			time.Sleep(20 * time.Millisecond)
			continue
		}
		rb, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusCreated, http.StatusOK:
			var got struct{ ID string }
			if json.Unmarshal(rb, &got) != nil || got.ID != id {
				t.Errorf("POST %s answered %d with %s", id, resp.StatusCode, rb)
				return false
			}
			if resp.StatusCode == http.StatusOK {
				if !unknown {
					t.Errorf("POST of new id %s answered 200 before any unknown outcome", id)
					return false
				}
				l.retried200.Add(1)
			}
			return true
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Errorf("503 without Retry-After: %s", rb)
				return false
			}
			l.count(resp.StatusCode)
			l.unknown.Add(1)
			unknown = true
			time.Sleep(50 * time.Millisecond)
		default:
			l.count(resp.StatusCode)
			t.Errorf("POST %s: %d %s", id, resp.StatusCode, rb)
			return false
		}
	}
	t.Errorf("POST %s not acknowledged within 2 minutes", id)
	return false
}

// readStats counts what readers saw.
type readStats struct {
	ok, notFound, unavailable, other atomic.Int64
}

func (r *readStats) String() string {
	return fmt.Sprintf("reads: 200×%d 404×%d 503×%d other×%d", r.ok.Load(), r.notFound.Load(), r.unavailable.Load(), r.other.Load())
}

// read runs n readers of random targets' first pages until ctx ends: 200,
// 404 (no history yet) and 503 with Retry-After are fine; anything else,
// a 500 above all, fails the test. A dropped connection counts as 503 (the
// process is down).
func (l *ledger) read(ctx context.Context, t *testing.T, url string, n int, st *readStats) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			client := &http.Client{Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				target := l.targets[rand.IntN(len(l.targets))]
				resp, err := client.Get(url + "/api/v1/activityHistory?pageSize=20&targetId=" + target)
				if err != nil {
					st.unavailable.Add(1)
					time.Sleep(20 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					if !json.Valid(b) {
						t.Errorf("GET history: invalid JSON %q", b)
					}
					st.ok.Add(1)
				case http.StatusNotFound:
					st.notFound.Add(1)
				case http.StatusServiceUnavailable:
					if resp.Header.Get("Retry-After") == "" {
						t.Errorf("503 without Retry-After: %s", b)
					}
					st.unavailable.Add(1)
					time.Sleep(20 * time.Millisecond)
				default:
					st.other.Add(1)
					t.Errorf("GET history: %d %s", resp.StatusCode, b)
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	wg.Wait()
}

// readModel fetches every target's whole history: id → document. It waits
// until the read model holds exactly the acknowledged ids.
func (l *ledger) readModel(t *testing.T, url string) map[string]json.RawMessage {
	t.Helper()
	want := map[string]map[string]bool{}
	l.mu.Lock()
	for id, target := range l.acked {
		if want[target] == nil {
			want[target] = map[string]bool{}
		}
		want[target][id] = true
	}
	l.mu.Unlock()
	client := &http.Client{Timeout: 30 * time.Second}
	docs := map[string]json.RawMessage{}
	checkFor(t, 2*time.Minute, func() error {
		clear(docs)
		for _, target := range l.targets {
			got, err := history(client, url, target)
			if err != nil {
				return err
			}
			if len(got) != len(want[target]) {
				return fmt.Errorf("target %s: read model has %d activities, %d acknowledged", target, len(got), len(want[target]))
			}
			for id, doc := range got {
				if !want[target][id] {
					return fmt.Errorf("target %s: read model has %s, never acknowledged", target, id)
				}
				docs[id] = doc
			}
		}
		return nil
	})
	return docs
}

func history(client *http.Client, url, target string) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	next := ""
	for {
		u := url + "/api/v1/activityHistory?pageSize=1000&targetId=" + target
		if next != "" {
			u += "&paginationToken=" + next
		}
		resp, err := client.Get(u)
		if err != nil {
			return nil, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return out, nil
		}
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("GET history of %s: %d %s", target, resp.StatusCode, b)
		}
		var p struct {
			Results []json.RawMessage `json:"results"`
			Details struct {
				NextToken *string `json:"nextToken"`
			} `json:"paginationDetails"`
		}
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, err
		}
		for _, r := range p.Results {
			var a struct{ ID string }
			if err := json.Unmarshal(r, &a); err != nil {
				return nil, err
			}
			if _, dup := out[a.ID]; dup {
				return nil, fmt.Errorf("target %s: %s served twice", target, a.ID)
			}
			out[a.ID] = r
		}
		if p.Details.NextToken == nil {
			return out, nil
		}
		next = *p.Details.NextToken
	}
}

// storeAt says where the event store is: an embedded data dir, or URLs.
type storeAt struct {
	dataDir string
	urls    string
}

func (s storeAt) env() map[string]string {
	if s.urls != "" {
		return map[string]string{"EVENTSTORE_URL": s.urls}
	}
	return map[string]string{"DATA_DIR": s.dataDir}
}

// storeActivities reads every record of the store: id → activity. An id
// recorded twice fails the test.
func storeActivities(t *testing.T, at storeAt) map[string]activity.Activity {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := natsjs.Config{Replicas: 1}
	if at.urls != "" {
		cfg.URLs = strings.Split(at.urls, ",")
	} else {
		cfg.DataDir = filepath.Join(at.dataDir, "eventstore")
	}
	s, err := natsjs.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open the event store: %v", err)
	}
	defer s.Close()
	last, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]activity.Activity{}
	errDone := errors.New("done")
	err = s.Subscribe(ctx, 0, func(_ context.Context, batch []eventstore.Record) error {
		for _, r := range batch {
			a, err := activity.DecodeEvent(r.Type, r.Data)
			if err != nil {
				return fmt.Errorf("record %d: %w", r.Position, err)
			}
			if _, dup := out[a.ID]; dup {
				return fmt.Errorf("id %s recorded twice", a.ID)
			}
			out[a.ID] = a
			if r.Position >= last {
				return errDone
			}
		}
		return nil
	})
	if last > 0 && !errors.Is(err, errDone) {
		t.Fatalf("read the store: %v", err)
	}
	return out
}

// verifyAll runs `activityhistory verify --all` on the store.
func verifyAll(t *testing.T, at storeAt) {
	t.Helper()
	var env []string
	for k, v := range at.env() {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(serviceBin, "verify", "--all")
	cmd.Env = append(env, "PATH="+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("verify --all: %v\n%s", err, out)
	}
}

// checkStore compares the store with what was acknowledged and with the
// read model's documents: the same ids, the same documents, no id twice.
func (l *ledger) checkStore(t *testing.T, stored map[string]activity.Activity, docs map[string]json.RawMessage) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for id, target := range l.acked {
		a, ok := stored[id]
		if !ok {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged %s (target %s) is not in the store", id, target)
			}
			continue
		}
		if a.TargetID != target {
			t.Errorf("%s stored under %s, acknowledged for %s", id, a.TargetID, target)
		}
	}
	if lost > 0 {
		t.Fatalf("%d acknowledged writes lost", lost)
	}
	if len(stored) != len(l.acked) {
		t.Errorf("store holds %d activities, %d acknowledged", len(stored), len(l.acked))
	}
	if len(docs) != len(stored) {
		t.Errorf("read model holds %d activities, store %d", len(docs), len(stored))
	}
	for id, a := range stored {
		want, _ := json.Marshal(a)
		var x, y any
		_ = json.Unmarshal(want, &x)
		if err := json.Unmarshal(docs[id], &y); err != nil || !reflect.DeepEqual(x, y) {
			t.Errorf("%s: read model serves %s, store holds %s", id, docs[id], want)
		}
	}
}

// finish stops the writers' world and checks it: the read model against
// the acknowledged ids (while the service runs), the store against both
// (after stop, which must release the store), then verify --all.
func (l *ledger) finish(t *testing.T, readURL string, at storeAt, stop func()) {
	t.Helper()
	docs := l.readModel(t, readURL)
	stop()
	l.checkStore(t, storeActivities(t, at), docs)
	verifyAll(t, at)
	t.Logf("%s; read model and store agree; verify --all OK", l.summary())
}

// phase runs load for d, then fault, which injects one fault and returns
// once the system is meant to be back.
func phases(t *testing.T, n int, d time.Duration, fault func(i int)) {
	t.Helper()
	for i := range n {
		time.Sleep(d)
		fault(i)
	}
	time.Sleep(d)
}
