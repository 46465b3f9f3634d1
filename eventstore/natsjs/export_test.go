package natsjs

import "time"

// TamperableConfig returns cfg for a store whose JetStream stream allows
// deleting and purging messages and keeps message ids for dupWindow only
// (0: the default), so that tests can tamper with it the way someone with
// server access could. Tests only: the product never opens such a stream.
func TamperableConfig(cfg Config, dupWindow time.Duration) Config {
	cfg.allowDelete = true
	cfg.dupWindow = dupWindow
	return cfg
}

// EventSubject is the subject of stream's events.
func (s *Store) EventSubject(stream string) string { return s.evSubject(stream) }

// IDSubject is the subject of an event id's index message.
func (s *Store) IDSubject(id string) string { return s.idSubject(id) }

// HeadSubject is the subject of stream's recorded head.
func (s *Store) HeadSubject(stream string) string { return s.headSubject(stream) }
