package natsjs

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/council/activityhistory/eventstore"
)

// Headers of an event message. The event id is Nats-Msg-Id; the stream
// name is the subject's last token, so no header has to carry it.
const (
	hdrRevision = "Ah-Revision"
	hdrType     = "Ah-Type"
	hdrPrevHash = "Ah-Prev-Hash"
	hdrHash     = "Ah-Hash"
	// hdrRecordedAt is when the engine sealed the record, so that an
	// append knows RecordedAt without reading the message back. Messages
	// written before it existed take the server's timestamp.
	hdrRecordedAt = "Ah-Recorded-At"
	// hdrChain is the chain form, on v2 records and later; none is v1.
	hdrChain = "Ah-Chain"
)

// enc makes any string one subject token: base64url without padding uses
// only A-Za-z0-9-_, all valid in a token, and is reversible.
func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func (s *Store) evSubject(stream string) string { return s.cfg.SubjectPrefix + ".ev." + enc(stream) }
func (s *Store) idSubject(id string) string     { return s.cfg.SubjectPrefix + ".id." + enc(id) }

// streamOf decodes the stream name from an event subject.
func (s *Store) streamOf(subject string) (string, error) {
	tok, ok := strings.CutPrefix(subject, s.cfg.SubjectPrefix+".ev.")
	if !ok {
		return "", fmt.Errorf("subject %q is not an event subject", subject)
	}
	name, err := decodeToken(tok)
	if err != nil {
		return "", fmt.Errorf("subject %q: %w", subject, err)
	}
	return name, nil
}

// decodeToken reverses enc.
func decodeToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	return string(b), err
}

// idEntry is the body of an id-index message.
type idEntry struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
	// Seq is the event's stream sequence. Written apart from its event
	// (by the indexer, single-event appends); 0 in an atomic batch, where
	// the event is the message just before the entry.
	Seq uint64 `json:"seq,omitempty"`
}

// rawMsg is a stored message as direct get or a consumer hands it over.
type rawMsg struct {
	subject string
	seq     uint64
	time    time.Time
	header  nats.Header
	data    []byte
}

func fromConsumer(m jetstream.Msg) (rawMsg, error) {
	md, err := m.Metadata()
	if err != nil {
		return rawMsg{}, err
	}
	return rawMsg{subject: m.Subject(), seq: md.Sequence.Stream, time: md.Timestamp.UTC(), header: m.Headers(), data: m.Data()}, nil
}

// record turns an event message into a Record.
func (s *Store) record(m rawMsg) (eventstore.Record, error) {
	stream, err := s.streamOf(m.subject)
	if err != nil {
		return eventstore.Record{}, err
	}
	rev, err := revisionOf(m)
	if err != nil {
		return eventstore.Record{}, err
	}
	r := eventstore.Record{
		ID:         m.header.Get(jetstream.MsgIDHeader),
		Type:       m.header.Get(hdrType),
		Stream:     stream,
		Revision:   rev,
		Position:   m.seq,
		RecordedAt: m.time,
		Data:       m.data,
		PrevHash:   m.header.Get(hdrPrevHash),
		Hash:       m.header.Get(hdrHash),
	}
	if v := m.header.Get(hdrChain); v != "" {
		if r.Version, err = strconv.Atoi(v); err != nil {
			return eventstore.Record{}, fmt.Errorf("message %d: bad %s header: %w", m.seq, hdrChain, err)
		}
	}
	if r.ID == "" || r.Type == "" || r.PrevHash == "" || r.Hash == "" {
		return eventstore.Record{}, fmt.Errorf("message %d on %s lacks event headers", m.seq, m.subject)
	}
	if r.Data == nil {
		r.Data = []byte{}
	}
	if at := m.header.Get(hdrRecordedAt); at != "" {
		if r.RecordedAt, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return eventstore.Record{}, fmt.Errorf("message %d: bad %s header: %w", m.seq, hdrRecordedAt, err)
		}
	}
	return r, nil
}

// eventMsg is the message of a sealed record.
func eventMsg(subject string, r eventstore.Record) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.MsgIDHeader, r.ID)
	m.Header.Set(hdrRevision, strconv.FormatUint(r.Revision, 10))
	m.Header.Set(hdrType, r.Type)
	m.Header.Set(hdrPrevHash, r.PrevHash)
	m.Header.Set(hdrHash, r.Hash)
	m.Header.Set(hdrRecordedAt, r.RecordedAt.Format(time.RFC3339Nano))
	if r.Version >= eventstore.ChainV2 {
		m.Header.Set(hdrChain, strconv.Itoa(r.Version))
	}
	m.Data = r.Data
	return m
}
