package projection_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

// commandLog records the commands a client sends, pipelines included.
type commandLog struct {
	mu    sync.Mutex
	trips [][]string // one entry per round trip
}

func (l *commandLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *commandLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *commandLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.add(cmds...)
		return next(ctx, cmds)
	}
}

func (l *commandLog) add(cmds ...redis.Cmder) {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = strings.ToLower(c.Name())
	}
	l.mu.Lock()
	l.trips = append(l.trips, names)
	l.mu.Unlock()
}

func (l *commandLog) take() [][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.trips
	l.trips = nil
	return t
}

func TestRedisPageIsOneRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	log := &commandLog{}
	c.AddHook(log)
	m := projection.NewRedis(c, prefix)
	const target = "one-trip"
	if err := m.Apply(ctx, 1, readmodeltest.Series(target, 0, 30)); err != nil {
		t.Fatal(err)
	}
	log.take()
	// The first page may load the script (EVALSHA, then EVAL on NOSCRIPT);
	// from then on a page is one EVALSHA.
	for i, maxTrips := range []int{2, 1, 1} {
		p, err := m.Page(ctx, target, activity.PageQuery{Limit: 11})
		if err != nil || !p.Found || len(p.Entries) != 11 {
			t.Fatalf("page %d: %d entries, found=%v, err=%v", i, len(p.Entries), p.Found, err)
		}
		trips := log.take()
		if len(trips) == 0 || len(trips) > maxTrips || len(trips[len(trips)-1]) != 1 {
			t.Fatalf("page %d: round trips %v, want at most %d with one command each", i, trips, maxTrips)
		}
	}
}

// applyOrder records, in order, when each apply script starts and ends
// and the position it moves the checkpoint to ("" for data only).
type applyOrder struct {
	mu     sync.Mutex
	events []string // "start <pos>" or "end <pos>"
	other  int      // commands that are not apply scripts
}

func (l *applyOrder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *applyOrder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		args := cmd.Args()
		if strings.ToLower(cmd.Name()) != "evalsha" || len(args) < 3 {
			l.count(cmd)
			return next(ctx, cmd)
		}
		nkeys, _ := args[2].(int)
		pos, _ := args[3+nkeys+3].(string) // ARGV[4]
		l.log("start " + pos)
		err := next(ctx, cmd)
		l.log("end " + pos)
		return err
	}
}

func (l *applyOrder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.count(cmds...)
		return next(ctx, cmds)
	}
}

// count notes commands other than a new connection's handshake.
func (l *applyOrder) count(cmds ...redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cmds {
		if n := strings.ToLower(c.Name()); n != "hello" && n != "client" {
			l.other++
		}
	}
}

func (l *applyOrder) log(e string) {
	l.mu.Lock()
	l.events = append(l.events, e)
	l.mu.Unlock()
}

// A batch is cut into apply scripts of 200: those before the last run in
// parallel; the last, which moves the checkpoint, starts only once they
// have all succeeded.
func TestRedisApplyChunksThenCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	m := projection.NewRedis(c, prefix)
	// The first apply may load the script (NOSCRIPT, SCRIPT LOAD, again).
	if err := m.Apply(ctx, 1, readmodeltest.Series("pipe", 1000, 1)); err != nil {
		t.Fatal(err)
	}
	log := &applyOrder{}
	c.AddHook(log)
	acts := readmodeltest.Series("pipe", 0, 450)
	if err := m.Apply(ctx, 7, acts); err != nil {
		t.Fatal(err)
	}
	// 450 activities: three scripts (200, 200, 50), one command each.
	ev := log.events
	if len(ev) != 6 || log.other != 0 {
		t.Fatalf("script events %v and %d other commands, want 3 scripts and nothing else", ev, log.other)
	}
	if ev[4] != "start 7" || ev[5] != "end 7" {
		t.Fatalf("script events %v: the checkpoint script must start after the data scripts ended", ev)
	}
	// The keys follow the documented layout.
	a := acts[0]
	if got, err := c.Get(ctx, prefix+"id:"+a.ID).Result(); err != nil || got != "pipe" {
		t.Fatalf("id key: %q, %v", got, err)
	}
	if got, err := c.ZScore(ctx, prefix+"{pipe}:idx", a.SortKey()).Result(); err != nil || got != 0 {
		t.Fatalf("index member: %v, %v", got, err)
	}
	if n, err := c.HLen(ctx, prefix+"{pipe}:doc").Result(); err != nil || n != 451 {
		t.Fatalf("documents: %d, %v", n, err)
	}
	if got, err := c.HGet(ctx, prefix+"{%meta}:checkpoints", "").Result(); err != nil || got != "7" {
		t.Fatalf("checkpoint: %q, %v", got, err)
	}
}

func TestRedisReadsLegacyCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	if err := c.Set(ctx, prefix+"checkpoint", "41", 0).Err(); err != nil {
		t.Fatal(err)
	}
	m := projection.NewRedis(c, prefix)
	if cp, err := m.Checkpoint(ctx); err != nil || cp != 41 {
		t.Fatalf("checkpoint = %d, %v; want 41 from the key written before generations", cp, err)
	}
	if err := m.Apply(ctx, 42, nil); err != nil {
		t.Fatal(err)
	}
	if cp, err := m.Checkpoint(ctx); err != nil || cp != 42 {
		t.Fatalf("checkpoint = %d, %v; want 42", cp, err)
	}
}

func TestRedisPrefixesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := redistest.Client(t)
	a, b := projection.NewRedis(c, prefix+"a:"), projection.NewRedis(c, prefix+"b:")
	if err := a.Apply(ctx, 3, readmodeltest.Series("shared", 0, 2)); err != nil {
		t.Fatal(err)
	}
	if p, _ := b.Page(ctx, "shared", activity.PageQuery{Limit: 10}); p.Found {
		t.Fatal("a target of prefix a: is found under prefix b:")
	}
	if cp, _ := b.Checkpoint(ctx); cp != 0 {
		t.Fatalf("checkpoint under b: = %d, want 0", cp)
	}
}

func TestRedisErrorsWhenUnreachable(t *testing.T) {
	t.Parallel()
	// A listener that is closed at once: nothing answers on its address.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	defer c.Close()
	m := projection.NewRedis(c, "ah:")
	ctx := context.Background()
	if err := m.Ping(ctx); err == nil {
		t.Error("ping succeeded")
	}
	if err := m.Apply(ctx, 1, readmodeltest.Series("t", 0, 1)); err == nil {
		t.Error("apply succeeded")
	}
	if _, err := m.Page(ctx, "t", activity.PageQuery{Limit: 10}); err == nil {
		t.Error("page succeeded")
	}
	if _, _, err := m.Get(ctx, "x"); err == nil {
		t.Error("get succeeded")
	}
	if _, err := m.Checkpoint(ctx); err == nil {
		t.Error("checkpoint succeeded")
	}
}

// Waiters share the state reads they poll with: hundreds of them cost
// about one read per couple of milliseconds, not one each.
func TestRedisWaitersShareStateReads(t *testing.T) {
	t.Parallel()
	c, prefix := redistest.Client(t)
	log := &commandLog{}
	c.AddHook(log)
	r := projection.NewRedis(c, prefix)
	const waiters, window = 300, 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), window)
	defer cancel()
	var wg sync.WaitGroup
	for range waiters {
		wg.Go(func() {
			if err := r.WaitFor(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("wait for an unapplied position: %v", err)
			}
		})
	}
	wg.Wait()
	reads := 0
	for _, trip := range log.take() {
		reads += len(trip)
	}
	// Each waiter alone would read about 10 times in the window (2, 4, …,
	// 50 ms apart): 3,000 reads. Shared, at most one per sharedFresh.
	if reads > int(window/(2*time.Millisecond))+10 {
		t.Fatalf("%d waiters made %d state reads in %s", waiters, reads, window)
	}
}
