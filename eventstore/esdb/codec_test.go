package esdb

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

func TestEventUUID(t *testing.T) {
	t.Parallel()
	const canonical = "3f2a8c1e-5b7d-4e0f-9a1b-2c3d4e5f6a7b"
	if got := eventUUID(canonical); got.String() != canonical {
		t.Errorf("canonical UUID id %s mapped to %s, want itself", canonical, got)
	}
	for _, id := range []string{"act-1", strings.ToUpper(canonical), "{" + canonical + "}", "ü", strings.Repeat("x", eventstore.MaxEventIDLen)} {
		u := eventUUID(id)
		if u.Version() != 5 || u.Variant() != uuid.RFC4122 {
			t.Errorf("id %q: got %s version %d, want a name-based UUIDv5", id, u, u.Version())
		}
		if again := eventUUID(id); again != u {
			t.Errorf("id %q: %s then %s, want the same UUID for a retry", id, u, again)
		}
	}

	seen := make(map[uuid.UUID]string)
	ids := []string{canonical, strings.ToUpper(canonical), "{" + canonical + "}", "", " ", "a", "A", "a ", "act-1", "act-01", "act-10"}
	for i := range 2000 {
		ids = append(ids, fmt.Sprintf("evt-%d", i))
	}
	for _, id := range ids {
		u := eventUUID(id)
		if prev, dup := seen[u]; dup {
			t.Fatalf("ids %q and %q both map to %s", prev, id, u)
		}
		seen[u] = id
	}
}

func TestIndexUUIDDiffersFromEventUUID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"act-1", "3f2a8c1e-5b7d-4e0f-9a1b-2c3d4e5f6a7b"} {
		if indexUUID(id) == eventUUID(id) {
			t.Errorf("id %q: index entry and event share server id %s", id, indexUUID(id))
		}
		if indexUUID(id) != indexUUID(id) {
			t.Errorf("id %q: index UUID not deterministic", id)
		}
	}
}

// recorded builds the event the server hands back for what toEventData
// wrote: what a read of the stream returns.
func recorded(t *testing.T, prefix string, rec eventstore.Record, ed kurrentdb.EventData, pos uint64, at time.Time) *kurrentdb.RecordedEvent {
	t.Helper()
	ct := "application/octet-stream"
	if ed.ContentType == kurrentdb.ContentTypeJson {
		ct = "application/json"
	}
	return &kurrentdb.RecordedEvent{
		EventID:      ed.EventID,
		EventType:    ed.EventType,
		ContentType:  ct,
		StreamID:     prefix + rec.Stream,
		EventNumber:  rec.Revision,
		Position:     kurrentdb.Position{Commit: pos, Prepare: pos},
		CreatedDate:  at,
		Data:         ed.Data,
		UserMetadata: ed.Metadata,
	}
}

func TestEventDataRoundTrip(t *testing.T) {
	t.Parallel()
	const prefix = "activity-"
	events := []eventstore.Event{
		{ID: "evt-1", Type: "create", Data: []byte(`{"targetId":"t-1","n":1}`)},
		{ID: "3f2a8c1e-5b7d-4e0f-9a1b-2c3d4e5f6a7b", Type: "update", Data: []byte{0xff, 0x00, 0x01}},
		{ID: "evt with spaces/ü", Type: "delete", Data: nil},
	}
	sealed, err := eventstore.Seal(nil, "t-1", events)
	if err != nil {
		t.Fatal(err)
	}
	wantCT := []kurrentdb.ContentType{kurrentdb.ContentTypeJson, kurrentdb.ContentTypeBinary, kurrentdb.ContentTypeBinary}
	at := time.Date(2025, 3, 4, 5, 6, 7, 800, time.FixedZone("x", 3600))
	var back []eventstore.Record
	for i, rec := range sealed {
		ed := toEventData(rec)
		if ed.EventID != eventUUID(rec.ID) || ed.EventType != rec.Type || ed.ContentType != wantCT[i] || string(ed.Data) != string(rec.Data) {
			t.Errorf("event %d: got %+v", i, ed)
		}
		var meta map[string]string
		if err := json.Unmarshal(ed.Metadata, &meta); err != nil {
			t.Fatalf("metadata is not a JSON object of strings (multi-stream append needs one): %v", err)
		}
		want := map[string]string{"id": rec.ID, "revision": fmt.Sprint(rec.Revision), "prevHash": rec.PrevHash, "hash": rec.Hash}
		for k, v := range want {
			if meta[k] != v {
				t.Errorf("event %d: metadata %s = %q, want %q", i, k, meta[k], v)
			}
		}
		pos := uint64(1000 + 100*i)
		got := toRecord(prefix, recorded(t, prefix, rec, ed, pos, at))
		want2 := rec
		want2.Position, want2.RecordedAt = pos, at.UTC()
		if got.ID != want2.ID || got.Type != want2.Type || got.Stream != want2.Stream || got.Revision != want2.Revision ||
			got.Position != want2.Position || !got.RecordedAt.Equal(want2.RecordedAt) || got.RecordedAt.Location() != time.UTC ||
			string(got.Data) != string(want2.Data) || got.PrevHash != want2.PrevHash || got.Hash != want2.Hash {
			t.Errorf("event %d: round trip gave %+v, want %+v", i, got, want2)
		}
		back = append(back, got)
	}
	if _, err := eventstore.VerifyRecords("t-1", back, nil); err != nil {
		t.Errorf("records read back do not verify: %v", err)
	}
}

func TestToRecordMetadataWithServerKeys(t *testing.T) {
	t.Parallel()
	// A multi-stream append stores metadata as properties; read back over
	// the v1 API they come with the server's "$schema.*" keys.
	meta := `{"id":"evt-1","revision":"0","prevHash":"` + eventstore.GenesisHash + `","hash":"abc","$schema.format":"Json","$schema.name":"create"}`
	got := toRecord("activity-", &kurrentdb.RecordedEvent{
		EventID: uuid.New(), EventType: "create", StreamID: "activity-t-1", UserMetadata: []byte(meta),
	})
	if got.ID != "evt-1" || got.PrevHash != eventstore.GenesisHash || got.Hash != "abc" || got.Stream != "t-1" {
		t.Errorf("got %+v", got)
	}
}

func TestToRecordForeignEvent(t *testing.T) {
	t.Parallel()
	id := uuid.New()
	for _, meta := range []string{"", "not json", `{"other":"x"}`} {
		got := toRecord("activity-", &kurrentdb.RecordedEvent{
			EventID: id, EventType: "x", StreamID: "activity-t-1", EventNumber: 0,
			Position: kurrentdb.Position{Commit: 5, Prepare: 5}, UserMetadata: []byte(meta),
		})
		if got.ID != id.String() || got.Hash != "" || got.PrevHash != "" {
			t.Errorf("metadata %q: got %+v, want the server's id and no chain fields", meta, got)
		}
		_, err := eventstore.VerifyRecords("t-1", []eventstore.Record{got}, nil)
		if !errors.Is(err, eventstore.ErrChainBroken) {
			t.Errorf("metadata %q: foreign event verified: %v", meta, err)
		}
	}
}

func TestIndexEntryRoundTrip(t *testing.T) {
	t.Parallel()
	rec := eventstore.Record{ID: "evt-1", Stream: "t-1", Revision: 7}
	ed := toIndexEventData(rec)
	if ed.EventID != indexUUID("evt-1") || ed.ContentType != kurrentdb.ContentTypeJson || len(ed.Metadata) != 0 {
		t.Errorf("index event %+v", ed)
	}
	got, err := decodeIndexEntry(eventstore.Record{Type: ed.EventType, Stream: "x", Data: ed.Data})
	if err != nil || got != (indexEntry{Stream: "t-1", Revision: 7}) {
		t.Errorf("got %+v, %v", got, err)
	}
	if _, err := decodeIndexEntry(eventstore.Record{Type: "create", Stream: "x", Data: ed.Data}); err == nil {
		t.Error("an event of another type decoded as an index entry")
	}
	if _, err := decodeIndexEntry(eventstore.Record{Type: indexEventType, Stream: "x", Data: []byte("{")}); err == nil {
		t.Error("bad JSON decoded as an index entry")
	}
}

func TestIDStreamsStayOutsideDataPrefix(t *testing.T) {
	t.Parallel()
	if got := idStreamPrefix("activity-"); got != "activity~id-" {
		t.Errorf("idStreamPrefix(activity-) = %q", got)
	}
	for _, prefix := range []string{"activity-", "a", "x~", "x+", "é", "日本-", "~"} {
		idp := idStreamPrefix(prefix)
		s := &Store{prefix: prefix, idPrefix: idp}
		for _, id := range []string{"evt-1", "", "ü"} {
			name := s.idStreamName(id)
			if strings.HasPrefix(name, prefix) {
				t.Errorf("prefix %q: index stream %q starts with the data prefix", prefix, name)
			}
			if !utf8.ValidString(name) {
				t.Errorf("prefix %q: index stream %q is not UTF-8", prefix, name)
			}
		}
		if s.idStreamName("a") == s.idStreamName("b") {
			t.Errorf("prefix %q: distinct ids share an index stream", prefix)
		}
	}
}
