package eventstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestCheckAppend(t *testing.T) {
	t.Parallel()
	ok := Event{ID: "evt-1", Type: "create", Data: []byte("{}")}
	with := func(f func(*Event)) []Event {
		ev := ok
		f(&ev)
		return []Event{ev}
	}
	many := make([]Event, MaxEventsPerAppend+1)
	for i := range many {
		many[i] = Event{ID: fmt.Sprintf("e-%d", i), Type: "create"}
	}
	tests := []struct {
		name     string
		stream   string
		expected ExpectedRevision
		events   []Event
		want     error
	}{
		{"fine", "t-1", Any, []Event{ok}, nil},
		{"longest names", strings.Repeat("s", MaxStreamNameLen), At(3),
			with(func(e *Event) {
				e.ID = strings.Repeat("i", MaxEventIDLen)
				e.Data = make([]byte, MaxEventBytes)
			}), nil},
		{"most events", "t-1", NoStream, many[:MaxEventsPerAppend], nil},
		{"empty stream", "", Any, []Event{ok}, ErrInvalid},
		{"long stream", strings.Repeat("s", MaxStreamNameLen+1), Any, []Event{ok}, ErrInvalid},
		{"stream not UTF-8", "t-\xff", Any, []Event{ok}, ErrInvalid},
		{"bad expected", "t-1", -3, []Event{ok}, ErrInvalid},
		{"no events", "t-1", Any, nil, ErrInvalid},
		{"too many events", "t-1", Any, many, ErrTooLarge},
		{"empty id", "t-1", Any, with(func(e *Event) { e.ID = "" }), ErrInvalid},
		{"long id", "t-1", Any, with(func(e *Event) { e.ID = strings.Repeat("i", MaxEventIDLen+1) }), ErrInvalid},
		{"id not UTF-8", "t-1", Any, with(func(e *Event) { e.ID = "\xfe" }), ErrInvalid},
		{"empty type", "t-1", Any, with(func(e *Event) { e.Type = "" }), ErrInvalid},
		{"server type", "t-1", Any, with(func(e *Event) { e.Type = "$metadata" }), ErrInvalid},
		{"id with a newline", "t-1", Any, with(func(e *Event) { e.ID = "a\nb" }), ErrInvalid},
		{"id with surrounding spaces", "t-1", Any, with(func(e *Event) { e.ID = " a" }), ErrInvalid},
		{"long type", "t-1", Any, with(func(e *Event) { e.Type = strings.Repeat("t", MaxEventTypeLen+1) }), ErrInvalid},
		{"data too large", "t-1", Any, with(func(e *Event) { e.Data = make([]byte, MaxEventBytes+1) }), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckAppend(tt.stream, tt.expected, tt.events)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestHolds(t *testing.T) {
	t.Parallel()
	at3 := &Head{Revision: 3}
	tests := []struct {
		expected ExpectedRevision
		head     *Head
		want     bool
	}{
		{Any, nil, true},
		{Any, at3, true},
		{NoStream, nil, true},
		{NoStream, at3, false},
		{At(3), at3, true},
		{At(2), at3, false},
		{At(4), at3, false},
		{At(0), nil, false},
	}
	for _, tt := range tests {
		if got := holds(tt.expected, tt.head); got != tt.want {
			t.Errorf("expected %s, head %s: got %v", describeExpected(tt.expected), describeHead(tt.head), got)
		}
	}
}
