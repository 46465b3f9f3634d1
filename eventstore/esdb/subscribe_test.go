package esdb

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

func TestSubscribedRecord(t *testing.T) {
	t.Parallel()
	s := &Store{prefix: "activity-", idPrefix: idStreamPrefix("activity-")}
	ev := func(stream, typ string, pos uint64) *kurrentdb.RecordedEvent {
		return &kurrentdb.RecordedEvent{
			EventID: uuid.New(), EventType: typ, StreamID: stream,
			Position:     kurrentdb.Position{Commit: pos, Prepare: pos},
			UserMetadata: []byte(`{"id":"evt-` + fmt.Sprint(pos) + `"}`),
		}
	}
	tests := []struct {
		name string
		ev   *kurrentdb.RecordedEvent
		last uint64
		want bool
	}{
		{"ours, new", ev("activity-t-1", "create", 200), 100, true},
		{"ours, at last", ev("activity-t-1", "create", 100), 100, false},
		{"ours, below last", ev("activity-t-1", "create", 50), 100, false},
		{"tombstone", ev("activity-t-1", "$streamDeleted", 300), 100, false},
		{"index stream", ev(s.idStreamName("evt-1"), indexEventType, 300), 100, false},
		{"other prefix", ev("orders-1", "create", 300), 100, false},
	}
	for _, tt := range tests {
		rec, ok := s.subscribedRecord(tt.ev, tt.last)
		if ok != tt.want {
			t.Errorf("%s: delivered %v, want %v", tt.name, ok, tt.want)
		}
		if ok && (rec.Stream != "t-1" || rec.Position != tt.ev.Position.Commit || rec.ID != fmt.Sprintf("evt-%d", rec.Position)) {
			t.Errorf("%s: got %+v", tt.name, rec)
		}
	}
}

func TestResubscribable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want bool
	}{
		{io.EOF, true},
		{fmt.Errorf("x: %w", eventstore.ErrUnavailable), true},
		{func() error { e, _ := kurrentdb.FromError(errors.New("stream reset")); return e }(), true},
	}
	for _, tt := range tests {
		if got := resubscribable(tt.err); got != tt.want {
			t.Errorf("%v: got %v, want %v", tt.err, got, tt.want)
		}
	}
}
