// Package esdb is the KurrentDB (formerly EventStoreDB) adapter of
// eventstore.Store.
//
// One server stream per target (StreamPrefix + target id), appended with the
// server's expected-revision check so that the hash chain never forks; the
// global position is the server's $all commit position; Subscribe follows
// $all with a server-side stream-prefix filter. Event ids are kept unique
// across the store by one id-index stream per event id, written in the same
// multi-stream append as the events (see backend).
//
// Server: KurrentDB 25.1 or later, the first with multi-stream append; Open
// refuses older ones. Subscribe reads $all, which by default only $admins
// and $ops may do.
package esdb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

// DefaultStreamPrefix is prepended to every target id to name its stream.
const DefaultStreamPrefix = "activity-"

// Config configures Open.
type Config struct {
	// URL is a connection string, e.g. esdb://localhost:2113?tls=false or
	// kurrentdb://admin:changeit@node1:2113,node2:2113?tls=true.
	URL string
	// StreamPrefix names streams: StreamPrefix + target id. Default
	// DefaultStreamPrefix. Subscribe delivers every stream with this prefix.
	StreamPrefix string
	// Logger receives the adapter's and the client's logs; nil discards them.
	Logger *slog.Logger
}

// Store is an eventstore.Store on EventStoreDB / KurrentDB: the shared
// append engine over this package's backend.
type Store struct {
	*eventstore.Engine
	client   *kurrentdb.Client
	prefix   string
	idPrefix string
	log      *slog.Logger
}

var _ eventstore.Store = (*Store)(nil)

// Open connects to the server and checks that it answers and has
// multi-stream append.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	conf, err := parseConfig(cfg.URL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix := cfg.StreamPrefix
	if prefix == "" {
		prefix = DefaultStreamPrefix
	}
	if strings.HasPrefix(prefix, "$") || !utf8.ValidString(prefix) {
		return nil, fmt.Errorf("open esdb: %w: stream prefix %q: want UTF-8 not starting with $ (the server's own streams)", eventstore.ErrInvalid, prefix)
	}
	conf.Logger = clientLogger(log)
	client, err := kurrentdb.NewClient(conf)
	if err != nil {
		return nil, fmt.Errorf("open esdb %s: %w", redact(cfg.URL), err)
	}
	s := newStore(client, prefix, log)
	err = s.Ping(ctx)
	if err == nil {
		err = s.checkVersion(ctx)
	}
	if err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("open esdb %s: %w", redact(cfg.URL), err)
	}
	return s, nil
}

func newStore(client *kurrentdb.Client, prefix string, log *slog.Logger) *Store {
	s := &Store{client: client, prefix: prefix, idPrefix: idStreamPrefix(prefix), log: log}
	s.Engine = eventstore.NewEngine(backend{s}, eventstore.EngineConfig{
		AppendTimeout: opTimeout,
		// A multi-stream append refuses recorded ids by itself.
		Optimistic: true,
	})
	return s
}

// Close closes the connection. Subscriptions end with an error.
func (s *Store) Close() error {
	s.Engine.Close()
	return s.client.Close()
}

// Ping reads one event of a stream that normally does not exist: any answer
// from the server, "not found" included, means it is up and lets us in.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	_, err := s.readStream(ctx, s.idPrefix+"ping", kurrentdb.Backwards, kurrentdb.End{}, 1)
	switch {
	case err == nil || errors.Is(err, eventstore.ErrNotFound):
		return nil
	case errors.Is(err, eventstore.ErrUnavailable) || ctx.Err() != nil:
		return err
	}
	return fmt.Errorf("%w: %w", eventstore.ErrUnavailable, err)
}

// checkVersion refuses a server without multi-stream append, on which
// event ids could not be kept unique.
func (s *Store) checkVersion(ctx context.Context) error {
	v, err := s.client.GetServerVersion()
	if err != nil {
		return translate(ctx, "server version", err)
	}
	if !v.IsAtLeast(25, 1, 0) {
		return fmt.Errorf("%w: server version %d.%d.%d (0.0.0: too old to say) has no multi-stream append: needs KurrentDB 25.1 or later",
			eventstore.ErrInvalid, v.Major, v.Minor, v.Patch)
	}
	return nil
}

// parseConfig parses a connection string. The client takes the schemes
// esdb, kurrentdb, kurrent and kdb, each optionally +discover.
func parseConfig(conn string) (*kurrentdb.Configuration, error) {
	conf, err := kurrentdb.ParseConnectionString(strings.TrimSpace(conn))
	if err != nil {
		// The client's message can echo the password; ours does not.
		return nil, fmt.Errorf("open esdb: %w: connection string %q: want esdb://host:2113?tls=false or kurrentdb://… (schemes esdb, kurrentdb, kurrent, kdb, each optionally +discover)",
			eventstore.ErrInvalid, redact(conn))
	}
	return conf, nil
}

// redact hides the password of a connection string for messages and logs.
func redact(conn string) string {
	scheme, rest, ok := strings.Cut(conn, "://")
	if !ok {
		return conn
	}
	at := strings.LastIndex(rest, "@")
	if slash := strings.IndexAny(rest, "/?"); at < 0 || (slash >= 0 && slash < at) {
		return conn
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return conn
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// clientLogger sends the client's own logs to slog, one level down: the
// client logs every failed call as an error, and this adapter already
// returns or logs those with context.
func clientLogger(log *slog.Logger) kurrentdb.LoggingFunc {
	return func(level kurrentdb.LogLevel, format string, args ...any) {
		lvl := slog.LevelDebug
		if level == kurrentdb.LogError || level == kurrentdb.LogWarn {
			lvl = slog.LevelInfo
		}
		log.Log(context.Background(), lvl, "kurrentdb client: "+fmt.Sprintf(format, args...), "level", level)
	}
}

// streamName is the server stream of one of our streams.
func (s *Store) streamName(stream string) string { return s.prefix + stream }

// idStreamName is the index stream of one event id: fixed length whatever
// the id, and outside the data prefix.
func (s *Store) idStreamName(id string) string {
	sum := sha256.Sum256([]byte(id))
	return s.idPrefix + hex.EncodeToString(sum[:])
}
