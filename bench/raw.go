package bench

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// rawRate is a raw part's throughput and latency (zero when not known).
type rawRate struct {
	perSec   float64
	p50, p99 time.Duration
	unit     string // "req/s", "msg/s", "tps"
}

func (x rawRate) String() string {
	s := fmt.Sprintf("%s %s", thousands(x.perSec), x.unit)
	if x.p50 > 0 {
		s += ", p50 " + ms(x.p50)
	}
	if x.p99 > 0 {
		s += ", p99 " + ms(x.p99)
	}
	return s
}

// redisBench runs redis-benchmark with clients connections on one
// command, about dur long, against the run's Redis.
func (r *run) redisBench(ctx context.Context, clients int, dur time.Duration, args ...string) (rawRate, error) {
	if err := lookTool("redis-benchmark"); err != nil {
		return rawRate{}, err
	}
	n := max(10_000, int(20_000*dur.Seconds()))
	cmd := exec.CommandContext(ctx, "redis-benchmark", append([]string{"-h", "127.0.0.1",
		"-p", strconv.Itoa(r.redis.port), "-c", strconv.Itoa(clients), "-n", strconv.Itoa(n), "--csv"}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		return rawRate{}, fmt.Errorf("redis-benchmark: %w", err)
	}
	recs, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil || len(recs) < 2 || len(recs[1]) < 7 {
		return rawRate{}, fmt.Errorf("redis-benchmark: unexpected output %q", out)
	}
	// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms",…
	rps, err1 := strconv.ParseFloat(recs[1][1], 64)
	p50, err2 := strconv.ParseFloat(recs[1][4], 64)
	p99, err3 := strconv.ParseFloat(recs[1][6], 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return rawRate{}, fmt.Errorf("redis-benchmark: unexpected output %q", out)
	}
	return rawRate{perSec: rps, p50: msDur(p50), p99: msDur(p99), unit: "req/s"}, nil
}

func msDur(ms float64) time.Duration { return time.Duration(ms * float64(time.Millisecond)) }

// jetStream is an in-process nats-server with the embedded store's
// settings, for raw publishes.
type jetStream struct {
	ns *server.Server
	nc *nats.Conn
	js jetstream.JetStream
}

func startJetStream(ctx context.Context, dir string, syncAlways bool) (*jetStream, error) {
	ns, err := server.NewServer(&server.Options{ServerName: "bench", JetStream: true, StoreDir: dir,
		DontListen: true, SyncAlways: syncAlways, NoSigs: true})
	if err != nil {
		return nil, err
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("nats-server did not start")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		ns.Shutdown()
		return nil, err
	}
	j := &jetStream{ns: ns, nc: nc}
	if j.js, err = jetstream.New(nc); err == nil {
		_, err = j.js.CreateStream(ctx, jetstream.StreamConfig{Name: "BENCH", Subjects: []string{"bench.>"},
			Storage: jetstream.FileStorage, Duplicates: 10 * time.Minute, Discard: jetstream.DiscardNew})
	}
	if err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

func (j *jetStream) close() {
	j.nc.Close()
	j.ns.Shutdown()
	j.ns.WaitForShutdown()
}

// rawPublish measures acknowledged publishes of payload-sized messages
// with a Nats-Msg-Id each: publishers in parallel, each sending window
// messages (async) and waiting for their acks before the next window
// (window 1 = a synchronous publish). subjects spreads them.
func rawPublish(ctx context.Context, dir string, syncAlways bool, publishers, window, subjects int,
	payload []byte, dur time.Duration) (rawRate, error) {
	j, err := startJetStream(ctx, dir, syncAlways)
	if err != nil {
		return rawRate{}, fmt.Errorf("raw JetStream: %w", err)
	}
	defer j.close()
	ctx, cancel := context.WithTimeout(ctx, dur)
	defer cancel()
	var (
		total atomic.Int64
		mu    sync.Mutex
		lats  []time.Duration
		wg    sync.WaitGroup
		errs  = make(chan error, publishers)
	)
	start := time.Now()
	for p := range publishers {
		wg.Go(func() {
			var mine []time.Duration
			defer func() { mu.Lock(); lats = append(lats, mine...); mu.Unlock() }()
			for i := 0; ctx.Err() == nil; i++ {
				subj := "bench." + strconv.Itoa((p*7919+i)%subjects)
				t0 := time.Now()
				if window == 1 {
					if _, err := j.js.Publish(ctx, subj, payload, jetstream.WithMsgID(uuid.NewString())); err != nil {
						if ctx.Err() == nil {
							errs <- err
						}
						return
					}
				} else {
					futs := make([]jetstream.PubAckFuture, window)
					for k := range futs {
						var err error
						if futs[k], err = j.js.PublishAsync(subj, payload, jetstream.WithMsgID(uuid.NewString())); err != nil {
							errs <- err
							return
						}
					}
					for _, f := range futs {
						select {
						case <-f.Ok():
						case err := <-f.Err():
							errs <- err
							return
						}
					}
				}
				mine = append(mine, time.Since(t0))
				total.Add(int64(window))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	select {
	case err := <-errs:
		return rawRate{}, fmt.Errorf("raw JetStream publish: %w", err)
	default:
	}
	slices.Sort(lats)
	return rawRate{perSec: float64(total.Load()) / elapsed.Seconds(),
		p50: quantile(lats, 0.5), p99: quantile(lats, 0.99), unit: "msg/s"}, nil
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// pg is the PostgreSQL peer: the same data as a table with an index, in a
// database of its own, driven by pgbench.
type pg struct {
	db, dir string
}

var tpsRe = regexp.MustCompile(`tps = ([0-9.]+)`)
var latRe = regexp.MustCompile(`latency average = ([0-9.]+) ms`)

// startPG creates the peer's database and loads rows activities of target
// into it, the newest first by created_at as in the service.
func startPG(ctx context.Context, dir string, rows int, doc []byte) (*pg, error) {
	for _, t := range []string{"psql", "pgbench"} {
		if err := lookTool(t); err != nil {
			return nil, err
		}
	}
	p := &pg{db: "ahbench_" + randomHex(4), dir: dir}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	if err := p.psql(ctx, "postgres", "CREATE DATABASE "+p.db); err != nil {
		return nil, err
	}
	docLit := "'" + string(bytes.ReplaceAll(doc, []byte("'"), []byte("''"))) + "'"
	err := p.psql(ctx, p.db, `
CREATE TABLE activity (target_id text NOT NULL, created_at timestamptz NOT NULL, id uuid PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO activity SELECT 'read', timestamptz '2020-01-01' + i * interval '1 ms', gen_random_uuid(), `+docLit+`
  FROM generate_series(1, `+strconv.Itoa(rows)+`) i;
CREATE INDEX activity_page ON activity (target_id, created_at DESC, id DESC);`)
	if err == nil {
		err = p.psql(ctx, p.db, "VACUUM ANALYZE activity")
	}
	if err != nil {
		p.drop(ctx)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "insert.sql"), []byte(`\set t random(1, 1000)
INSERT INTO activity VALUES ('t' || :t, now(), gen_random_uuid(), `+docLit+`);
`), 0o640); err != nil {
		return nil, err
	}
	// Deep: below the row that has as many newer rows as the service's deep page.
	deep := fmt.Sprintf("timestamptz '2020-01-01' + %d * interval '1 ms'", rows-rows/2+1)
	for name, where := range map[string]string{"head": "", "deep": " AND created_at < " + deep} {
		q := "SELECT doc FROM activity WHERE target_id = 'read'" + where + " ORDER BY created_at DESC, id DESC LIMIT 21;\n"
		if err := os.WriteFile(filepath.Join(dir, name+".sql"), []byte(q), 0o640); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *pg) psql(ctx context.Context, db, sql string) error {
	cmd := exec.CommandContext(ctx, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql)
	cmd.Env = pgEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("psql: %w: %s", err, out)
	}
	return nil
}

// bench runs one pgbench script with clients for dur.
func (p *pg) bench(ctx context.Context, script string, clients int, dur time.Duration) (rawRate, error) {
	secs := strconv.Itoa(max(1, int(dur.Seconds())))
	cmd := exec.CommandContext(ctx, "pgbench", "-n", "-M", "prepared", "-c", strconv.Itoa(clients),
		"-j", "2", "-T", secs, "-f", filepath.Join(p.dir, script+".sql"), p.db)
	cmd.Env = pgEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return rawRate{}, fmt.Errorf("pgbench %s: %w: %s", script, err, out)
	}
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		return rawRate{}, fmt.Errorf("pgbench %s: no tps in %q", script, out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	x := rawRate{perSec: tps, unit: "tps"}
	if m := latRe.FindSubmatch(out); m != nil {
		avg, _ := strconv.ParseFloat(string(m[1]), 64)
		x.unit = "tps, mean " + ms(msDur(avg))
	}
	return x, nil
}

func (p *pg) drop(ctx context.Context) {
	_ = p.psql(ctx, "postgres", "DROP DATABASE IF EXISTS "+p.db+" WITH (FORCE)")
}

// pgEnv connects as PGUSER, postgres when unset (a local server with
// trust auth).
func pgEnv() []string {
	env := os.Environ()
	if os.Getenv("PGUSER") == "" {
		env = append(env, "PGUSER=postgres")
	}
	return env
}
