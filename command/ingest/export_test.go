package ingest

// WithBeforeAck returns cfg with f run after each event is handled and
// before its ack, so tests can stop a process in between.
func WithBeforeAck(cfg Config, f func(Outcome)) Config {
	cfg.beforeAck = f
	return cfg
}
