package esdb

import (
	"context"
	"errors"
	"io"

	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

// readStream reads up to n events of a server stream; ErrNotFound when the
// stream does not exist (or was deleted).
func (s *Store) readStream(ctx context.Context, name string, dir kurrentdb.Direction, from kurrentdb.StreamPosition, n int) ([]eventstore.Record, error) {
	rs, err := s.client.ReadStream(ctx, name, kurrentdb.ReadStreamOptions{Direction: dir, From: from}, uint64(n))
	return s.collect(ctx, "read "+name, rs, err, n)
}

// collect receives up to n events of a read that returned rs, err.
func (s *Store) collect(ctx context.Context, what string, rs *kurrentdb.ReadStream, err error, n int) ([]eventstore.Record, error) {
	if err != nil {
		return nil, translate(ctx, what, err)
	}
	defer rs.Close()
	recs := make([]eventstore.Record, 0, min(n, 1024))
	for len(recs) < n {
		ev, err := rs.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, translate(ctx, what, err)
		}
		if ev.Event != nil {
			recs = append(recs, toRecord(s.prefix, ev.Event))
		}
	}
	return recs, nil
}
