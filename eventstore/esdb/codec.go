package esdb

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/kurrent-io/KurrentDB-Client-Go/kurrentdb"

	"github.com/council/activityhistory/eventstore"
)

// eventIDNamespace is the UUIDv5 namespace for our event ids that are not
// UUIDs. Changing it would give every such event a new server-side id.
const eventIDNamespace = "f9315da9-dee3-4bd6-9d58-ca1050b9a18a"

// indexEventType is the type of the one event in an id-index stream.
const indexEventType = "activityhistory.event-id"

// eventUUID maps one of our event ids to the UUID the server keys events by.
// A canonical lowercase UUID is used as is; anything else (including other
// spellings of a UUID, which are distinct ids for us) gets a name-based
// UUIDv5, so distinct ids give distinct UUIDs and a retry gives the same one.
func eventUUID(id string) uuid.UUID {
	if u, err := uuid.Parse(id); err == nil && u.String() == id {
		return u
	}
	return uuid.NewSHA1(uuid.MustParse(eventIDNamespace), []byte(id))
}

// indexUUID is the server-side id of the index entry of one of our ids,
// deterministic so that a retried write is the same event.
func indexUUID(id string) uuid.UUID {
	return uuid.NewSHA1(uuid.MustParse(eventIDNamespace), []byte("index\x00"+id))
}

// eventMeta is the JSON metadata of every event we write. All values are
// strings: multi-stream appends take only string-to-string metadata, and
// the server adds its own "$schema.*" keys to them, which we ignore.
type eventMeta struct {
	ID       string `json:"id"`
	Revision string `json:"revision"`
	PrevHash string `json:"prevHash"`
	Hash     string `json:"hash"`
	Chain    string `json:"chain,omitempty"` // the chain form; none (older records) is v1
}

// toEventData maps a sealed record to what the client writes.
func toEventData(rec eventstore.Record) kurrentdb.EventData {
	meta, _ := json.Marshal(eventMeta{ // strings only: cannot fail
		ID:       rec.ID,
		Revision: strconv.FormatUint(rec.Revision, 10),
		PrevHash: rec.PrevHash,
		Hash:     rec.Hash,
		Chain:    strconv.Itoa(rec.Version),
	})
	ct := kurrentdb.ContentTypeBinary
	if json.Valid(rec.Data) {
		ct = kurrentdb.ContentTypeJson
	}
	return kurrentdb.EventData{
		EventID:     eventUUID(rec.ID),
		EventType:   rec.Type,
		ContentType: ct,
		Data:        rec.Data,
		Metadata:    meta,
	}
}

// toRecord maps an event read back from the server. Events we did not write
// (no metadata of ours) keep the server's event id and no chain fields, so
// that verification reports them instead of this code hiding them.
func toRecord(prefix string, ev *kurrentdb.RecordedEvent) eventstore.Record {
	rec := eventstore.Record{
		ID:         ev.EventID.String(),
		Type:       ev.EventType,
		Stream:     strings.TrimPrefix(ev.StreamID, prefix),
		Revision:   ev.EventNumber,
		Position:   ev.Position.Commit,
		RecordedAt: ev.CreatedDate.UTC(),
		Data:       ev.Data,
	}
	var meta eventMeta
	if json.Unmarshal(ev.UserMetadata, &meta) == nil && meta.ID != "" {
		rec.ID, rec.PrevHash, rec.Hash = meta.ID, meta.PrevHash, meta.Hash
		rec.Version, _ = strconv.Atoi(meta.Chain) // none or unreadable: v1, which then fails to verify
	}
	return rec
}

// indexEntry is the data of the one event of an id-index stream: where the
// event with that id was recorded.
type indexEntry struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
}

func toIndexEventData(rec eventstore.Record) kurrentdb.EventData {
	data, _ := json.Marshal(indexEntry{Stream: rec.Stream, Revision: rec.Revision}) // cannot fail
	return kurrentdb.EventData{
		EventID:     indexUUID(rec.ID),
		EventType:   indexEventType,
		ContentType: kurrentdb.ContentTypeJson,
		Data:        data,
	}
}

func decodeIndexEntry(rec eventstore.Record) (indexEntry, error) {
	var e indexEntry
	if rec.Type != indexEventType {
		return e, fmt.Errorf("index stream %s holds an event of type %q", rec.Stream, rec.Type)
	}
	if err := json.Unmarshal(rec.Data, &e); err != nil {
		return e, fmt.Errorf("decode index entry in %s: %w", rec.Stream, err)
	}
	return e, nil
}

// idStreamPrefix derives the prefix of id-index streams from the data
// stream prefix by replacing its last character, so that no index stream
// name starts with the data prefix: whatever a target id is, its stream
// cannot collide with an index stream, and a plain prefix filter on $all
// leaves index streams out. "activity-" gives "activity~id-".
func idStreamPrefix(prefix string) string {
	last, size := utf8.DecodeLastRuneInString(prefix)
	sep := "~"
	if last == '~' {
		sep = "+"
	}
	return prefix[:len(prefix)-size] + sep + "id-"
}
