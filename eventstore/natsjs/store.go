// Package natsjs is the JetStream adapter of eventstore.Store: one
// JetStream stream holds every event stream, one subject per event stream,
// plus one subject per event id that makes ids unique store-wide. Each
// event stream's head is also recorded in a key-value bucket beside the
// stream (index.go), so that verification finds removed records. It runs
// an embedded nats-server (no listener, file storage) or connects to
// external servers, one or a cluster.
package natsjs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// Config configures Open.
type Config struct {
	// URLs of external NATS servers; empty runs an embedded server.
	URLs []string
	// DataDir holds the embedded server's JetStream files (DataDir/jetstream).
	DataDir string
	// Stream is the JetStream stream name; default "ACTIVITY".
	Stream string
	// SubjectPrefix is the first subject token; default "ah".
	SubjectPrefix string
	// Replicas of the JetStream stream; default 1. Embedded needs 1.
	Replicas int
	// SyncAlways makes appends to an embedded server fsync before their
	// ack: the store fsyncs once per group (syncEvents). External servers
	// take this from their own configuration.
	SyncAlways bool
	// Logger receives connection and embedded-server events; nil discards.
	Logger *slog.Logger
	// ServerOptions, when set, adjusts the embedded server's options, e.g.
	// a listener for other clients; it returns what the store's own
	// in-process connection needs to authenticate, if anything.
	ServerOptions func(*server.Options) ([]nats.Option, error)

	// Set only by tests (export_test.go): a stream that allows deleting
	// and purging messages, and a shorter duplicate window, so tests can
	// tamper with it; a store that runs no indexer.
	allowDelete bool
	dupWindow   time.Duration
	noRepair    bool
	repairEvery time.Duration // how often the indexer saves its checkpoint
}

const (
	defaultStream = "ACTIVITY"
	defaultPrefix = "ah"
	// requestTimeout bounds a backend round trip whose ctx has no deadline.
	requestTimeout = 10 * time.Second
	// attemptTimeout bounds one try of a round trip that is tried again
	// when it times out. A request that reached a node just before it died
	// is never answered; it should cost this, not the whole deadline.
	attemptTimeout = 3 * time.Second
	// headroom above the event bytes for headers (ids, hashes, batch headers).
	msgHeadroom = 64 << 10
	// maxBatchMsgs is nats-server's default limit per atomic batch.
	maxBatchMsgs = 1000
	// asyncMaxPending bounds the publishes awaiting their acks.
	asyncMaxPending = 16384
)

// Store is an eventstore.Store on JetStream: the shared append engine
// over this package's backend.
type Store struct {
	*eventstore.Engine
	cfg     Config
	log     *slog.Logger
	ns      *server.Server // nil when external
	dir     *dirLock       // the embedded server's data dir; nil when external
	nc      *nats.Conn
	js      jetstream.JetStream
	kv      jetstream.KeyValue // recorded heads
	evAll   string             // <prefix>.ev.>
	kvs     eventstore.Cache[kvSeq]
	replies replyMux
	// denyDelete: a stream created before erasure, which cannot erase.
	denyDelete bool

	life      context.Context // ends with Close
	end       context.CancelFunc
	workers   sync.WaitGroup
	closeOnce sync.Once

	syncMu sync.Mutex
	synced int // the newest message block fsynced

	ix             indexState
	indexed        atomic.Uint64 // id-index entries the indexer wrote
	indexConflicts atomic.Uint64 // ids found indexed to another record
}

var _ eventstore.Store = (*Store)(nil)

// Open starts or connects to NATS and creates or updates the JetStream
// stream.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	cfg.Stream = cmp.Or(cfg.Stream, defaultStream)
	cfg.SubjectPrefix = cmp.Or(cfg.SubjectPrefix, defaultPrefix)
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	cfg.Logger = cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler))
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:   cfg,
		log:   cfg.Logger,
		evAll: cfg.SubjectPrefix + ".ev.>",
		ix:    indexState{wake: make(chan struct{}), heads: map[string]eventstore.Head{}},
		kvs:   eventstore.Cache[kvSeq]{Max: 100_000},
	}
	s.life, s.end = context.WithCancel(context.Background())
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// open runs or connects to the server and sets the store up; Close undoes
// what it did.
func (s *Store) open(ctx context.Context) (err error) {
	if len(s.cfg.URLs) == 0 {
		err = s.startEmbedded()
	} else {
		err = s.connect()
	}
	if err != nil {
		return err
	}
	if err := s.replies.subscribe(s.nc); err != nil {
		return fmt.Errorf("open natsjs: %w", backendErr(ctx, err))
	}
	if s.js, err = jetstream.New(s.nc, jetstream.WithPublishAsyncMaxPending(asyncMaxPending),
		// An ack a dying leader never sends fails the publish.
		jetstream.WithPublishAsyncTimeout(attemptTimeout)); err != nil {
		return fmt.Errorf("open natsjs: %w", err)
	}
	if err := s.ensureStream(ctx); err != nil {
		return err
	}
	if err := s.ensureHeads(ctx); err != nil {
		return err
	}
	s.Engine = eventstore.NewEngine(backend{s}, eventstore.EngineConfig{
		AttemptTimeout: attemptTimeout,
		AppendTimeout:  requestTimeout,
		MaxBatchEvents: maxBatchMsgs,
		MaxGroupEvents: maxBatchMsgs,
	})
	if s.cfg.noRepair {
		return nil
	}
	return s.startIndexer(ctx)
}

// startIndexer runs the indexer. Appends wait until it has passed the
// events stored before now: one left unindexed by a writer that stopped
// may be past the duplicate window already.
func (s *Store) startIndexer(ctx context.Context) error {
	var done uint64
	err := s.retryUnavailable(ctx, func() (err error) { done, err = s.loadCheckpoint(ctx); return err })
	if err != nil {
		return fmt.Errorf("open natsjs: %w", err)
	}
	last, err := s.LastPosition(ctx)
	if err != nil {
		return fmt.Errorf("open natsjs: %w", err)
	}
	s.ix.done = done
	if last > done {
		s.ix.pending = []lagMark{{pos: last}}
	}
	s.workers.Add(1)
	go s.indexLoop(s.life)
	return nil
}

// dupWindow is how long the server remembers a message id.
func (s *Store) dupWindow() time.Duration {
	return cmp.Or(s.cfg.dupWindow, 10*time.Minute)
}

func checkConfig(cfg Config) error {
	switch {
	case len(cfg.URLs) == 0 && cfg.DataDir == "":
		return fmt.Errorf("open natsjs: embedded server needs a data dir: %w", eventstore.ErrInvalid)
	case len(cfg.URLs) == 0 && cfg.Replicas != 1:
		return fmt.Errorf("open natsjs: embedded server takes 1 replica, not %d: %w", cfg.Replicas, eventstore.ErrInvalid)
	case cfg.Replicas < 1 || cfg.Replicas > 5:
		return fmt.Errorf("open natsjs: replicas %d not in 1..5: %w", cfg.Replicas, eventstore.ErrInvalid)
	case !validBucket(cfg.Stream) || len(cfg.Stream)+len(headsSuffix) > 255:
		// The heads bucket is named after the stream.
		return fmt.Errorf("open natsjs: stream name %q: want letters, digits, - and _: %w", cfg.Stream, eventstore.ErrInvalid)
	}
	for _, tok := range strings.Split(cfg.SubjectPrefix, ".") {
		if tok == "" || strings.ContainsAny(tok, " \t\r\n*>") {
			return fmt.Errorf("open natsjs: subject prefix %q: %w", cfg.SubjectPrefix, eventstore.ErrInvalid)
		}
	}
	return nil
}

func (s *Store) startEmbedded() (err error) {
	// Before anything is opened for write: one server per data dir.
	lock, err := lockDir(s.cfg.DataDir)
	if err != nil {
		return fmt.Errorf("open natsjs: %w", err)
	}
	s.dir = lock
	opts := &server.Options{
		ServerName: "activityhistory",
		JetStream:  true,
		StoreDir:   filepath.Join(s.cfg.DataDir, "jetstream"),
		DontListen: true,
		NoSigs:     true,
	}
	var auth []nats.Option
	if s.cfg.ServerOptions != nil {
		if auth, err = s.cfg.ServerOptions(opts); err != nil {
			return fmt.Errorf("open natsjs: %w", err)
		}
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("start embedded nats: %w", err)
	}
	ns.SetLoggerV2(serverLog{s.log}, false, false, false)
	s.ns = ns // shut down by Close, also when this fails
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		return fmt.Errorf("start embedded nats: not ready in 30s: %w", eventstore.ErrUnavailable)
	}
	if s.nc, err = nats.Connect(ns.ClientURL(), append(auth, nats.InProcessServer(ns), nats.Name("activityhistory"))...); err != nil {
		return fmt.Errorf("connect embedded nats: %w", err)
	}
	s.log.Info("embedded nats started", "store_dir", opts.StoreDir, "sync_always", s.cfg.SyncAlways, "listen", !opts.DontListen)
	return nil
}

func (s *Store) connect() error {
	log := s.log
	nc, err := nats.Connect(strings.Join(s.cfg.URLs, ","),
		nats.Name("activityhistory"),
		nats.Timeout(5*time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// Close disconnects too, with no error: that is no news.
			if err != nil && !s.closed() {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			log.Warn("nats async error", "err", err)
		}),
	)
	if err != nil {
		return fmt.Errorf("connect nats: %w: %w", eventstore.ErrUnavailable, err)
	}
	s.nc = nc
	return nil
}

func (s *Store) streamConfig() jetstream.StreamConfig {
	p := s.cfg.SubjectPrefix
	// The window refuses an id written again before the indexer has
	// indexed it (index.go); the id index covers the time after it.
	dup := s.dupWindow()
	return jetstream.StreamConfig{
		Name:        s.cfg.Stream,
		Description: "Activity History event store",
		Subjects:    []string{p + ".ev.>", p + ".id.>", p + ".er.>"},
		Retention:   jetstream.LimitsPolicy,
		// No limit may ever drop an event.
		MaxConsumers:       -1,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		Discard:            jetstream.DiscardNew,
		MaxMsgSize:         eventstore.MaxEventBytes + msgHeadroom,
		Storage:            jetstream.FileStorage,
		Replicas:           s.cfg.Replicas,
		Duplicates:         dup,
		DenyDelete:         s.denyDelete, // erasure deletes messages (erase.go)
		DenyPurge:          !s.cfg.allowDelete,
		AllowDirect:        true,
		AllowAtomicPublish: true,
	}
}

func (s *Store) ensureStream(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	var err error
	if s.denyDelete, err = s.deletesDenied(ctx); err != nil {
		return err
	}
	st, err := s.js.CreateOrUpdateStream(ctx, s.streamConfig())
	if err != nil {
		return fmt.Errorf("create stream %s: %w", s.cfg.Stream, backendErr(ctx, err))
	}
	// Servers before 2.12 drop settings they do not know.
	if got := st.CachedInfo().Config; !got.AllowAtomicPublish || !got.AllowDirect {
		return fmt.Errorf("stream %s: server lacks atomic batch publish or direct get (needs nats-server 2.12+)", s.cfg.Stream)
	}
	return nil
}

// Conn is the store's own NATS connection, for other clients of the same
// server (the entity-event consumer). Closed by Close.
func (s *Store) Conn() *nats.Conn { return s.nc }

// Ping checks that JetStream answers and the stream exists.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := s.js.Stream(ctx, s.cfg.Stream); err != nil {
		return fmt.Errorf("ping %s: %w", s.cfg.Stream, backendErr(ctx, err))
	}
	return nil
}

// Close closes the connection and shuts the embedded server down. Running
// subscriptions end with ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.Engine != nil {
			s.Engine.Close()
		}
		s.end()
		if s.nc != nil {
			s.nc.Close() // fails a batch in flight at once
		}
		s.workers.Wait()
		if s.ns != nil {
			s.ns.Shutdown()
			s.ns.WaitForShutdown()
		}
		s.dir.release()
	})
	return nil
}

func (s *Store) closed() bool { return s.life.Err() != nil }

// retryUnavailable runs op until it succeeds, fails otherwise than with
// ErrUnavailable, or ctx ends: it waits out an election or a reconnect.
// Only for operations that change nothing; op bounds its own requests.
func (s *Store) retryUnavailable(ctx context.Context, op func() error) error {
	for n := 1; ; n++ {
		err := op()
		if err == nil || !errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil || s.closed() {
			return err
		}
		if eventstore.Sleep(ctx, eventstore.UnavailableBackoff(n)) != nil {
			return err
		}
	}
}

func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestTimeout)
}

// backendErr maps a transport or JetStream error: the caller's own
// cancellation stays itself, everything that says "cannot reach" becomes
// ErrUnavailable.
func backendErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err
	}
	switch {
	case errors.Is(err, nats.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrStreamNotFound),
		errors.Is(err, jetstream.ErrMsgIteratorClosed),
		errors.Is(err, jetstream.ErrConnectionClosed):
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	switch apiCode(err) {
	case codeClusterIncomplete, codeClusterNotActive, codeClusterNotAvail, codeClusterNotLeader,
		codeStreamOffline, codeStreamOfflineReason, codeTooManyRequests:
		return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
	}
	return err
}

// JetStream error codes that mean "no leader right now" or "busy": an
// election or a restart, over in seconds (nats-server errors.json).
const (
	codeClusterIncomplete   = 10004
	codeClusterNotActive    = 10006
	codeClusterNotAvail     = 10008
	codeClusterNotLeader    = 10009
	codeStreamOffline       = 10118
	codeStreamOfflineReason = 10194
	codeTooManyRequests     = 10167
)

// serverLog sends the embedded server's log to slog; notices are startup
// chatter, so they go to debug.
type serverLog struct{ l *slog.Logger }

func (g serverLog) Noticef(format string, v ...any) { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g serverLog) Warnf(format string, v ...any)   { g.l.Warn(fmt.Sprintf(format, v...)) }
func (g serverLog) Fatalf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g serverLog) Errorf(format string, v ...any)  { g.l.Error(fmt.Sprintf(format, v...)) }
func (g serverLog) Debugf(format string, v ...any)  { g.l.Debug(fmt.Sprintf(format, v...)) }
func (g serverLog) Tracef(format string, v ...any)  {}
