package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/command/ingest"
)

// ingestConfig is the configuration of entity-event ingest and of the
// embedded server's listener its publishers reach.
type ingestConfig struct {
	IngestEnabled     bool
	IngestURL         string
	IngestStream      string
	IngestSubjects    []string
	IngestDLQStream   string
	IngestMappingFile string
	IngestAckWait     time.Duration
	NATSListen        string
	NATSUser          string
	NATSPassword      string
	NATSNKeys         []string
}

// flags binds the settings; serve adds those only the service uses.
func (c *ingestConfig) flags(e *envFlags, serve bool) {
	if serve {
		e.boolean(&c.IngestEnabled, "ingest-enabled", "INGEST_ENABLED", false, "the command role consumes entity events from JetStream")
		e.list(&c.IngestSubjects, "ingest-subjects", "INGEST_SUBJECTS", ingest.DefaultSubjects, "subjects of the entity events stream when it is created; default "+ingest.DefaultSubjects)
		e.duration(&c.IngestAckWait, "ingest-ack-wait", "INGEST_ACK_WAIT", ingest.DefaultAckWait, "an entity event not acknowledged by then is delivered again")
		e.str(&c.NATSListen, "nats-listen", "NATS_LISTEN", "", "host:port where the embedded NATS server accepts clients (entity event publishers); empty = none")
		e.str(&c.NATSUser, "nats-user", "NATS_USER", "", "user clients of NATS_LISTEN must give")
		e.str(&c.NATSPassword, "nats-password", "NATS_PASSWORD", "", "password of NATS_USER")
		e.list(&c.NATSNKeys, "nats-nkeys", "NATS_NKEYS", "", "public user nkeys (U…) allowed to connect to NATS_LISTEN")
	}
	e.str(&c.IngestURL, "ingest-url", "INGEST_URL", "", "NATS server(s) of the entity events, nats://[user:pass@]host:4222[,…]; empty = the event store's own server")
	e.str(&c.IngestStream, "ingest-stream", "INGEST_STREAM", ingest.DefaultStream, "JetStream stream of the entity events")
	e.str(&c.IngestDLQStream, "ingest-dlq-stream", "INGEST_DLQ_STREAM", ingest.DefaultDLQStream, "JetStream stream of dead letters")
	e.str(&c.IngestMappingFile, "ingest-mapping-file", "INGEST_MAPPING_FILE", "", "file of event type mappings added over the built-in ones")
}

func (c *config) checkIngest() []error {
	var errs []error
	if c.IngestEnabled && !c.has("command") {
		errs = append(errs, errors.New("INGEST_ENABLED=true needs the command role"))
	}
	if c.IngestEnabled && c.IngestURL == "" && c.EventStoreURL != "" && !isNATSURL(c.EventStoreURL) {
		errs = append(errs, errors.New("INGEST_ENABLED=true with EventStoreDB: set INGEST_URL to the NATS server of the entity events"))
	}
	if c.NATSUser != "" && c.NATSPassword == "" {
		errs = append(errs, errors.New("NATS_USER is set without NATS_PASSWORD"))
	}
	if c.NATSListen == "" {
		return errs
	}
	if c.EventStoreURL != "" {
		return append(errs, errors.New("NATS_LISTEN applies to the embedded event store only; EVENTSTORE_URL names an external one"))
	}
	host, _, err := net.SplitHostPort(c.NATSListen)
	if err != nil {
		return append(errs, fmt.Errorf("NATS_LISTEN=%q: want host:port", c.NATSListen))
	}
	ip := net.ParseIP(host)
	loopback := host == "localhost" || ip != nil && ip.IsLoopback()
	if !loopback && c.NATSUser == "" && len(c.NATSNKeys) == 0 {
		errs = append(errs, fmt.Errorf("NATS_LISTEN=%q listens beyond loopback: set NATS_USER and NATS_PASSWORD, or NATS_NKEYS", c.NATSListen))
	}
	return errs
}

// listen sets the embedded server up to accept the clients of NATS_LISTEN
// (entity event publishers) and returns what the store's own in-process
// connection needs to authenticate: once any client must, so must it, with
// a user made up for this run.
func (c ingestConfig) listen(opts *server.Options) ([]nats.Option, error) {
	if c.NATSListen == "" {
		return nil, nil
	}
	host, port, err := net.SplitHostPort(c.NATSListen)
	if err != nil {
		return nil, fmt.Errorf("NATS_LISTEN=%q: %w", c.NATSListen, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("NATS_LISTEN=%q: bad port", c.NATSListen)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts.DontListen, opts.Host, opts.Port = false, host, p
	if c.NATSUser == "" && len(c.NATSNKeys) == 0 {
		return nil, nil
	}
	if c.NATSUser != "" {
		opts.Users = append(opts.Users, &server.User{Username: c.NATSUser, Password: c.NATSPassword})
	}
	for _, k := range c.NATSNKeys {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: k})
	}
	const self = "activityhistory-internal"
	pass := rand.Text()
	opts.Users = append(opts.Users, &server.User{Username: self, Password: pass})
	return []nats.Option{nats.UserInfo(self, pass)}, nil
}

func isNATSURL(u string) bool {
	return strings.HasPrefix(u, "nats://") || strings.HasPrefix(u, "tls://")
}

// newTranslator loads the mapping: the built-in one and INGEST_MAPPING_FILE.
func newTranslator(cfg config, v *activity.Validator) (*ingest.Translator, error) {
	m, err := ingest.LoadMapping(cfg.IngestMappingFile, v.TargetTypes())
	if err != nil {
		return nil, fmt.Errorf("INGEST_MAPPING_FILE: %w", err)
	}
	return ingest.NewTranslator(m, v), nil
}

// natsConn is a connection to the entity events' server: INGEST_URL, or
// the event store's own connection. close is nil when it is the store's.
func natsConn(cfg config, s store, log *slog.Logger) (nc *nats.Conn, close func() error, err error) {
	if cfg.IngestURL != "" {
		nc, err := nats.Connect(cfg.IngestURL,
			nats.Name("activityhistory-ingest"),
			nats.Timeout(5*time.Second),
			nats.MaxReconnects(-1),
			nats.ReconnectWait(500*time.Millisecond),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("ingest: nats disconnected", "err", err) }),
			nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("ingest: nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		)
		if err != nil {
			return nil, nil, fmt.Errorf("INGEST_URL %s: %w", redactURL(cfg.IngestURL), err)
		}
		return nc, func() error { nc.Close(); return nil }, nil
	}
	if c, ok := s.(interface{ Conn() *nats.Conn }); ok {
		return c.Conn(), nil, nil
	}
	return nil, nil, errors.New("the event store is not on NATS: set INGEST_URL")
}

// newConsumer wires the entity-event consumer of the command role.
func newConsumer(cfg config, a *app, svc *command.Service, t *ingest.Translator, reg prometheus.Registerer) (*ingest.Consumer, error) {
	nc, closeConn, err := natsConn(cfg, a.store, a.log)
	if err != nil {
		return nil, err
	}
	if closeConn != nil {
		a.closers = append(a.closers, closeConn)
	}
	return ingest.NewConsumer(nc, ingest.NewProcessor(t, svc), ingest.Config{
		Stream:     cfg.IngestStream,
		Subjects:   cfg.IngestSubjects,
		DLQStream:  cfg.IngestDLQStream,
		AckWait:    cfg.IngestAckWait,
		Logger:     a.log,
		Registerer: reg,
	})
}

// runIngest consumes until ctx ends; done is closed when it has stopped.
func (a *app) runIngest(ctx context.Context, errc chan<- error) (done chan struct{}) {
	done = make(chan struct{})
	go func() {
		defer close(done)
		if err := a.ingest.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("ingest: %w", err)
		}
	}()
	return done
}
