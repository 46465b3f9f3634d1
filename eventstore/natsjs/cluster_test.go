package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/eventstore/storetest"
)

// cluster is three nats-servers in process forming a JetStream cluster on
// loopback, the way nats-server's own tests run one.
type cluster struct {
	t       testing.TB
	mu      sync.Mutex
	opts    []server.Options // as given, to restart a node with
	servers []*server.Server // nil: shut down
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	const n = 3
	// Each node's routes name every node's cluster port, so the ports are
	// chosen before any node starts.
	ports := make([]string, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().String()
		l.Close()
	}
	routes := server.RoutesFromStr("nats://" + strings.Join(ports, ",nats://"))
	c := &cluster{t: t, opts: make([]server.Options, n), servers: make([]*server.Server, n)}
	for i := range n {
		_, p, _ := net.SplitHostPort(ports[i])
		var port int
		fmt.Sscan(p, &port)
		c.opts[i] = server.Options{
			ServerName: fmt.Sprintf("node-%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoSigs:     true,
			NoLog:      true,
			Cluster:    server.ClusterOpts{Name: "ah-test", Host: "127.0.0.1", Port: port},
			Routes:     routes,
		}
	}
	t.Cleanup(c.shutdownAll)
	for i := range n {
		c.start(i)
	}
	c.waitFor("a meta leader and every node current", func() bool {
		var leader bool
		for _, s := range c.running() {
			if s.JetStreamIsLeader() {
				leader = len(s.JetStreamClusterPeers()) == n
			}
			if !s.JetStreamIsCurrent() {
				return false
			}
		}
		return leader
	})
	return c
}

func (c *cluster) start(i int) {
	c.t.Helper()
	o := c.opts[i] // NewServer fills in the copy
	ns, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		c.t.Fatalf("node %d not ready", i+1)
	}
	c.mu.Lock()
	c.servers[i] = ns
	c.mu.Unlock()
}

func (c *cluster) shutdown(i int) {
	c.mu.Lock()
	ns := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if ns != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
	}
}

func (c *cluster) shutdownAll() {
	for i := range c.servers {
		c.shutdown(i)
	}
}

func (c *cluster) running() []*server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*server.Server
	for _, s := range c.servers {
		if s != nil {
			out = append(out, s)
		}
	}
	return out
}

func (c *cluster) urls() []string {
	var out []string
	for _, s := range c.running() {
		out = append(out, s.ClientURL())
	}
	return out
}

// streamLeader waits for stream to have a leader and returns its node.
func (c *cluster) streamLeader(stream string) int {
	c.t.Helper()
	leader := -1
	c.waitFor("a leader of stream "+stream, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for i, s := range c.servers {
			if s != nil && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// waitFor polls cond for up to 30 seconds.
func (c *cluster) waitFor(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster: no %s in 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func openCluster(t testing.TB, c *cluster, opts ...func(natsjs.Config) natsjs.Config) *natsjs.Store {
	t.Helper()
	cfg := natsjs.Config{URLs: c.urls(), Replicas: 3}
	for _, o := range opts {
		cfg = o(cfg)
	}
	s := open(t, cfg)
	c.streamLeader("ACTIVITY")
	return s
}

func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	c := startCluster(t)
	s := openCluster(t, c)
	storetest.Run(t, func(*testing.T) eventstore.Store { return s })
}

func TestClusterLeaderLoss(t *testing.T) {
	t.Parallel()
	leaderLoss(t, lossPlan{writers: 4, streams: 6, appends: 300, kills: 1})
}

func TestClusterLeaderLossLong(t *testing.T) {
	if os.Getenv("AH_LONG") == "" {
		t.Skip("long cluster fault test: set AH_LONG=1 (make test-long)")
	}
	t.Parallel()
	leaderLoss(t, lossPlan{writers: 16, streams: 40, appends: 6000, kills: 4, restart: true})
}

type lossPlan struct {
	writers, streams int
	appends          int  // acknowledged appends to reach
	kills            int  // stream leaders shut down along the way
	restart          bool // start each killed node again before the next kill
}

// acked is what successful appends returned: the one thing that must
// never be lost.
type acked struct {
	mu      sync.Mutex
	records map[string]eventstore.Record // by event id
	appends int
	failed  int
	errs    map[string]int // failed appends by error text, for the log
}

func (a *acked) add(recs []eventstore.Record) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		a.records[r.ID] = r
	}
	a.appends++
}

func (a *acked) fail(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failed++
	msg := err.Error()
	if len(msg) > 120 {
		msg = msg[:120]
	}
	a.errs[msg]++
}

func (a *acked) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.appends
}

// idsOf returns the ids acknowledged in stream so far.
func (a *acked) idsOf(stream string) map[string]bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]bool{}
	for id, r := range a.records {
		if r.Stream == stream {
			out[id] = true
		}
	}
	return out
}

// leaderLoss appends with Any from several writers to several streams,
// and reads, while the stream leader is shut down; then checks that every
// acknowledged event is stored exactly once and every chain verifies.
func leaderLoss(t *testing.T, p lossPlan) {
	c := startCluster(t)
	s := openCluster(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	streamName := func(i int) string { return fmt.Sprintf("target-%03d", i) }
	a := &acked{records: map[string]eventstore.Record{}, errs: map[string]int{}}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range p.writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				st := streamName(rand.IntN(p.streams))
				evs := make([]eventstore.Event, 1+i%3)
				for k := range evs {
					id := fmt.Sprintf("w%d-%d-%d", w, i, k)
					evs[k] = eventstore.Event{ID: id, Type: "Loss", Data: []byte(`{"id":"` + id + `"}`)}
				}
				actx, acancel := context.WithTimeout(ctx, 20*time.Second)
				res, err := s.Append(actx, st, eventstore.Any, evs...)
				acancel()
				if err != nil {
					a.fail(err)
					continue
				}
				a.add(res.Records)
			}
		})
	}
	// A reader: everything acknowledged before a read is in it.
	var reads, readFails atomic.Int64
	readErr := make(chan error, 1)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st := streamName(rand.IntN(p.streams))
			before := a.idsOf(st)
			rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
			recs, err := s.Read(rctx, st, 0, 100_000)
			rcancel()
			if err != nil {
				if !errors.Is(err, eventstore.ErrNotFound) || len(before) > 0 {
					readFails.Add(1)
				}
				continue
			}
			reads.Add(1)
			got := map[string]bool{}
			for _, r := range recs {
				got[r.ID] = true
			}
			for id := range before {
				if !got[id] {
					select {
					case readErr <- fmt.Errorf("read of %s misses acknowledged event %s", st, id):
					default:
					}
				}
			}
			if _, err := eventstore.VerifyRecords(st, recs, nil); err != nil {
				select {
				case readErr <- err:
				default:
				}
			}
		}
	})

	waitAcked := func(n int) {
		for a.count() < n {
			select {
			case <-ctx.Done():
				close(stop)
				wg.Wait()
				t.Fatalf("only %d of %d appends acknowledged; failures: %v", a.count(), n, a.errs)
			case err := <-readErr:
				close(stop)
				wg.Wait()
				t.Fatal(err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	step := p.appends / (p.kills + 1)
	for k := range p.kills {
		waitAcked((k + 1) * step)
		leader := c.streamLeader("ACTIVITY")
		t.Logf("after %d appends: shutting down node %d, the stream leader", a.count(), leader+1)
		c.shutdown(leader)
		if p.restart {
			waitAcked((k+1)*step + step/2)
			t.Logf("after %d appends: starting node %d again", a.count(), leader+1)
			c.start(leader)
		}
	}
	waitAcked(p.appends)
	close(stop)
	wg.Wait()
	select {
	case err := <-readErr:
		t.Fatal(err)
	default:
	}
	t.Logf("%d appends acknowledged (%d events), %d failed %v; %d reads, %d failed",
		a.appends, len(a.records), a.failed, a.errs, reads.Load(), readFails.Load())

	// Every stream: a whole chain, matching its recorded head, holding
	// each of its acknowledged events once, as acknowledged.
	seen := map[string]eventstore.Record{}
	for i := range p.streams {
		st := streamName(i)
		head, err := s.Verify(ctx, st)
		if errors.Is(err, eventstore.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("verify %s: %v", st, err)
		}
		recs, err := s.Read(ctx, st, 0, 1_000_000)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(len(recs)) != head.Revision+1 {
			t.Fatalf("%s: read %d records, verified %d", st, len(recs), head.Revision+1)
		}
		for _, r := range recs {
			if prev, dup := seen[r.ID]; dup {
				t.Fatalf("event %s stored twice: %s/%d and %s/%d", r.ID, prev.Stream, prev.Revision, r.Stream, r.Revision)
			}
			seen[r.ID] = r
		}
	}
	for id, want := range a.records {
		got, ok := seen[id]
		switch {
		case !ok:
			t.Fatalf("acknowledged event %s (%s revision %d) lost", id, want.Stream, want.Revision)
		case got.Stream != want.Stream || got.Revision != want.Revision || got.Position != want.Position || got.Hash != want.Hash:
			t.Fatalf("event %s stored as %s/%d at %d, acknowledged as %s/%d at %d", id, got.Stream, got.Revision, got.Position, want.Stream, want.Revision, want.Position)
		}
	}

	// And the global order holds each stored event once, in order.
	end, err := s.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	n := 0
	errEnd := errors.New("end")
	err = s.Subscribe(ctx, 0, func(_ context.Context, batch []eventstore.Record) error {
		for _, r := range batch {
			if r.Position <= last {
				return fmt.Errorf("position %d after %d", r.Position, last)
			}
			last = r.Position
			if want, ok := seen[r.ID]; !ok || want.Position != r.Position {
				return fmt.Errorf("subscription: event %s at %d, read at %d", r.ID, r.Position, want.Position)
			}
			n++
			if r.Position == end {
				return errEnd
			}
		}
		return nil
	})
	if !errors.Is(err, errEnd) {
		t.Fatalf("subscribe: %v", err)
	}
	if n != len(seen) {
		t.Fatalf("subscription delivered %d events, streams hold %d", n, len(seen))
	}
	if n := s.IndexConflicts(); n != 0 {
		t.Fatalf("%d events found indexed to another record", n)
	}
	t.Logf("%d id-index entries written", s.Indexed())
}
