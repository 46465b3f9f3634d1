package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apidocs"
	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/auth"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/command/ingest"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/esdb"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/guard"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/query"
	"github.com/council/activityhistory/ui"
)

// httpWriteTimeout bounds writing a response; DEPENDENCY_TIMEOUT stays
// well under it so a stalled dependency gives a 503, not a cut connection.
const httpWriteTimeout = 30 * time.Second

// store is what serve needs of an event store adapter.
type store interface {
	eventstore.Store
	Ping(ctx context.Context) error
	Close() error
}

// readModel is what serve needs of a read model.
type readModel = projection.Model

func serve(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseServeConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	logw := newLogWriter(stderr, 100*time.Millisecond)
	defer logw.Close()
	log := newLogger(cfg, logw)

	// Listen first: a busy port fails before anything starts or a dev
	// token is printed.
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (set HTTP_ADDR or --http-addr to use another address): %w", cfg.HTTPAddr, err)
	}
	cfg.HTTPAddr = ln.Addr().String() // the port chosen for :0, in the banner
	app, err := build(ctx, cfg, log, stdout)
	if err != nil {
		ln.Close()
		return err
	}
	defer app.close()
	return app.run(ctx, ln)
}

// app is the wired service: its parts and how to stop them.
type app struct {
	cfg       config
	log       *slog.Logger
	store     store
	model     readModel
	redis     *projection.Redis     // the model when it is Redis
	cache     *projection.PageCache // pages kept for the query side; nil = none
	projector *projection.Projector
	query     *query.Service
	audit     *audit.Service   // nil unless the process serves audit routes or runs retention
	retention *audit.Retention // nil unless the projector erases expired payloads
	ingest    *ingest.Consumer // nil unless INGEST_ENABLED
	handler   http.Handler
	engines   []*gin.Engine
	ready     *atomic.Bool
	closers   []func() error
}

func build(ctx context.Context, cfg config, log *slog.Logger, stdout io.Writer) (_ *app, err error) {
	gin.SetMode(gin.ReleaseMode)
	a := &app{cfg: cfg, log: log, ready: &atomic.Bool{}}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	validator, err := activity.NewValidator(activity.Rules{
		TargetIDFormat:   activity.TargetIDFormat(cfg.TargetIDFormat),
		ExtraTargetTypes: targetTypes(cfg.ExtraTargetTypes),
	})
	if err != nil {
		return nil, fmt.Errorf("TARGET_ID_FORMAT: %w", err)
	}

	var checks []check
	// A query-only process reads nothing but the read model, so it must
	// not depend on the event store being up.
	if cfg.has("command") || cfg.has("projector") {
		if a.store, err = openStore(ctx, cfg, log); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, a.store.Close)
		checks = append(checks, check{name: "EventStore", description: storeDescription(cfg), ping: a.store.Ping})
		if m, ok := a.store.(interface{ RegisterMetrics(prometheus.Registerer) }); ok {
			m.RegisterMetrics(reg)
		}
	}

	needModel := cfg.has("query") || cfg.has("projector")
	if needModel {
		if cfg.RedisURL == "" && cfg.has("query") != cfg.has("projector") {
			return nil, errors.New("the in-memory read model needs the query and projector roles in one process; set REDIS_URL to split them")
		}
		if a.model, a.redis, err = openReadModel(ctx, cfg, a); err != nil {
			return nil, err
		}
		checks = append(checks, check{name: "ReadModel", description: modelDescription(cfg), ping: a.model.Ping})
		// In memory, this process's projector writes every change through
		// the cache; on Redis, whichever process projects announces them.
		if cfg.has("query") && cfg.PageCacheMB > 0 {
			if a.redis != nil {
				a.cache = projection.NewRedisPageCache(a.redis, int64(cfg.PageCacheMB)<<20)
			} else {
				a.cache = projection.NewPageCache(a.model, int64(cfg.PageCacheMB)<<20)
				a.model = a.cache
			}
			log.Info("page cache: pages kept in process", "mb", cfg.PageCacheMB)
		}
	}
	head, _ := a.store.(projection.HeadReader)
	if cfg.has("projector") {
		popts := projection.ProjectorOptions{Logger: log, Registerer: reg, Head: head,
			Sweep: projection.SweepOptions{Interval: cfg.SweepInterval, Batch: cfg.SweepBatch}}
		if a.redis != nil {
			// Any number of projectors may share one Redis; one applies.
			popts.Lease = projection.NewRedisLease(a.redis, cfg.ProjectorLeaseTTL, leaseHolder(cfg), log)
		}
		if cfg.RetentionEraseInterval > 0 {
			// Set below, once the audit service exists; only the lease
			// holder runs it.
			popts.Leader = func(ctx context.Context) {
				if a.retention != nil {
					a.retention.Run(ctx)
				}
			}
		}
		a.projector = projection.NewProjector(a.store, a.model, popts)
	}

	var authn *auth.Authenticator
	var dev *devTokens
	if cfg.has("command") || cfg.has("query") {
		if authn, dev, err = newAuthenticator(cfg, log, stdout); err != nil {
			return nil, err
		}
		a.closers = append(a.closers, authn.Close)
		if len(cfg.AuthJWKSURLs) > 0 {
			checks = append(checks, check{name: "JWKS", description: "token signing keys at AUTH_JWKS_URL", ping: authn.Ready})
		}
	}
	metrics := httpapi.NewMetrics(reg)
	o := &ops{checks: checks, ready: a.ready, reg: reg}
	var cmdEngine, queryEngine http.Handler
	var writes gin.IRouter // where POSTs arrive: the command engine when there is one
	if cfg.has("command") {
		storeGuard := guard.New(guard.Options{Name: "event store", Timeout: cfg.DepTimeout, Benign: storeAnswer, Logger: log})
		svc := command.NewService(guardedAppender{s: a.store, g: storeGuard}, validator, command.Options{})
		translator, err := newTranslator(cfg, validator)
		if err != nil {
			return nil, err
		}
		if cfg.IngestEnabled {
			if a.ingest, err = newConsumer(cfg, a, svc, translator, reg); err != nil {
				return nil, err
			}
		}
		e := command.NewEngine(svc, command.EngineDeps{
			Logger:     log,
			Metrics:    metrics,
			Middleware: []gin.HandlerFunc{authn.Require(auth.Write)},
			Author:     auth.Author,
			Events:     translator,
		})
		o.mount(e)
		apidocs.Mount(e)
		cmdEngine = e
		writes = e.FoldedEngine.Engine
		a.engines = append(a.engines, e.FoldedEngine.Engine)
	}
	if cfg.has("query") {
		secret, err := cursorSecret(cfg)
		if err != nil {
			return nil, err
		}
		modelGuard := guard.New(guard.Options{Name: "read model", Timeout: cfg.DepTimeout, Logger: log})
		qopts := query.Options{Validator: validator, CursorSecret: secret, ReadWaitMax: cfg.ReadWaitMax,
			SlowQuery: time.Duration(cfg.SlowQueryMS) * time.Millisecond}
		switch {
		case a.redis != nil:
			qopts.Applied = a.redis
		case a.projector != nil:
			qopts.Applied = a.projector
		}
		if head != nil {
			qopts.StartPosition = head.LastPosition
		}
		var reader query.Reader = guardedReader{r: a.model, g: modelGuard}
		if a.cache != nil {
			// A hit costs a map lookup; a miss gets the deadline and breaker.
			a.cache.ReadThrough(guardedReader{r: a.cache.Model, g: modelGuard})
			reader = a.cache
		}
		svc, err := query.New(reader, qopts)
		if err != nil {
			return nil, err
		}
		a.query = svc
		e := query.NewEngine(svc, query.EngineDeps{
			Logger:     log,
			Metrics:    metrics,
			Middleware: []gin.HandlerFunc{authn.Require(auth.Read)},
		})
		if err := mountAudit(e, writes, a, cfg, validator, secret, authn, reg); err != nil {
			return nil, err
		}
		o.mount(e)
		apidocs.Mount(e)
		ui.Mount(e, pageOptions(cfg, dev))
		queryEngine = e
		a.engines = append(a.engines, e.FoldedEngine.Engine)
	}
	if cmdEngine == nil && queryEngine == nil {
		// Projector only: still serve health and metrics.
		e := httpapi.NewEngine("ops", log, metrics)
		o.mount(e)
		queryEngine = httpapi.Fold(e)
		a.engines = append(a.engines, e)
	}
	if err := startRetention(a, cfg, validator, reg); err != nil {
		return nil, err
	}
	a.handler = httpapi.CORS(cfg.CORSAllowedOrigin, cfg.CORSAllowedHeader, splitByMethod(queryEngine, cmdEngine))
	return a, nil
}

// pageOptions say how the timeline page authenticates.
func pageOptions(cfg config, dev *devTokens) ui.Options {
	switch {
	case cfg.AuthDisabled:
		return ui.Options{Auth: ui.AuthDisabled}
	case dev != nil:
		return ui.Options{Auth: ui.AuthDev, DevToken: dev.pageToken}
	}
	return ui.Options{Auth: ui.AuthBearer}
}

// mountAudit adds replay, verify and export to the query engine when the
// process holds the event store, with what the store can do beyond
// eventstore.Store decided here, once.
func mountAudit(e *query.Engine, writes gin.IRouter, a *app, cfg config, v *activity.Validator, secret []byte, authn *auth.Authenticator, reg prometheus.Registerer) error {
	var st audit.Store
	switch {
	case a.store != nil:
		st = auditStore(a.store)
	case cfg.EventStoreURL != "":
		// A query-only process: the store is opened when an auditor first
		// needs it, so history never waits for it. JetStream keeps heads
		// and knows its last position; EventStoreDB does neither.
		l := &lazyStore{open: func(ctx context.Context) (store, error) { return openStore(ctx, cfg, a.log) }}
		a.closers = append(a.closers, l.Close)
		st.Streams = l
		if isNATSURL(cfg.EventStoreURL) {
			st.Heads, st.Log, st.Eraser = l, l, l
		}
	default:
		a.log.Warn("audit and export routes are off: this query process has no event store (set EVENTSTORE_URL)")
		return nil
	}
	cursors, err := query.NewCursors(secret)
	if err != nil {
		return err
	}
	svc, err := audit.New(st, audit.Options{Cursors: cursors, Validator: v, Registerer: reg})
	if err != nil {
		return err
	}
	a.audit = svc
	audit.Mount(e, svc, audit.Routes{
		Audit:      []gin.HandlerFunc{authn.Require(auth.Audit)},
		Export:     []gin.HandlerFunc{authn.Require(auth.Export)},
		Erase:      writes,
		Registerer: reg,
	})
	return nil
}

// auditStore is what the audit service may do with the store: decided
// here, once.
func auditStore(s store) audit.Store {
	st := audit.Store{Streams: s}
	st.Heads, _ = s.(audit.Heads)
	st.Log, _ = s.(audit.Log)
	st.Eraser, _ = s.(audit.Eraser)
	return st
}

// startRetention makes the job that erases expired payloads from the
// store, which the projector runs while it holds the lease. A projector
// without the query role gets an audit service of its own for it.
func startRetention(a *app, cfg config, v *activity.Validator, reg prometheus.Registerer) error {
	if a.projector == nil || cfg.RetentionEraseInterval <= 0 {
		return nil
	}
	if a.audit == nil {
		// Its cursors sign no token anyone sees: a throwaway key.
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		cursors, err := query.NewCursors(key)
		if err != nil {
			return err
		}
		if a.audit, err = audit.New(auditStore(a.store), audit.Options{Cursors: cursors, Validator: v, Registerer: reg}); err != nil {
			return err
		}
	}
	a.retention = a.audit.Retention(audit.RetentionOptions{Interval: cfg.RetentionEraseInterval, Scan: cfg.RetentionEraseScan, Logger: a.log})
	if a.retention == nil {
		a.log.Warn("retention: this event store cannot erase; expired payloads stay in it (reads still skip them)")
	}
	return nil
}

// leaseHolder names this process in the projector lease: its host and data
// directory, which no two running processes share. A process restarted
// after a crash is the same holder, so it takes its lease straight back
// instead of waiting out its dead predecessor's TTL.
func leaseHolder(cfg config) string {
	host, _ := os.Hostname()
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		dir = cfg.DataDir
	}
	return host + ":" + dir
}

// splitByMethod serves the all-in-one mode from one address: reads go to
// the query engine, writes to the command engine.
func splitByMethod(read, write http.Handler) http.Handler {
	switch {
	case read == nil:
		return write
	case write == nil:
		return read
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
			read.ServeHTTP(w, r)
		default:
			write.ServeHTTP(w, r)
		}
	})
}

func targetTypes(s []string) []activity.TargetType {
	out := make([]activity.TargetType, len(s))
	for i, t := range s {
		out[i] = activity.TargetType(t)
	}
	return out
}

func openStore(ctx context.Context, cfg config, log *slog.Logger) (store, error) {
	u := cfg.EventStoreURL
	switch {
	case u == "":
		s, err := natsjs.Open(ctx, natsjs.Config{
			DataDir:       filepath.Join(cfg.DataDir, "eventstore"),
			Replicas:      1,
			SyncAlways:    cfg.EventStoreSync == "always",
			Logger:        log,
			ServerOptions: cfg.listen,
		})
		if err != nil {
			return nil, fmt.Errorf("embedded event store: %w", err)
		}
		log.Info("event store: embedded JetStream", "dir", filepath.Join(cfg.DataDir, "eventstore"), "sync", cfg.EventStoreSync)
		return s, nil
	case isNATSURL(u):
		s, err := natsjs.Open(ctx, natsjs.Config{URLs: splitList(u), Replicas: cfg.EventStoreRepl, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("JetStream at %s: %w", redactURL(u), err)
		}
		log.Info("event store: JetStream", "url", redactURL(u), "replicas", cfg.EventStoreRepl)
		return s, nil
	case strings.HasPrefix(u, "esdb://") || strings.HasPrefix(u, "esdb+discover://") ||
		strings.HasPrefix(u, "kurrentdb://") || strings.HasPrefix(u, "kurrentdb+discover://"):
		s, err := esdb.Open(ctx, esdb.Config{URL: u, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("EventStoreDB at %s: %w", redactURL(u), err)
		}
		log.Info("event store: EventStoreDB/KurrentDB", "url", redactURL(u))
		return s, nil
	default:
		return nil, fmt.Errorf("EVENTSTORE_URL=%q: want nats://, esdb:// or kurrentdb://", redactURL(u))
	}
}

func openReadModel(ctx context.Context, cfg config, a *app) (readModel, *projection.Redis, error) {
	if cfg.RedisURL == "" {
		a.log.Info("read model: in memory, rebuilt from the event store")
		return projection.NewMemory(), nil, nil
	}
	r, closeRedis, err := openRedis(ctx, cfg, a.log)
	if err != nil {
		return nil, nil, err
	}
	a.closers = append(a.closers, closeRedis)
	return r, r, nil
}

// openRedis connects to the Redis read model and learns which generation
// of it readers use.
func openRedis(ctx context.Context, cfg config, log *slog.Logger) (*projection.Redis, func() error, error) {
	var c redis.UniversalClient
	if cfg.RedisCluster {
		opts, err := redis.ParseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		// Calls end at their context's deadline, not at the client's
		// read timeout (and its retries) much later.
		opts.ContextTimeoutEnabled = true
		c = redis.NewClusterClient(opts)
	} else {
		opts, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, fmt.Errorf("REDIS_URL: %w", err)
		}
		opts.ContextTimeoutEnabled = true
		c = redis.NewClient(opts)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", redactURL(cfg.RedisURL), err)
	}
	r := projection.NewRedis(c, cfg.RedisPrefix)
	if err := r.Refresh(pctx); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("redis at %s: %w", redactURL(cfg.RedisURL), err)
	}
	log.Info("read model: Redis", "url", redactURL(cfg.RedisURL), "prefix", cfg.RedisPrefix, "cluster", cfg.RedisCluster)
	return r, c.Close, nil
}

func storeDescription(cfg config) string {
	if cfg.EventStoreURL == "" {
		return "embedded JetStream"
	}
	return "event store at " + redactURL(cfg.EventStoreURL)
}

func modelDescription(cfg config) string {
	if cfg.RedisURL == "" {
		return "in-memory read model"
	}
	return "Redis read model"
}

// redactURL drops credentials so that URLs can be logged.
func redactURL(u string) string {
	parts := splitList(u)
	for i, p := range parts {
		if at := strings.LastIndex(p, "@"); at >= 0 {
			if s := strings.Index(p, "://"); s >= 0 && s < at {
				parts[i] = p[:s+3] + "***@" + p[at+1:]
			}
		}
	}
	return strings.Join(parts, ",")
}

// cursorSecret is CURSOR_SECRET, or one generated once and kept under the
// data dir so that tokens outlive a restart of the all-in-one service.
func cursorSecret(cfg config) ([]byte, error) {
	if cfg.CursorSecret != "" {
		return []byte(cfg.CursorSecret), nil
	}
	return persistedSecret(filepath.Join(cfg.DataDir, "cursor.key"))
}

func persistedSecret(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if s := strings.TrimSpace(string(b)); len(s) >= 32 {
			return []byte(s), nil
		}
		return nil, fmt.Errorf("%s: too short; delete it to generate a new one", path)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read secret: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	s := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("write secret: %w", err)
	}
	return []byte(s), nil
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			a.log.Warn("close", "err", err)
		}
	}
	a.closers = nil
}

// run serves on ln until ctx ends, then drains.
func (a *app) run(ctx context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if a.cfg.PprofAddr != "" {
		if _, err := servePprof(ctx, a.cfg.PprofAddr, a.log); err != nil {
			return err
		}
	}
	errc := make(chan error, 3)
	if a.ingest != nil {
		// The store closes after run returns: let the consumer stop first.
		done := a.runIngest(ctx, errc)
		defer func() { <-done }()
	}
	// Background parts end before run returns, so that the projector gives
	// its lease up while Redis is still open.
	var bg sync.WaitGroup
	defer bg.Wait()
	if a.redis != nil && a.query != nil {
		bg.Go(func() { _ = a.redis.Follow(ctx) })
		if a.cache != nil {
			bg.Go(func() { a.cache.FollowRedis(ctx) })
		}
	}
	if a.projector != nil && a.redis != nil {
		// `activityhistory rebuild` without a store of its own asks here.
		head, _ := a.store.(projection.HeadReader)
		bg.Go(func() {
			a.redis.ServeRebuilds(ctx, a.store, projection.RebuildOptions{Logger: a.log, Head: head, LeaseTTL: a.cfg.ProjectorLeaseTTL})
		})
	}
	if a.projector != nil {
		bg.Go(func() {
			if err := a.projector.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("projector: %w", err)
			}
		})
	}
	srv := &http.Server{
		Handler:           a.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      httpWriteTimeout,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	go a.becomeReady(ctx)
	a.log.Info("serving", "addr", ln.Addr().String(), "roles", strings.Join(a.cfg.Roles, ","))

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	a.ready.Store(false)
	a.log.Info("shutting down")
	sctx, scancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		a.log.Warn("http shutdown", "err", err)
	}
	cancel()
	return runErr
}

// becomeReady flips readiness once the read model has caught up with what
// the store held at start (the gate reads pass too), so a new replica
// never serves a partial history.
func (a *app) becomeReady(ctx context.Context) {
	if a.query != nil {
		for {
			err := a.query.Await(ctx, 0)
			if err == nil {
				a.log.Info("read model caught up")
				break
			}
			if eventstore.Sleep(ctx, 100*time.Millisecond) != nil {
				return
			}
		}
	}
	a.ready.Store(true)
}
