package esdb

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/council/activityhistory/eventstore"
)

func TestValidateAppend(t *testing.T) {
	t.Parallel()
	ok := eventstore.Event{ID: "evt-1", Type: "create", Data: []byte("{}")}
	with := func(f func(*eventstore.Event)) []eventstore.Event {
		ev := ok
		f(&ev)
		return []eventstore.Event{ev}
	}
	many := make([]eventstore.Event, eventstore.MaxEventsPerAppend+1)
	for i := range many {
		many[i] = eventstore.Event{ID: fmt.Sprintf("e-%d", i), Type: "create"}
	}
	tests := []struct {
		name     string
		stream   string
		expected eventstore.ExpectedRevision
		events   []eventstore.Event
		want     error
	}{
		{"fine", "t-1", eventstore.Any, []eventstore.Event{ok}, nil},
		{"longest names", strings.Repeat("s", eventstore.MaxStreamNameLen), eventstore.At(3),
			with(func(e *eventstore.Event) {
				e.ID = strings.Repeat("i", eventstore.MaxEventIDLen)
				e.Data = make([]byte, eventstore.MaxEventBytes)
			}), nil},
		{"most events", "t-1", eventstore.NoStream, many[:eventstore.MaxEventsPerAppend], nil},
		{"empty stream", "", eventstore.Any, []eventstore.Event{ok}, eventstore.ErrInvalid},
		{"long stream", strings.Repeat("s", eventstore.MaxStreamNameLen+1), eventstore.Any, []eventstore.Event{ok}, eventstore.ErrInvalid},
		{"stream not UTF-8", "t-\xff", eventstore.Any, []eventstore.Event{ok}, eventstore.ErrInvalid},
		{"bad expected", "t-1", -3, []eventstore.Event{ok}, eventstore.ErrInvalid},
		{"no events", "t-1", eventstore.Any, nil, eventstore.ErrInvalid},
		{"too many events", "t-1", eventstore.Any, many, eventstore.ErrTooLarge},
		{"empty id", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.ID = "" }), eventstore.ErrInvalid},
		{"long id", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.ID = strings.Repeat("i", eventstore.MaxEventIDLen+1) }), eventstore.ErrInvalid},
		{"id not UTF-8", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.ID = "\xfe" }), eventstore.ErrInvalid},
		{"empty type", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "" }), eventstore.ErrInvalid},
		{"server type", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.Type = "$metadata" }), eventstore.ErrInvalid},
		{"data too large", "t-1", eventstore.Any, with(func(e *eventstore.Event) { e.Data = make([]byte, eventstore.MaxEventBytes+1) }), eventstore.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := validateAppend(tt.stream, tt.expected, tt.events)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestAppendRefusesBeforeTouchingTheServer(t *testing.T) {
	t.Parallel()
	s := &Store{prefix: DefaultStreamPrefix, idPrefix: idStreamPrefix(DefaultStreamPrefix)} // no client: any server call would panic
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

func TestExpectationMet(t *testing.T) {
	t.Parallel()
	at3 := &eventstore.Head{Revision: 3}
	tests := []struct {
		expected eventstore.ExpectedRevision
		head     *eventstore.Head
		want     bool
	}{
		{eventstore.Any, nil, true},
		{eventstore.Any, at3, true},
		{eventstore.NoStream, nil, true},
		{eventstore.NoStream, at3, false},
		{eventstore.At(3), at3, true},
		{eventstore.At(2), at3, false},
		{eventstore.At(4), at3, false},
		{eventstore.At(0), nil, false},
	}
	for _, tt := range tests {
		if got := expectationMet(tt.expected, tt.head); got != tt.want {
			t.Errorf("expected %s, head %s: got %v", describeExpected(tt.expected), describeHead(tt.head), got)
		}
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

func TestStreamLocks(t *testing.T) {
	t.Parallel()
	var l streamLocks
	ctx := context.Background()
	unlock, err := l.lock(ctx, "t-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := l.lock(ctx, "t-2")
	if err != nil {
		t.Fatalf("another stream waited: %v", err)
	}
	other()

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := l.lock(cctx, "t-1"); !errors.Is(err, context.Canceled) {
		t.Fatalf("second lock of a held stream: %v, want context.Canceled", err)
	}
	unlock()
	again, err := l.lock(cctx, "t-1")
	if err != nil {
		// A free lock is taken even with a done context only if select
		// picks it; either outcome leaves no entry behind.
		if n := len(l.m); n != 0 {
			t.Errorf("%d lock entries left", n)
		}
		return
	}
	again()
	if n := len(l.m); n != 0 {
		t.Errorf("%d lock entries left after every unlock", n)
	}
}
