package activity

import (
	"encoding/json"
	"fmt"
)

// EventRecorded is the event type of a recorded activity. The event data is
// the activity in its API JSON shape, so a stream can be read without this
// code.
const EventRecorded = "ActivityRecorded"

// EncodeEvent returns the event payload of an activity.
func EncodeEvent(a Activity) ([]byte, error) {
	b, err := a.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("encode activity %s: %w", a.ID, err)
	}
	return b, nil
}

// DecodeEvent reads an event payload written by EncodeEvent. The
// activity's raw data may share data's memory.
func DecodeEvent(eventType string, data []byte) (Activity, error) {
	if eventType != EventRecorded {
		return Activity{}, fmt.Errorf("unknown event type %q", eventType)
	}
	var a Activity
	if a.decodeCanonical(data, true) {
		return a, nil
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return Activity{}, fmt.Errorf("decode activity event: %w", err)
	}
	return a, nil
}
