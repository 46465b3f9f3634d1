package natsjs

import (
	"crypto/rand"
	"fmt"
	"net"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/council/activityhistory/eventstore"
)

// Conn is the store's own NATS connection, for other clients of the same
// server (the entity-event consumer). Closed by Close.
func (s *Store) Conn() *nats.Conn { return s.nc }

// listenOptions sets the embedded server up to listen on cfg.Listen and
// returns what the store's own in-process connection needs to
// authenticate: once any client must, so must it, with a user made up for
// this run.
func listenOptions(opts *server.Options, cfg Config) ([]nats.Option, error) {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w: %w", cfg.Listen, err, eventstore.ErrInvalid)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("listen address %q: bad port: %w", cfg.Listen, eventstore.ErrInvalid)
	}
	if p == 0 {
		p = server.RANDOM_PORT
	}
	opts.DontListen, opts.Host, opts.Port = false, host, p
	if cfg.ListenUser == "" && len(cfg.ListenNKeys) == 0 {
		return nil, nil
	}
	if cfg.ListenUser != "" {
		opts.Users = append(opts.Users, &server.User{Username: cfg.ListenUser, Password: cfg.ListenPassword})
	}
	for _, k := range cfg.ListenNKeys {
		opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: k})
	}
	const self = "activityhistory-internal"
	pass := rand.Text()
	opts.Users = append(opts.Users, &server.User{Username: self, Password: pass})
	return []nats.Option{nats.UserInfo(self, pass)}, nil
}
