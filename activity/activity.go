// Package activity is the domain of Activity History: what an activity is,
// how it is validated, and how it is turned into and out of an event.
// It does no I/O.
package activity

import (
	"bytes"
	"encoding/json"
	"time"
)

// Type is what happened to the target.
type Type string

// The activity types of the API this service replaces.
const (
	TypeCreate  Type = "create"
	TypeUpdate  Type = "update"
	TypeDelete  Type = "delete"
	TypeMigrate Type = "migrate"
	TypeEnd     Type = "end"
)

// Types lists every valid Type, in documentation order.
var Types = []Type{TypeCreate, TypeUpdate, TypeDelete, TypeMigrate, TypeEnd}

// TargetType is the kind of entity an activity is recorded against.
type TargetType string

// DefaultTargetTypes are the target types accepted without configuration:
// those of the pilot plus the finance and repairs streams.
var DefaultTargetTypes = []TargetType{
	"person", "asset", "tenure", "contactDetails", "tenureActivity", "tenurePerson",
	"personEqualityInformation", "housingApplication", "process", "contract",
	"cautionaryAlert", "patchesAndAreas", "account", "repair",
}

// Author is who caused the activity.
type Author struct {
	FullName string `json:"fullName"`
	Email    string `json:"email"`
}

// Source names the entity event an activity was made from, so that an
// auditor can trace it back; nil for activities recorded over HTTP.
type Source struct {
	EventID       string `json:"eventId"`
	EventType     string `json:"eventType"`
	SourceSystem  string `json:"sourceSystem,omitempty"`
	CorrelationID string `json:"correlationId,omitempty"`
}

// Activity is one immutable entry in a target's history. The JSON field
// names and their order are those of the API this service replaces, with
// source added last for activities made from entity events.
type Activity struct {
	ID                  string          `json:"id"`
	TargetID            string          `json:"targetId"`
	Type                Type            `json:"type"`
	TargetType          TargetType      `json:"targetType"`
	CreatedAt           time.Time       `json:"createdAt"`
	TimeToLiveForRecord int             `json:"timetoLiveForRecord"`
	OldData             json.RawMessage `json:"oldData"`
	NewData             json.RawMessage `json:"newData"`
	AuthorDetails       Author          `json:"authorDetails"`
	SourceDomain        string          `json:"sourceDomain"`
	Source              *Source         `json:"source,omitempty"`
}

// SortKeyTime is the layout of the time part of SortKey: fixed width, so
// that byte order equals time order (years 0000-9999).
const SortKeyTime = "2006-01-02T15:04:05.000000000Z"

// SortKey is the total order of a target's history: createdAt, then id.
// Its byte order is chronological (fixed-width UTC time).
func (a Activity) SortKey() string {
	return a.CreatedAt.UTC().Format(SortKeyTime) + "|" + a.ID
}

// ExpiresAt is when the record may be dropped from read models; zero when
// it is kept forever.
func (a Activity) ExpiresAt() time.Time {
	if a.TimeToLiveForRecord <= 0 {
		return time.Time{}
	}
	return a.CreatedAt.AddDate(0, 0, a.TimeToLiveForRecord)
}

// MarshalJSON writes the activity in the API shape: createdAt in RFC 3339
// UTC with a Z, absent data as null.
func (a Activity) MarshalJSON() ([]byte, error) {
	type shape struct {
		ID                  string          `json:"id"`
		TargetID            string          `json:"targetId"`
		Type                Type            `json:"type"`
		TargetType          TargetType      `json:"targetType"`
		CreatedAt           string          `json:"createdAt"`
		TimeToLiveForRecord int             `json:"timetoLiveForRecord"`
		OldData             json.RawMessage `json:"oldData"`
		NewData             json.RawMessage `json:"newData"`
		AuthorDetails       Author          `json:"authorDetails"`
		SourceDomain        string          `json:"sourceDomain"`
		Source              *Source         `json:"source,omitempty"`
	}
	s := shape{
		ID: a.ID, TargetID: a.TargetID, Type: a.Type, TargetType: a.TargetType,
		CreatedAt:           a.CreatedAt.UTC().Format(time.RFC3339Nano),
		TimeToLiveForRecord: a.TimeToLiveForRecord,
		OldData:             orNull(a.OldData),
		NewData:             orNull(a.NewData),
		AuthorDetails:       a.AuthorDetails,
		SourceDomain:        a.SourceDomain,
		Source:              a.Source,
	}
	return json.Marshal(s)
}

// UnmarshalJSON reads what MarshalJSON wrote. It is lenient: it is used on
// stored events, which were validated when recorded. Input from clients goes
// through Decoder instead.
func (a *Activity) UnmarshalJSON(b []byte) error {
	type plain Activity
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*a = Activity(p)
	a.CreatedAt = a.CreatedAt.UTC()
	if isNull(a.OldData) {
		a.OldData = nil
	}
	if isNull(a.NewData) {
		a.NewData = nil
	}
	return nil
}

// Equal reports whether two activities record the same thing; it is how a
// re-posted id is told apart from a conflicting one.
func (a Activity) Equal(b Activity) bool {
	return a.ID == b.ID && a.TargetID == b.TargetID && a.Type == b.Type &&
		a.TargetType == b.TargetType && a.CreatedAt.Equal(b.CreatedAt) &&
		a.TimeToLiveForRecord == b.TimeToLiveForRecord &&
		bytes.Equal(orNull(a.OldData), orNull(b.OldData)) &&
		bytes.Equal(orNull(a.NewData), orNull(b.NewData)) &&
		a.AuthorDetails == b.AuthorDetails && a.SourceDomain == b.SourceDomain &&
		(a.Source == nil) == (b.Source == nil) && (a.Source == nil || *a.Source == *b.Source)
}

var null = json.RawMessage("null")

func orNull(m json.RawMessage) json.RawMessage {
	if len(m) == 0 {
		return null
	}
	return m
}

func isNull(m json.RawMessage) bool {
	return len(m) == 0 || bytes.Equal(bytes.TrimSpace(m), null)
}
