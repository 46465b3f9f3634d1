// Package bench measures the service over HTTP with an outside load
// generator (vegeta) beside the raw parts it is built on, measured in the
// same run: redis-benchmark on the same key, raw JetStream publishes on an
// in-process server with the same storage settings, and a PostgreSQL
// table as a peer when psql is present. It starts everything it needs —
// its own redis-server, the service binary on a temporary data dir with JWT
// auth on — and prints one table.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Config sizes a run. The zero value is not useful: start from Full or Quick.
type Config struct {
	// Bin is the activityhistory binary under test.
	Bin string
	// Vegeta is the vegeta binary; InstallVegeta puts one there.
	Vegeta string
	// WorkDir holds data dirs, logs and load files; a temp dir when empty.
	WorkDir string
	// Activities preloaded into the read target, in arrays of Batch.
	Activities int
	Batch      int
	// Duration of each load run; Clients concurrent connections; Targets
	// the spread of single POSTs.
	Duration time.Duration
	Clients  int
	Targets  int
	// LagRate is the steady write rate (POST/s) of the lag run.
	LagRate int
	// Postgres runs the peer when psql and a server are there.
	Postgres bool
	// DependencyTimeout is the service's DEPENDENCY_TIMEOUT; empty keeps
	// its default.
	DependencyTimeout string
	// Log receives progress lines; nil discards them.
	Log io.Writer
}

// Full is the configuration of `make bench`.
func Full() Config {
	return Config{Activities: 1_000_000, Batch: 500, Duration: 10 * time.Second,
		Clients: 64, Targets: 1000, LagRate: 5000, Postgres: true}
}

// Quick is a tiny run that exercises every step; make test runs it.
func Quick() Config {
	// A race-built binary on a busy machine may take seconds for an
	// array of 500: the check is that every step works, not how fast.
	return Config{Activities: 2000, Batch: 500, Duration: time.Second,
		Clients: 8, Targets: 20, LagRate: 100, Postgres: true, DependencyTimeout: "20s"}
}

// Run measures and writes the table to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if cfg.Activities < 2*cfg.Batch || cfg.Batch < 1 {
		return errors.New("bench: need at least two batches of activities")
	}
	if cfg.WorkDir == "" {
		dir, err := os.MkdirTemp("", "ahbench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.WorkDir = dir
	}
	r := &run{cfg: cfg, start: time.Now()}
	if err := r.setup(ctx); err != nil {
		r.stopAll()
		return err
	}
	err := r.measure(ctx)
	r.stopAll()
	notes := r.notes()
	if err != nil {
		// What was measured before the failure is still worth reading.
		notes = append(notes, "RUN STOPPED: "+err.Error())
	}
	r.table.write(out, notes)
	return err
}

// run is one benchmark run: its parts and what it measured.
type run struct {
	cfg   Config
	start time.Time

	redis   *redisServer
	secret  string // JWT secret
	cursor  string // cursor secret
	token   string
	readTgt string // the preloaded target
	deepKey string // sort key of the activity the deep page starts below

	posted   int   // activities acknowledged by the service in this run
	jsonSize int64 // bytes of the preloaded activities' JSON as stored
	procs    []*service

	table table
	noise string
}

func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Log, "[%6.1fs] "+format+"\n", append([]any{time.Since(r.start).Seconds()}, args...)...)
}

func (r *run) setup(ctx context.Context) error {
	r.secret, r.cursor = randomHex(32), randomHex(32)
	var err error
	if r.redis, err = startRedis(ctx, filepath.Join(r.cfg.WorkDir, "redis")); err != nil {
		return err
	}
	r.token, err = mintToken(r.secret)
	return err
}

func (r *run) stopAll() {
	for _, p := range r.procs {
		p.stop()
	}
	r.procs = nil
	if r.redis != nil {
		r.redis.stop()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
