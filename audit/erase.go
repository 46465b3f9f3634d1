package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

// Eraser removes payloads from the event store: the erasure record goes
// through Append, the payloads through ErasePayloads (natsjs has it;
// EventStoreDB cannot rewrite an event). ErasePayloads of no records
// fails, with errors.ErrUnsupported, when the store cannot erase at all.
type Eraser interface {
	Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error)
	ErasePayloads(ctx context.Context, recs []eventstore.Record) error
}

// ErrNoErasure is returned by Erase when the store cannot erase.
var ErrNoErasure = fmt.Errorf("this event store cannot erase single records (EventStoreDB cannot rewrite an event): %w", errors.ErrUnsupported)

// Retention erasures are recorded with this reason, by this actor.
const (
	RetentionReason = "retention"
	SystemActor     = "system"
)

// maxReason bounds an erasure's reason, which is kept in the stream.
const maxReason = 1000

// erasePerRecord is the most records one erasure record names: it keeps
// the record well under eventstore.MaxEventBytes.
const erasePerRecord = 500

// EraseRequest asks to remove the payloads of a target's records.
type EraseRequest struct {
	TargetID string
	IDs      []string // the records (activity ids); none: all of the target's
	Reason   string
	By       string // who asks: the caller's identity
}

// EraseResult says what an erasure did.
type EraseResult struct {
	TargetID string
	// Erased names the records this call erased; Already counts those
	// asked for that were erased before.
	Erased  []eventstore.ErasedRecord
	Already int
	// Position is the global position of the last erasure record written
	// (0: none was needed).
	Position uint64
}

// Erase removes the payloads of a target's records (all of them when no
// id is given) and records the removal in the target's stream: one
// erasure record per erasePerRecord records, written before the payloads
// go, so that an interrupted erasure is finished by asking again.
// Erasing again is harmless: erased records are skipped.
func (s *Service) Erase(ctx context.Context, req EraseRequest) (EraseResult, error) {
	res := EraseResult{}
	tid, err := s.targetID(req.TargetID)
	if err != nil {
		return res, err
	}
	res.TargetID = tid
	req.Reason = strings.TrimSpace(req.Reason)
	switch {
	case req.Reason == "":
		return res, activity.Invalid("reason", "is required: say why the records are erased")
	case len(req.Reason) > maxReason:
		return res, activity.Invalid("reason", fmt.Sprintf("must be at most %d bytes", maxReason))
	case slices.Contains(req.IDs, ""):
		return res, activity.Invalid("ids", "must not be empty")
	case req.By == "":
		return res, errors.New("erase: no caller identity")
	}
	if s.st.Eraser == nil {
		return res, ErrNoErasure
	}
	if err := s.st.Eraser.ErasePayloads(ctx, nil); err != nil {
		return res, err // before any erasure record names what cannot go
	}
	todo, finish, already, err := s.erasable(ctx, tid, req.IDs)
	if err != nil {
		return res, err
	}
	res.Already = already
	now := s.now().UTC()
	for chunk := range slices.Chunk(todo, erasePerRecord) {
		e := eventstore.Erasure{By: req.By, At: now, Reason: req.Reason}
		for _, r := range chunk {
			e.Records = append(e.Records, eventstore.ErasedRecord{Revision: r.Revision, ID: r.ID, Digest: r.Digest})
		}
		data, err := json.Marshal(e)
		if err != nil {
			return res, err
		}
		ar, err := s.st.Eraser.Append(ctx, tid, eventstore.Any, eventstore.Event{ID: uuid.NewString(), Type: eventstore.ErasureType, Data: data})
		if err != nil {
			return res, fmt.Errorf("erase %s: %w", tid, err)
		}
		res.Position = ar.Position()
		if err := s.st.Eraser.ErasePayloads(ctx, chunk); err != nil {
			return res, fmt.Errorf("erase %s: %w", tid, err)
		}
		res.Erased = append(res.Erased, e.Records...)
		s.erasures.WithLabelValues(kindOf(req)).Add(float64(len(chunk)))
	}
	if err := s.st.Eraser.ErasePayloads(ctx, finish); err != nil {
		return res, fmt.Errorf("erase %s: %w", tid, err)
	}
	return res, nil
}

func kindOf(req EraseRequest) string {
	if req.By == SystemActor && req.Reason == RetentionReason {
		return "retention"
	}
	return "request"
}

// erasable reads the target's stream for the records to erase: todo still
// hold their payloads; finish were named by an erasure record already but
// still hold them (an erasure interrupted); already counts erased ones.
// An id that names no activity of the target is refused.
func (s *Service) erasable(ctx context.Context, tid string, ids []string) (todo, finish []eventstore.Record, already int, err error) {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = false
	}
	named := map[uint64]bool{}
	var from uint64
	const page = 1000
	for {
		recs, err := s.st.Streams.Read(ctx, tid, from, page)
		if err != nil {
			return nil, nil, 0, storeErr("erase "+tid, err)
		}
		for _, r := range recs {
			if r.Type == eventstore.ErasureType {
				if !r.Erased {
					var e eventstore.Erasure
					if err := json.Unmarshal(r.Data, &e); err != nil {
						return nil, nil, 0, fmt.Errorf("erase %s: erasure record at revision %d: %w", tid, r.Revision, err)
					}
					for _, n := range e.Records {
						named[n.Revision] = true
					}
				}
				continue
			}
			if _, asked := want[r.ID]; len(ids) > 0 && !asked {
				continue
			}
			want[r.ID] = true
			if r.Erased {
				already++
				continue
			}
			r.Digest, r.Data = eventstore.Digest(r.Data), nil
			todo = append(todo, r)
		}
		if len(recs) < page {
			break
		}
		from = recs[len(recs)-1].Revision + 1
	}
	for _, id := range ids {
		if !want[id] {
			return nil, nil, 0, activity.Invalid("ids", fmt.Sprintf("%q is not an activity of this target", id))
		}
	}
	// Erasure records come after the records they name.
	todo = slices.DeleteFunc(todo, func(r eventstore.Record) bool {
		if named[r.Revision] {
			finish = append(finish, r)
		}
		return named[r.Revision]
	})
	return todo, finish, already, nil
}
