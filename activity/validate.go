package activity

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// Limits on what one activity may hold.
const (
	MaxDataBytes        = 64 << 10
	MaxFullNameLen      = 256
	MaxEmailLen         = 320
	MaxSourceDomainLen  = 64
	MaxOpaqueTargetID   = 128
	MaxTimeToLiveDays   = 36500 // a century
	MaxFutureSkew       = 5 * time.Minute
	MaxBatch            = 500
	earliestCreatedYear = 1900
)

// TargetIDFormat says what a targetId may look like.
type TargetIDFormat string

const (
	// TargetIDUUID accepts UUIDs in any of the usual spellings and stores
	// them in canonical lower-case form.
	TargetIDUUID TargetIDFormat = "uuid"
	// TargetIDOpaque accepts 1–128 characters of [A-Za-z0-9._~+/=-].
	TargetIDOpaque TargetIDFormat = "opaque"
)

var opaqueID = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]{1,128}$`)

// ValidationError reports every problem found in client input, by field.
// Field names are JSON paths: "targetId", "authorDetails.email", or
// "[3].type" for the fourth item of an array.
type ValidationError struct {
	Fields map[string][]string
}

func (e *ValidationError) Error() string {
	keys := make([]string, 0, len(e.Fields))
	for k := range e.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+": "+strings.Join(e.Fields[k], "; "))
	}
	return "invalid input: " + strings.Join(parts, ", ")
}

func (e *ValidationError) add(field, msg string) {
	if e.Fields == nil {
		e.Fields = map[string][]string{}
	}
	e.Fields[field] = append(e.Fields[field], msg)
}

func (e *ValidationError) orNil() error {
	if len(e.Fields) == 0 {
		return nil
	}
	return e
}

// Invalid returns a ValidationError for a single field.
func Invalid(field, msg string) *ValidationError {
	e := &ValidationError{}
	e.add(field, msg)
	return e
}

// Rules hold the configurable parts of validation.
type Rules struct {
	TargetIDFormat   TargetIDFormat
	ExtraTargetTypes []TargetType
	Now              func() time.Time
	// NewID makes ids for activities sent without one (UUIDv7 by default).
	NewID func() (string, error)
}

// Validator checks and normalises client input.
type Validator struct {
	format      TargetIDFormat
	targetTypes map[TargetType]bool
	now         func() time.Time
	newID       func() (string, error)
	noFast      bool // encoding/json only: the test comparing the readers
}

// NewValidator builds a Validator; it rejects an unknown TargetIDFormat.
func NewValidator(r Rules) (*Validator, error) {
	v := &Validator{format: r.TargetIDFormat, now: r.Now, newID: r.NewID, targetTypes: map[TargetType]bool{}}
	switch v.format {
	case "":
		v.format = TargetIDUUID
	case TargetIDUUID, TargetIDOpaque:
	default:
		return nil, fmt.Errorf("unknown target id format %q (want uuid or opaque)", r.TargetIDFormat)
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.newID == nil {
		v.newID = func() (string, error) {
			id, err := uuid.NewV7()
			return id.String(), err
		}
	}
	for _, t := range DefaultTargetTypes {
		v.targetTypes[t] = true
	}
	for _, t := range r.ExtraTargetTypes {
		if t = TargetType(strings.TrimSpace(string(t))); t != "" {
			v.targetTypes[t] = true
		}
	}
	return v, nil
}

// TargetTypes lists the accepted target types, sorted.
func (v *Validator) TargetTypes() []TargetType {
	out := make([]TargetType, 0, len(v.targetTypes))
	for t := range v.targetTypes {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// TargetID checks a target id as it arrives in a query and returns its
// canonical form.
func (v *Validator) TargetID(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("is required")
	}
	if v.format == TargetIDOpaque {
		if !opaqueID.MatchString(raw) {
			return "", fmt.Errorf("must be 1-%d characters of A-Z a-z 0-9 . _ ~ + / = -", MaxOpaqueTargetID)
		}
		return raw, nil
	}
	return canonicalUUID(raw)
}

// ID checks an activity id and returns its canonical form.
func ID(raw string) (string, error) {
	return canonicalUUID(raw)
}

func canonicalUUID(raw string) (string, error) {
	// The pilot (.NET Guid) took {…} and (…) around the hyphenated form.
	if n := len(raw); n == 38 && (raw[0] == '{' && raw[37] == '}' || raw[0] == '(' && raw[37] == ')') {
		raw = raw[1:37]
	}
	// uuid.Parse also takes urn: forms; accept only hex with or without
	// hyphens, as the pilot did.
	if n := len(raw); n != 36 && n != 32 {
		return "", errors.New("must be a UUID")
	}
	u, err := uuid.Parse(raw)
	if err != nil {
		return "", errors.New("must be a UUID")
	}
	return u.String(), nil
}

// input mirrors Activity with pointers so that absent and present-but-empty
// fields can be told apart.
type input struct {
	ID                  *string         `json:"id"`
	TargetID            *string         `json:"targetId"`
	Type                *string         `json:"type"`
	TargetType          *string         `json:"targetType"`
	CreatedAt           *string         `json:"createdAt"`
	TimeToLiveForRecord *int            `json:"timetoLiveForRecord"`
	OldData             json.RawMessage `json:"oldData"`
	NewData             json.RawMessage `json:"newData"`
	AuthorDetails       *authorInput    `json:"authorDetails"`
	SourceDomain        optString       `json:"sourceDomain"`
	// compacted: OldData and NewData are compacted already (fastInput).
	compacted bool
}

type authorInput struct {
	FullName optString `json:"fullName"`
	Email    optString `json:"email"`
}

// optString is a string field that tells absent, null and text apart.
type optString struct {
	set, null bool
	s         string
}

func (o *optString) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		o.null = true
		return nil
	}
	// A wrong type is an *json.UnmarshalTypeError, named by its field.
	return json.Unmarshal(b, &o.s)
}

// text reports whether the field holds a string.
func (o optString) text() bool { return o.set && !o.null }

// Decode parses a request body holding one activity object or an array of
// 1–MaxBatch of them, validates every item and returns them normalised.
// many reports whether the body was an array. Any problem, in any item,
// gives a *ValidationError naming item and field.
func (v *Validator) Decode(body []byte) (acts []Activity, many bool, err error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, false, Invalid("body", "is empty: send an activity object or an array of them")
	}
	if err := scanBody(body); err != nil {
		return nil, body[0] == '[', err
	}
	switch body[0] {
	case '{':
		a, err := v.decodeOne(body, "")
		if err != nil {
			return nil, false, err
		}
		return []Activity{a}, false, nil
	case '[':
		// Items that all read the fast way need no encoding/json pass;
		// otherwise the whole body goes through it, for its wording.
		var ins []input
		fast := false
		if !v.noFast {
			ins, fast = fastArray(body)
		}
		var items []json.RawMessage
		if !fast {
			if err := json.Unmarshal(body, &items); err != nil {
				return nil, true, Invalid("body", "is not valid JSON: "+jsonProblem(err))
			}
		} else {
			items = make([]json.RawMessage, len(ins))
		}
		if len(items) == 0 {
			return nil, true, Invalid("body", "is an empty array: send 1 to 500 activities")
		}
		if len(items) > MaxBatch {
			return nil, true, Invalid("body", fmt.Sprintf("holds %d activities; at most %d may be sent at once", len(items), MaxBatch))
		}
		all := &ValidationError{}
		acts := make([]Activity, 0, len(items))
		seen := make(map[string]int, len(items))
		for i, raw := range items {
			prefix := "[" + strconv.Itoa(i) + "]."
			var a Activity
			var err error
			if fast {
				a, err = v.check(ins[i], prefix)
			} else {
				a, err = v.decodeOne(raw, prefix)
			}
			var ve *ValidationError
			if errors.As(err, &ve) {
				for f, msgs := range ve.Fields {
					all.Fields = mergeField(all.Fields, f, msgs)
				}
				continue
			} else if err != nil {
				return nil, true, err
			}
			if j, dup := seen[a.ID]; dup {
				all.add(prefix+"id", fmt.Sprintf("repeats the id of item %d", j))
				continue
			}
			seen[a.ID] = i
			acts = append(acts, a)
		}
		if err := all.orNil(); err != nil {
			return nil, true, err
		}
		return acts, true, nil
	default:
		return nil, false, Invalid("body", "must be a JSON object or array")
	}
}

func mergeField(m map[string][]string, f string, msgs []string) map[string][]string {
	if m == nil {
		m = map[string][]string{}
	}
	m[f] = append(m[f], msgs...)
	return m
}

var (
	knownFields       = fieldSet(input{})
	knownAuthorFields = fieldSet(authorInput{})
)

func (v *Validator) decodeOne(raw []byte, prefix string) (Activity, error) {
	var in input
	if !v.noFast && fastInput(raw, &in) {
		return v.check(in, prefix)
	}
	in = input{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&in); err != nil {
		return Activity{}, decodeError(err, prefix)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Activity{}, Invalid(bodyField(prefix), "has data after the JSON value")
	}
	return v.check(in, prefix)
}

func fieldSet(v any) map[string]bool {
	t := reflect.TypeOf(v)
	m := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		if name := strings.Split(t.Field(i).Tag.Get("json"), ",")[0]; name != "" {
			m[name] = true
		}
	}
	return m
}

func decodeError(err error, prefix string) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return Invalid(prefix+field, "must be "+jsonKind(typeErr.Type.String())+", not "+typeErr.Value)
	case errors.As(err, &syntaxErr):
		return Invalid(bodyField(prefix), "is not valid JSON: "+syntaxErr.Error())
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return Invalid(bodyField(prefix), "is not valid JSON: unexpected end of input")
	default:
		return Invalid(bodyField(prefix), "is not valid JSON: "+jsonProblem(err))
	}
}

func bodyField(prefix string) string {
	if prefix == "" {
		return "body"
	}
	return strings.TrimSuffix(prefix, ".")
}

func jsonProblem(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

func jsonKind(goType string) string {
	switch {
	case strings.Contains(goType, "string"):
		return "a string"
	case strings.Contains(goType, "int"):
		return "an integer"
	case strings.Contains(goType, "authorInput"):
		return "an object"
	default:
		return goType
	}
}

func (v *Validator) check(in input, p string) (Activity, error) {
	e := &ValidationError{}
	var a Activity

	if in.ID == nil || *in.ID == "" {
		id, err := v.newID()
		if err != nil {
			return Activity{}, fmt.Errorf("new activity id: %w", err)
		}
		a.ID = id
	} else if id, err := ID(*in.ID); err != nil {
		e.add(p+"id", err.Error())
	} else {
		a.ID = id
	}

	if in.TargetID == nil {
		e.add(p+"targetId", "is required")
	} else if id, err := v.TargetID(*in.TargetID); err != nil {
		e.add(p+"targetId", err.Error())
	} else {
		a.TargetID = id
	}

	switch {
	case in.Type == nil:
		e.add(p+"type", "is required")
	case !validType(Type(*in.Type)):
		e.add(p+"type", fmt.Sprintf("must be one of %s", joinTypes()))
	default:
		a.Type = Type(*in.Type)
	}

	switch {
	case in.TargetType == nil:
		e.add(p+"targetType", "is required")
	case !v.targetTypes[TargetType(*in.TargetType)]:
		e.add(p+"targetType", "must be one of "+v.joinTargetTypes())
	default:
		a.TargetType = TargetType(*in.TargetType)
	}

	now := v.now().UTC()
	if in.CreatedAt == nil || *in.CreatedAt == "" {
		a.CreatedAt = now
	} else if t, err := time.Parse(time.RFC3339Nano, *in.CreatedAt); err != nil {
		e.add(p+"createdAt", "must be an RFC 3339 date-time such as 2021-02-19T15:12:00Z")
	} else if t = t.UTC(); t.After(now.Add(MaxFutureSkew)) {
		e.add(p+"createdAt", "is more than 5 minutes in the future")
	} else if t.Year() < earliestCreatedYear {
		e.add(p+"createdAt", fmt.Sprintf("is before %d", earliestCreatedYear))
	} else {
		a.CreatedAt = t
	}

	if in.TimeToLiveForRecord != nil {
		ttl := *in.TimeToLiveForRecord
		if ttl < 0 || ttl > MaxTimeToLiveDays {
			e.add(p+"timetoLiveForRecord", fmt.Sprintf("must be between 0 (keep forever) and %d days", MaxTimeToLiveDays))
		} else {
			a.TimeToLiveForRecord = ttl
		}
	}

	a.OldData = checkData(e, p+"oldData", in.OldData, in.compacted)
	a.NewData = checkData(e, p+"newData", in.NewData, in.compacted)

	if in.AuthorDetails != nil {
		if in.AuthorDetails.FullName.null {
			a.Nulls |= NullFullName
		}
		if in.AuthorDetails.Email.null {
			a.Nulls |= NullEmail
		}
		var au Author
		if in.AuthorDetails.FullName.text() {
			au.FullName = in.AuthorDetails.FullName.s
		}
		if in.AuthorDetails.Email.text() {
			au.Email = in.AuthorDetails.Email.s
		}
		a.AuthorDetails = checkAuthor(e, p+"authorDetails.", au)
	}

	if in.SourceDomain.null {
		a.Nulls |= NullSourceDomain
	}
	if in.SourceDomain.text() {
		a.SourceDomain = in.SourceDomain.s
		if n := len([]rune(a.SourceDomain)); n > MaxSourceDomainLen {
			e.add(p+"sourceDomain", fmt.Sprintf("is %d characters; at most %d are allowed", n, MaxSourceDomainLen))
		}
	}

	if err := e.orNil(); err != nil {
		return Activity{}, err
	}
	return a, nil
}

// CheckAuthor validates and normalises author details that did not come
// in the body (from the caller's token, say) by the rules posted ones
// follow; the error names authorDetails.fullName or authorDetails.email.
func CheckAuthor(a Author) (Author, error) {
	e := &ValidationError{}
	a = checkAuthor(e, "authorDetails.", a)
	return a, e.orNil()
}

func checkAuthor(e *ValidationError, p string, a Author) Author {
	a.FullName = strings.TrimSpace(a.FullName)
	if n := utf8.RuneCountInString(a.FullName); n > MaxFullNameLen {
		e.add(p+"fullName", fmt.Sprintf("is %d characters; at most %d are allowed", n, MaxFullNameLen))
	} else if strings.ContainsFunc(a.FullName, unicode.IsControl) {
		e.add(p+"fullName", "must not hold control characters")
	}
	a.Email = strings.TrimSpace(a.Email)
	if a.Email != "" {
		if err := checkEmail(a.Email); err != "" {
			e.add(p+"email", err)
		}
	}
	return a
}

func checkData(e *ValidationError, field string, raw json.RawMessage, compacted bool) json.RawMessage {
	if isNull(raw) {
		return nil
	}
	if len(raw) > MaxDataBytes {
		e.add(field, fmt.Sprintf("is %d bytes; at most %d are allowed", len(raw), MaxDataBytes))
		return nil
	}
	if raw[0] != '{' {
		e.add(field, "must be a JSON object or null")
		return nil
	}
	if compacted {
		return raw
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		e.add(field, "is not valid JSON")
		return nil
	}
	return buf.Bytes()
}

func checkEmail(s string) string {
	if len(s) > MaxEmailLen {
		return fmt.Sprintf("is %d characters; at most %d are allowed", len(s), MaxEmailLen)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") {
		return "must be an email address such as name@example.org"
	}
	return ""
}

func validType(t Type) bool {
	for _, x := range Types {
		if x == t {
			return true
		}
	}
	return false
}

func joinTypes() string {
	s := make([]string, len(Types))
	for i, t := range Types {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}

func (v *Validator) joinTargetTypes() string {
	tt := v.TargetTypes()
	s := make([]string, len(tt))
	for i, t := range tt {
		s[i] = string(t)
	}
	return strings.Join(s, ", ")
}
