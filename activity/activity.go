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

// Nulls marks the text fields a client sent as JSON null: they are
// returned as null, as sent (the pilot kept them so), while an absent field
// is "". A marked field holding text (filled in from the token) is text.
type Nulls uint8

// The fields that can be null.
const (
	NullFullName Nulls = 1 << iota
	NullEmail
	NullSourceDomain
)

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
	Nulls               Nulls           `json:"-"`
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

// Expires is ExpiresAt in unix seconds, 0 when kept forever: from that
// second on the record is never returned (see Expired).
func (a Activity) Expires() int64 {
	if a.TimeToLiveForRecord <= 0 {
		return 0
	}
	if u := a.ExpiresAt().Unix(); u != 0 {
		return u
	}
	return -1 // expiring at the epoch itself: still not "never"
}

// Expired reports whether a record that expires at the unix second
// expires (0 = never) is expired at now: from that second on, exactly.
func Expired(expires int64, now time.Time) bool {
	return expires != 0 && now.Unix() >= expires
}

// MarshalJSON writes the activity in the API shape: createdAt in RFC 3339
// UTC with a Z, absent data as null.
func (a Activity) MarshalJSON() ([]byte, error) {
	// 512: the keys and fixed fields of a typical activity, so that the
	// buffer is allocated once.
	return a.appendJSON(make([]byte, 0, 512+len(a.OldData)+len(a.NewData)))
}

// shownNulls are the marked fields still empty: those written as null.
func (a Activity) shownNulls() Nulls {
	n := a.Nulls
	if a.AuthorDetails.FullName != "" {
		n &^= NullFullName
	}
	if a.AuthorDetails.Email != "" {
		n &^= NullEmail
	}
	if a.SourceDomain != "" {
		n &^= NullSourceDomain
	}
	return n
}

// UnmarshalJSON reads what MarshalJSON wrote. It is lenient: it is used on
// stored events, which were validated when recorded. Input from clients goes
// through Decoder instead.
func (a *Activity) UnmarshalJSON(b []byte) error {
	if a.decodeCanonical(b, false) {
		return nil
	}
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
	if bytes.Contains(b, null) {
		var n struct {
			AuthorDetails *struct{ FullName, Email json.RawMessage }
			SourceDomain  json.RawMessage
		}
		if err := json.Unmarshal(b, &n); err != nil {
			return err
		}
		if n.AuthorDetails != nil {
			a.Nulls |= nullIf(n.AuthorDetails.FullName, NullFullName) | nullIf(n.AuthorDetails.Email, NullEmail)
		}
		a.Nulls |= nullIf(n.SourceDomain, NullSourceDomain)
	}
	return nil
}

func nullIf(m json.RawMessage, n Nulls) Nulls {
	if bytes.Equal(m, null) {
		return n
	}
	return 0
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
		a.shownNulls() == b.shownNulls() &&
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
