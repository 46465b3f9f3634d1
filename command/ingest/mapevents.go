package ingest

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
)

var _ command.EventMapper = (*Translator)(nil)

// MapEvents reads one event or an array of 1–activity.MaxBatch for the
// HTTP twin of the consumer. Every event is translated; the problems of
// all that cannot be recorded come back together, each field prefixed with
// the item ("[2].eventType") when the body is an array.
func (t *Translator) MapEvents(body []byte) ([]command.MappedEvent, bool, error) {
	body = bytes.TrimSpace(body)
	var items []json.RawMessage
	many := len(body) > 0 && body[0] == '['
	if many {
		if err := json.Unmarshal(body, &items); err != nil {
			return nil, true, activity.Invalid("body", "is not a valid JSON array of events")
		}
		if len(items) == 0 || len(items) > activity.MaxBatch {
			return nil, true, activity.Invalid("body", fmt.Sprintf("holds %d events; send 1 to %d", len(items), activity.MaxBatch))
		}
	} else {
		items = []json.RawMessage{body}
	}
	all := &activity.ValidationError{Fields: map[string][]string{}}
	out := make([]command.MappedEvent, len(items))
	seen := map[string]int{}
	for i, raw := range items {
		prefix := ""
		if many {
			prefix = fmt.Sprintf("[%d].", i)
		}
		tr, err := t.Translate(raw)
		if rej, ok := err.(*Rejection); ok {
			for f, msgs := range rej.Fields {
				for _, m := range msgs {
					all.Fields[prefix+f] = append(all.Fields[prefix+f], m+" ("+rej.Reason+")")
				}
			}
			continue
		}
		if j, dup := seen[tr.Event.ID]; dup {
			all.Fields[prefix+"id"] = append(all.Fields[prefix+"id"], fmt.Sprintf("repeats the id of item %d", j))
			continue
		}
		seen[tr.Event.ID] = i
		out[i] = command.MappedEvent{EventID: tr.Event.ID, Activity: tr.Activity}
	}
	if len(all.Fields) > 0 {
		return nil, many, all
	}
	return out, many, nil
}
