package esdb

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/council/activityhistory/eventstore"
)

func TestAppendRefusesBeforeTouchingTheServer(t *testing.T) {
	t.Parallel()
	s := newStore(nil, DefaultStreamPrefix, slog.New(slog.DiscardHandler)) // no client: any server call would panic
	defer s.Engine.Close()
	ctx := context.Background()
	_, err := s.Append(ctx, "t-1", eventstore.Any,
		eventstore.Event{ID: "a", Type: "create", Data: []byte("1")},
		eventstore.Event{ID: "a", Type: "create", Data: []byte("2")})
	if !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Errorf("same id, different data in one call: %v, want ErrDuplicateID", err)
	}
	if _, err := s.Append(ctx, "", eventstore.Any, eventstore.Event{ID: "a", Type: "create"}); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("empty stream: %v, want ErrInvalid", err)
	}
	if _, err := s.Read(ctx, "t-1", 0, 0); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("read limit 0: %v, want ErrInvalid", err)
	}
	if _, err := s.Read(ctx, "", 0, 10); !errors.Is(err, eventstore.ErrInvalid) {
		t.Errorf("read empty stream name: %v, want ErrInvalid", err)
	}
}

func TestForEach(t *testing.T) {
	t.Parallel()
	var ran, inFlight, most atomic.Int32
	err := forEach(context.Background(), 100, func(ctx context.Context, i int) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		ran.Add(1)
		return nil
	})
	if err != nil || ran.Load() != 100 {
		t.Errorf("err %v, ran %d of 100", err, ran.Load())
	}
	if most.Load() > parallelLookups {
		t.Errorf("%d calls in flight, at most %d allowed", most.Load(), parallelLookups)
	}

	boom := errors.New("boom")
	err = forEach(context.Background(), 50, func(ctx context.Context, i int) error {
		if i == 7 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want the failing call's error", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := forEach(ctx, 50, func(ctx context.Context, i int) error { return ctx.Err() }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}
}
