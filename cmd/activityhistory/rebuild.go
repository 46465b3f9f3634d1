package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/council/activityhistory/projection"
)

// rebuild builds a new generation of the Redis read model while the
// service keeps serving the current one, then switches readers to it.
func rebuild(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var cfg config
	var every time.Duration
	e.str(&cfg.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store the service uses: nats://… or esdb://…; empty (the embedded store, which only the serving process can open) = ask the running projector to rebuild")
	e.integer(&cfg.EventStoreRepl, "eventstore-replicas", "EVENTSTORE_REPLICAS", 1, "JetStream stream replicas")
	e.str(&cfg.RedisURL, "redis-url", "REDIS_URL", "", "Redis read model to rebuild (redis://host:6379/0)")
	e.str(&cfg.RedisPrefix, "redis-prefix", "REDIS_PREFIX", "ah:", "prefix of every Redis key")
	e.boolean(&cfg.RedisCluster, "redis-cluster", "REDIS_CLUSTER", false, "REDIS_URL names a Redis Cluster")
	e.duration(&cfg.ProjectorLeaseTTL, "lease-ttl", "PROJECTOR_LEASE_TTL", projection.DefaultLeaseTTL, "TTL of the rebuild's lease: a second rebuild is refused while one runs")
	e.str(&cfg.LogLevel, "log-level", "LOG_LEVEL", "warn", "debug, info, warn or error")
	fs.DurationVar(&every, "progress-every", time.Second, "how often to print progress")
	cfg.LogFormat, cfg.EventStoreSync = "text", "default"
	if err := e.parse(args); err != nil {
		return err
	}
	if cfg.RedisURL == "" {
		return errors.New("rebuild: REDIS_URL is needed; the in-memory read model is rebuilt at every start")
	}
	log := newLogger(cfg, stderr)
	r, closeRedis, err := openRedis(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeRedis()
	bar := newProgressBar(stderr)
	var gen string
	if cfg.EventStoreURL == "" {
		// The embedded store belongs to the serving process: its projector
		// runs the rebuild and reports progress through Redis.
		fmt.Fprintln(stderr, "rebuild: asking the running projector (embedded event store)")
		gen, err = r.RequestRebuild(ctx, 15*time.Second, every, bar.show)
	} else {
		var s store
		if s, err = openStore(ctx, cfg, log); err != nil {
			return err
		}
		defer s.Close()
		head, _ := s.(projection.HeadReader)
		gen, err = r.Rebuild(ctx, s, projection.RebuildOptions{
			Logger: log, Head: head, LeaseTTL: cfg.ProjectorLeaseTTL,
			Progress: bar.show, ProgressEvery: every,
		})
	}
	bar.done()
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	fmt.Fprintf(stderr, "rebuild done: readers use generation %s; the old one is deleted\n", gen)
	return nil
}

// progressBar prints rebuild progress: one line per report, or one line
// redrawn in place with a bar when stderr is a terminal.
type progressBar struct {
	w   io.Writer
	tty bool
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, tty: tty}
}

func (b *progressBar) show(p projection.RebuildProgress) {
	var line strings.Builder
	fmt.Fprintf(&line, "rebuild %s: position %d", p.Generation, p.Position)
	if p.Target > 0 {
		pct := min(100*float64(p.Position)/float64(p.Target), 100)
		if b.tty {
			const width = 30
			n := int(pct / 100 * width)
			line.Reset()
			fmt.Fprintf(&line, "rebuild %s [%s%s] %5.1f%% %d/%d", p.Generation,
				strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, p.Position, p.Target)
		} else {
			fmt.Fprintf(&line, " of %d (%.1f%%)", p.Target, pct)
		}
	}
	fmt.Fprintf(&line, ", %d events, %.0f events/s", p.Events, p.Rate)
	if eta := p.ETA(); eta > 0 {
		fmt.Fprintf(&line, ", ETA %s", eta.Round(time.Second))
	}
	if p.Switched {
		line.WriteString(", readers switched")
	}
	if b.tty {
		fmt.Fprintf(b.w, "\r\033[K%s", line.String())
		return
	}
	fmt.Fprintln(b.w, line.String())
}

func (b *progressBar) done() {
	if b.tty {
		fmt.Fprintln(b.w)
	}
}
