package projection_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/council/activityhistory/internal/testkit"
	"github.com/council/activityhistory/internal/testkit/natstest"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

// The test binary doubles as a projector process: with childEnv set,
// TestMain runs one (until killed) instead of the tests.
const childEnv = "AH_TEST_PROJECTOR"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

// runChild is a projector process: the JetStream at AH_TEST_NATS, Redis at
// REDIS_URL under AH_TEST_PREFIX, with a lease of AH_TEST_LEASE_TTL.
func runChild() int {
	ctx := context.Background()
	store, err := natsjs.Open(ctx, natsjs.Config{URLs: []string{os.Getenv("AH_TEST_NATS")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: open store:", err)
		return 1
	}
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	model := projection.NewRedis(redis.NewClient(opt), os.Getenv("AH_TEST_PREFIX"))
	ttl, _ := time.ParseDuration(os.Getenv("AH_TEST_LEASE_TTL"))
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	p := projection.NewProjector(store, model, projection.ProjectorOptions{
		Logger: log,
		Lease:  projection.NewRedisLease(model, ttl, fmt.Sprintf("child/%d", os.Getpid()), log),
	})
	_ = p.Run(ctx)
	return 0
}

// shared is what a test and its projector processes share: a JetStream
// server (its URL and a store on it) and a Redis read model.
func shared(t *testing.T) (string, *natsjs.Store, *redis.Client, string, *projection.Redis) {
	t.Helper()
	natsURL := natsServer(t)
	store, err := natsjs.Open(context.Background(), natsjs.Config{URLs: []string{natsURL}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	c, prefix := redistest.Client(t)
	return natsURL, store, c, prefix, projection.NewRedis(c, prefix)
}

// natsServer runs a JetStream server for child processes to share.
func natsServer(t *testing.T) string { return natstest.StartServer(t).ClientURL() }

type child struct {
	cmd  *exec.Cmd
	logs *syncBuffer
}

// startChild starts a projector process; it is killed at cleanup.
func startChild(t *testing.T, natsURL, prefix string, ttl time.Duration) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), childEnv+"=1", "AH_TEST_NATS="+natsURL,
		"AH_TEST_PREFIX="+prefix, "AH_TEST_LEASE_TTL="+ttl.String(), "REDIS_URL="+redisURL())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, logs: logs}
	t.Cleanup(func() { c.kill() })
	return c
}

func (c *child) kill() {
	if c.cmd.ProcessState == nil {
		_ = c.cmd.Process.Signal(syscall.SIGKILL)
		_ = c.cmd.Wait()
	}
}

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// sameAsStore checks that the read model holds exactly the store's
// activities: every target's pages in order, each document exact, each id
// once, and nothing more.
func sameAsStore(t *testing.T, r *projection.Redis, c *redis.Client, prefix string, acts []activity.Activity) {
	t.Helper()
	byTarget := map[string][]activity.Activity{}
	for _, a := range acts {
		byTarget[a.TargetID] = append(byTarget[a.TargetID], a)
	}
	for target, want := range byTarget {
		got := pages(t, r, target)
		if len(got) != len(want) {
			t.Fatalf("target %s: %d documents, want %d", target, len(got), len(want))
		}
		wantDocs := map[string]string{}
		for _, a := range want {
			b, _ := a.MarshalJSON()
			wantDocs[a.ID] = string(b)
		}
		seen := map[string]bool{}
		for _, d := range got {
			id := ids(t, [][]byte{d})[0]
			if seen[id] {
				t.Fatalf("target %s: %s twice", target, id)
			}
			seen[id] = true
			if wantDocs[id] != string(d) {
				t.Fatalf("target %s: document %s\n got %s\nwant %s", target, id, d, wantDocs[id])
			}
		}
	}
	ctx := context.Background()
	n := 0
	iter := c.Scan(ctx, 0, prefix+"id:*", 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if n != len(acts) {
		t.Fatalf("%d id keys, want %d", n, len(acts))
	}
}

// load records n activities over targets, up to 1000 per round of appends.
func load(t *testing.T, s eventstore.Store, first, n, targets int) []activity.Activity {
	t.Helper()
	base := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	acts := make([]activity.Activity, n)
	for i := range acts {
		k := first + i
		acts[i] = readmodeltest.Activity(fmt.Sprintf("target-%02d", k%targets), k, base.Add(time.Duration(k)*time.Second))
	}
	for i := 0; i < n; i += 1000 {
		record(t, s, acts[i:min(i+1000, n)])
	}
	return acts
}

// Kill -9 the projector at random moments, mid-batch included, while it
// catches up: after a restart that runs to the end, the read model is the
// store's, with nothing missing and nothing twice.
func TestProjectorCrashSafety(t *testing.T) {
	t.Parallel()
	natsURL, store, c, prefix, model := shared(t)
	n, kills := 8000, 5
	if os.Getenv("AH_LONG") != "" {
		n, kills = 100000, 30
	}
	acts := load(t, store, 0, n, 20)
	last := uint64(0)
	for kill := 0; kill < kills; kill++ {
		ch := startChild(t, natsURL, prefix, 2*time.Second)
		// Once it has made progress, kill it wherever it is: between
		// batches or in the middle of one.
		checkForT(t, 30*time.Second, func() error {
			if cp, _ := model.Checkpoint(context.Background()); cp <= last {
				return fmt.Errorf("no progress past %d", last)
			}
			return nil
		})
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		ch.kill()
		cp, err := model.Checkpoint(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d at checkpoint %d", kill, cp)
		if cp < last {
			t.Fatalf("checkpoint went back from %d to %d", last, cp)
		}
		last = cp
		// The dead holder's lease would hold the next one off for its TTL.
		_ = c.Del(context.Background(), prefix+"{%meta}:lease").Err()
	}
	more := load(t, store, n, 500, 20) // and some written while it is down
	ch := startChild(t, natsURL, prefix, 2*time.Second)
	end, _ := natsjsLast(t, store)
	checkForT(t, 60*time.Second, func() error {
		cp, err := model.Checkpoint(context.Background())
		if err != nil || cp < end {
			return fmt.Errorf("checkpoint %d of %d (%v)\n%s", cp, end, err, ch.logs)
		}
		return nil
	})
	sameAsStore(t, model, c, prefix, append(acts, more...))
}

func natsjsLast(t *testing.T, s *natsjs.Store) (uint64, error) {
	t.Helper()
	p, err := s.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return p, nil
}

// checkForT is the shared poll of the tests.
var checkForT = testkit.CheckFor

// Two projector processes on one Redis: one applies; kill -9 the leader
// in the middle of a load and the standby takes over within the lease TTL;
// the read model ends equal to the store.
func TestTwoProjectorsLeaderKilled(t *testing.T) {
	t.Parallel()
	natsURL, store, c, prefix, model := shared(t)
	const ttl = 2 * time.Second
	a, b := startChild(t, natsURL, prefix, ttl), startChild(t, natsURL, prefix, ttl)
	children := map[string]*child{
		fmt.Sprintf("child/%d", a.cmd.Process.Pid): a,
		fmt.Sprintf("child/%d", b.cmd.Process.Pid): b,
	}
	var acts []activity.Activity
	acts = append(acts, load(t, store, 0, 1000, 10)...)
	var leader string
	checkForT(t, 20*time.Second, func() error {
		h, _, err := model.LeaseHolder(context.Background())
		if err != nil || children[h] == nil {
			return fmt.Errorf("lease holder %q (%v)", h, err)
		}
		leader = h
		return nil
	})
	// Writes go on while the leader dies.
	done := make(chan []activity.Activity)
	go func() { done <- load(t, store, 1000, 3000, 10) }()
	time.Sleep(200 * time.Millisecond)
	children[leader].kill()
	killed := time.Now()
	var took time.Duration
	checkForT(t, 5*ttl, func() error {
		h, _, err := model.LeaseHolder(context.Background())
		if err != nil || h == leader || children[h] == nil {
			return fmt.Errorf("lease holder %q (%v)", h, err)
		}
		took = time.Since(killed)
		return nil
	})
	t.Logf("standby took over %v after the leader was killed (lease TTL %v)", took, ttl)
	acts = append(acts, <-done...)
	end, _ := natsjsLast(t, store)
	checkForT(t, 60*time.Second, func() error {
		cp, err := model.Checkpoint(context.Background())
		if err != nil || cp < end {
			return fmt.Errorf("checkpoint %d of %d (%v)", cp, end, err)
		}
		return nil
	})
	sameAsStore(t, model, c, prefix, acts)
}

// A holder that lost its lease — paused past its TTL, say — cannot write:
// its next batch is refused in the same script that would write it.
func TestLeaseFencesDeposedHolder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	model := projection.NewRedis(c, prefix)
	first := projection.NewRedisLease(model, time.Second, "first", nil)
	second := projection.NewRedisLease(model, time.Second, "second", nil)
	t1, err := first.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t1.Release()
	if err := t1.Model.Apply(ctx, 1, readmodeltest.Series("fenced", 0, 1)); err != nil {
		t.Fatal(err)
	}
	// The standby waits while the lease is held.
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if _, err := second.Acquire(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second acquired a held lease: %v", err)
	}
	cancel()
	// The first holder's key expires (as if it had been paused).
	if err := c.Del(ctx, prefix+"{%meta}:lease").Err(); err != nil {
		t.Fatal(err)
	}
	t2, err := second.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer t2.Release()
	err = t1.Model.Apply(ctx, 5, readmodeltest.Series("fenced", 1, 1))
	if !errors.Is(err, projection.ErrFenced) {
		t.Fatalf("deposed holder's apply: %v, want ErrFenced", err)
	}
	if docs := pages(t, model, "fenced"); len(docs) != 1 {
		t.Fatalf("%d documents: the deposed holder wrote", len(docs))
	}
	if cp, _ := model.Checkpoint(ctx); cp != 1 {
		t.Fatalf("checkpoint %d: the deposed holder moved it", cp)
	}
	// Its term ends once its renewal finds the lease gone.
	select {
	case <-t1.Ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the deposed holder's term did not end")
	}
	if err := t2.Model.Apply(ctx, 5, readmodeltest.Series("fenced", 1, 1)); err != nil {
		t.Fatalf("new holder's apply: %v", err)
	}
}

// A process restarted under the same holder name (same host and data
// directory) takes its lease straight back instead of waiting out the TTL,
// with a new token: whatever was left of the old process is fenced off.
func TestLeaseRetakenByRestartedHolder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	model := projection.NewRedis(c, prefix)
	before, err := projection.NewRedisLease(model, time.Minute, "host:/data", nil).Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer before.Release()
	actx, cancel := context.WithTimeout(ctx, 10*time.Second) // far below the 1 min TTL
	defer cancel()
	after, err := projection.NewRedisLease(model, time.Minute, "host:/data", nil).Acquire(actx)
	if err != nil {
		t.Fatalf("the restarted holder waited: %v", err)
	}
	defer after.Release()
	if err := before.Model.Apply(ctx, 1, readmodeltest.Series("retaken", 0, 1)); !errors.Is(err, projection.ErrFenced) {
		t.Fatalf("the old process's apply: %v, want ErrFenced", err)
	}
	if err := after.Model.Apply(ctx, 1, readmodeltest.Series("retaken", 0, 1)); err != nil {
		t.Fatal(err)
	}
}
