// Package ingest turns domain entity events — the JSON the pilot's
// listener consumed — into activities, through a mapping that is data,
// and consumes them from JetStream: a durable consumer, dead letters with
// their reason, and re-drive of dead letters.
package ingest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
)

// Namespace is the UUIDv5 namespace of activity ids made from event ids:
// the id of the activity of event E is UUIDv5(Namespace, E), E lower-cased
// when it is a UUID. It is itself UUIDv5(URL namespace,
// "https://github.com/council/activityhistory/entity-events") and never
// changes: a changed namespace would record every replayed event again.
const Namespace = "0855bc14-fd52-53aa-85df-ba58f8762be0"

// MaxEventIDLen bounds an event id.
const MaxEventIDLen = 256

// Event is an entity event as domain services publish it.
type Event struct {
	ID            string     `json:"id"`
	EventType     string     `json:"eventType"`
	SourceDomain  string     `json:"sourceDomain"`
	SourceSystem  string     `json:"sourceSystem"`
	CorrelationID string     `json:"correlationId"`
	DateTime      string     `json:"dateTime"`
	User          *User      `json:"user"`
	EntityID      string     `json:"entityId"`
	EventData     *EventData `json:"eventData"`
}

// User is who caused the event.
type User struct {
	Name  *string `json:"name"`
	Email *string `json:"email"`
}

// EventData is the entity before and after the change.
type EventData struct {
	OldData json.RawMessage `json:"oldData"`
	NewData json.RawMessage `json:"newData"`
}

// Why an event is dead-lettered: the DLQ-Reason header.
const (
	ReasonMalformed    = "malformed_json"
	ReasonMissingField = "missing_field"
	ReasonUnknownType  = "unknown_event_type"
	ReasonInvalid      = "invalid_activity"
	ReasonConflict     = "id_conflict"
)

// Reasons lists every dead-letter reason.
var Reasons = []string{ReasonMalformed, ReasonMissingField, ReasonUnknownType, ReasonInvalid, ReasonConflict}

// WarningMissingUser: an event without a user is recorded with an author
// of nulls.
const WarningMissingUser = "missing_user"

// Rejection says why an event cannot become an activity, whatever the
// number of tries: it is dead-lettered (or, over HTTP, a 400).
type Rejection struct {
	Reason string
	// Fields names the event fields at fault, with what is wrong.
	Fields map[string][]string
}

func (r *Rejection) Error() string {
	return r.Reason + ": " + (&activity.ValidationError{Fields: r.Fields}).Error()
}

func reject(reason, field, msg string) *Rejection {
	return &Rejection{Reason: reason, Fields: map[string][]string{field: {msg}}}
}

// Translation is what an event becomes.
type Translation struct {
	Event Event
	// Activity is nil when the event type is ignored.
	Activity *activity.Activity
	Warnings []string
}

// Translator turns entity events into validated activities.
type Translator struct {
	mapping   *Mapping
	validator *activity.Validator
}

// NewTranslator returns a Translator using mapping, validating activities
// with v, the validator of HTTP writes.
func NewTranslator(mapping *Mapping, v *activity.Validator) *Translator {
	return &Translator{mapping: mapping, validator: v}
}

// Translate reads one event. The error is a *Rejection.
func (t *Translator) Translate(data []byte) (Translation, error) {
	var ev Event
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Translation{}, reject(ReasonMalformed, "body", "must be a JSON object")
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return Translation{}, reject(ReasonMalformed, te.Field, "must be "+jsonKind(te.Type.Kind().String())+", not "+te.Value)
		}
		return Translation{}, reject(ReasonMalformed, "body", "is not valid JSON: "+strings.TrimPrefix(err.Error(), "json: "))
	}
	tr := Translation{Event: ev}
	missing := &Rejection{Reason: ReasonMissingField, Fields: map[string][]string{}}
	for field, v := range map[string]string{"id": ev.ID, "entityId": ev.EntityID, "eventType": ev.EventType} {
		if strings.TrimSpace(v) == "" {
			missing.Fields[field] = []string{"is required"}
		}
	}
	if len(missing.Fields) > 0 {
		return tr, missing
	}
	if len(ev.ID) > MaxEventIDLen {
		return tr, reject(ReasonInvalid, "id", fmt.Sprintf("is longer than %d characters", MaxEventIDLen))
	}
	rule, ok := t.mapping.Lookup(ev.EventType)
	if !ok {
		return tr, reject(ReasonUnknownType, "eventType", fmt.Sprintf("%q is not in the mapping", ev.EventType))
	}
	if rule.Ignore {
		return tr, nil
	}
	if strings.TrimSpace(ev.DateTime) == "" {
		return tr, reject(ReasonMissingField, "dateTime", "is required")
	}
	createdAt, err := parseDateTime(ev.DateTime)
	if err != nil {
		return tr, reject(ReasonInvalid, "dateTime", "must be an ISO 8601 date-time such as 2021-02-19T15:12:00Z")
	}

	in := activityInput{
		ID: ActivityID(ev.ID), TargetID: ev.EntityID, Type: rule.Type, TargetType: rule.TargetType,
		CreatedAt: createdAt, SourceDomain: ev.SourceDomain,
	}
	if ev.EventData != nil {
		in.OldData, in.NewData = ev.EventData.OldData, ev.EventData.NewData
	}
	if ev.User != nil {
		in.AuthorDetails.FullName, in.AuthorDetails.Email = ev.User.Name, ev.User.Email
	}
	if ev.User == nil || (ev.User.Name == nil && ev.User.Email == nil) {
		tr.Warnings = append(tr.Warnings, WarningMissingUser)
	}
	body, err := json.Marshal(in)
	if err != nil {
		return tr, reject(ReasonInvalid, "eventData", "cannot be encoded: "+err.Error())
	}
	acts, _, err := t.validator.Decode(body)
	var ve *activity.ValidationError
	if errors.As(err, &ve) {
		return tr, &Rejection{Reason: ReasonInvalid, Fields: eventFields(ve.Fields)}
	} else if err != nil {
		return tr, reject(ReasonInvalid, "body", err.Error())
	}
	a := acts[0]
	a.Source = &activity.Source{
		EventID: ev.ID, EventType: ev.EventType, SourceSystem: ev.SourceSystem, CorrelationID: ev.CorrelationID,
	}
	tr.Activity = &a
	return tr, nil
}

// ActivityID is the id of the activity made from the event with this id.
func ActivityID(eventID string) string {
	name := eventID
	if u, err := activity.ID(eventID); err == nil {
		name = u
	}
	return uuid.NewSHA1(uuid.MustParse(Namespace), []byte(name)).String()
}

// activityInput is the activity in the shape the validator reads, with an
// absent user as explicit nulls.
type activityInput struct {
	ID                  string              `json:"id"`
	TargetID            string              `json:"targetId"`
	Type                activity.Type       `json:"type"`
	TargetType          activity.TargetType `json:"targetType"`
	CreatedAt           string              `json:"createdAt"`
	TimeToLiveForRecord int                 `json:"timetoLiveForRecord"`
	OldData             json.RawMessage     `json:"oldData,omitempty"`
	NewData             json.RawMessage     `json:"newData,omitempty"`
	AuthorDetails       struct {
		FullName *string `json:"fullName"`
		Email    *string `json:"email"`
	} `json:"authorDetails"`
	SourceDomain string `json:"sourceDomain"`
}

// eventFields renames activity fields to the event fields they came from.
func eventFields(fields map[string][]string) map[string][]string {
	names := map[string]string{
		"targetId": "entityId", "createdAt": "dateTime", "oldData": "eventData.oldData",
		"newData": "eventData.newData", "authorDetails.fullName": "user.name",
		"authorDetails.email": "user.email", "sourceDomain": "sourceDomain", "targetType": "eventType",
		"type": "eventType", "id": "id",
	}
	out := make(map[string][]string, len(fields))
	for f, msgs := range fields {
		if n, ok := names[f]; ok {
			f = n
		}
		out[f] = append(out[f], msgs...)
	}
	return out
}

// parseDateTime reads ISO 8601 as .NET writes it: with an offset or Z, or
// without one (taken as UTC), with up to 9 fractional digits.
func parseDateTime(s string) (string, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999"} {
		if t, err := time.Parse(layout, strings.TrimSpace(s)); err == nil {
			return t.UTC().Format(time.RFC3339Nano), nil
		}
	}
	return "", errors.New("not an ISO 8601 date-time")
}

func jsonKind(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "ptr", "struct", "map":
		return "an object"
	default:
		return kind
	}
}
