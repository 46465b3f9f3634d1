package activity

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The API JSON of an activity is written and read without reflection: the
// projector and the write path handle every activity once or twice, and
// encoding/json's reflection, its validating pre-pass and a second pass
// for nulls were most of their CPU.

// appendJSON appends the API JSON of a: the bytes json.Marshal wrote for
// the shape MarshalJSON used to declare (field order, HTML escaping,
// compacted raw data).
func (a Activity) appendJSON(b []byte) ([]byte, error) {
	nulls := a.shownNulls()
	b = append(b, `{"id":`...)
	b = appendString(b, a.ID)
	b = append(b, `,"targetId":`...)
	b = appendString(b, a.TargetID)
	b = append(b, `,"type":`...)
	b = appendString(b, string(a.Type))
	b = append(b, `,"targetType":`...)
	b = appendString(b, string(a.TargetType))
	b = append(b, `,"createdAt":"`...)
	b = a.CreatedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","timetoLiveForRecord":`...)
	b = strconv.AppendInt(b, int64(a.TimeToLiveForRecord), 10)
	b = append(b, `,"oldData":`...)
	var err error
	if b, err = appendRaw(b, a.OldData); err != nil {
		return nil, err
	}
	b = append(b, `,"newData":`...)
	if b, err = appendRaw(b, a.NewData); err != nil {
		return nil, err
	}
	b = append(b, `,"authorDetails":{"fullName":`...)
	b = appendNullable(b, a.AuthorDetails.FullName, nulls&NullFullName != 0)
	b = append(b, `,"email":`...)
	b = appendNullable(b, a.AuthorDetails.Email, nulls&NullEmail != 0)
	b = append(b, `},"sourceDomain":`...)
	b = appendNullable(b, a.SourceDomain, nulls&NullSourceDomain != 0)
	if s := a.Source; s != nil {
		b = append(b, `,"source":{"eventId":`...)
		b = appendString(b, s.EventID)
		b = append(b, `,"eventType":`...)
		b = appendString(b, s.EventType)
		if s.SourceSystem != "" {
			b = append(b, `,"sourceSystem":`...)
			b = appendString(b, s.SourceSystem)
		}
		if s.CorrelationID != "" {
			b = append(b, `,"correlationId":`...)
			b = appendString(b, s.CorrelationID)
		}
		b = append(b, '}')
	}
	return append(b, '}'), nil
}

func appendNullable(b []byte, s string, null bool) []byte {
	if null {
		return append(b, "null"...)
	}
	return appendString(b, s)
}

// appendString writes s as encoding/json does. Plain ASCII is copied;
// anything needing an escape goes through encoding/json itself.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendRaw writes raw data as encoding/json writes a json.RawMessage:
// compacted, HTML-escaped, null when empty; invalid JSON is an error.
func appendRaw(b []byte, m json.RawMessage) ([]byte, error) {
	if len(m) == 0 {
		return append(b, "null"...), nil
	}
	start := len(b)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, m); err != nil {
		return nil, err
	}
	b = buf.Bytes()
	if bytes.ContainsAny(b[start:], "<>&\u2028\u2029") {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, b[start:])
		b = append(b[:start], esc.Bytes()...)
	}
	return b, nil
}

// decodeCanonical reads b when it is exactly what appendJSON writes with
// plain strings (no escapes), as nearly every stored event is, in one
// pass; it reports false for anything else, which the caller decodes with
// encoding/json. With alias the raw data are views of b.
func (a *Activity) decodeCanonical(b []byte, alias bool) bool {
	d := canonical{b: b, alias: alias}
	var out Activity
	var ttl []byte
	var created []byte
	ok := d.lit(`{"id":`) && d.str(&out.ID) &&
		d.lit(`,"targetId":`) && d.str(&out.TargetID) &&
		d.lit(`,"type":`) && d.str((*string)(&out.Type)) &&
		d.lit(`,"targetType":`) && d.str((*string)(&out.TargetType)) &&
		d.lit(`,"createdAt":`) && d.quoted(&created) &&
		d.lit(`,"timetoLiveForRecord":`) && d.number(&ttl) &&
		d.lit(`,"oldData":`) && d.raw(&out.OldData) &&
		d.lit(`,"newData":`) && d.raw(&out.NewData) &&
		d.lit(`,"authorDetails":{"fullName":`) && d.nullable(&out.AuthorDetails.FullName, &out.Nulls, NullFullName) &&
		d.lit(`,"email":`) && d.nullable(&out.AuthorDetails.Email, &out.Nulls, NullEmail) &&
		d.lit(`},"sourceDomain":`) && d.nullable(&out.SourceDomain, &out.Nulls, NullSourceDomain)
	if !ok {
		return false
	}
	if d.lit(`,"source":{"eventId":`) {
		s := &Source{}
		if !d.str(&s.EventID) || !d.lit(`,"eventType":`) || !d.str(&s.EventType) {
			return false
		}
		if d.lit(`,"sourceSystem":`) && !d.str(&s.SourceSystem) {
			return false
		}
		if d.lit(`,"correlationId":`) && !d.str(&s.CorrelationID) {
			return false
		}
		if !d.lit(`}`) {
			return false
		}
		out.Source = s
	}
	if !d.lit(`}`) || d.i != len(b) {
		return false
	}
	n, err := strconv.ParseInt(string(ttl), 10, 0)
	if err != nil || out.CreatedAt.UnmarshalJSON(created) != nil {
		return false
	}
	out.TimeToLiveForRecord = int(n)
	out.CreatedAt = out.CreatedAt.UTC()
	if isNull(out.OldData) {
		out.OldData = nil
	}
	if isNull(out.NewData) {
		out.NewData = nil
	}
	*a = out
	return true
}

// canonical is a cursor over a document of the canonical shape.
type canonical struct {
	b     []byte
	i     int
	alias bool // raw data may share b's memory
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (d *canonical) lit(s string) bool {
	if len(d.b)-d.i < len(s) || string(d.b[d.i:d.i+len(s)]) != s {
		return false
	}
	d.i += len(s)
	return true
}

// quoted takes a string without escapes or control characters, in valid
// UTF-8, quotes included.
func (d *canonical) quoted(v *[]byte) bool {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return false
	}
	end := bytes.IndexByte(d.b[d.i+1:], '"')
	if end < 0 {
		return false
	}
	s := d.b[d.i+1 : d.i+1+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return false
		}
	}
	if !utf8.Valid(s) {
		return false
	}
	*v = d.b[d.i : d.i+end+2]
	d.i += end + 2
	return true
}

func (d *canonical) str(v *string) bool {
	var q []byte
	if !d.quoted(&q) {
		return false
	}
	*v = string(q[1 : len(q)-1])
	return true
}

func (d *canonical) nullable(v *string, nulls *Nulls, n Nulls) bool {
	if d.lit("null") {
		*nulls |= n
		return true
	}
	return d.str(v)
}

func (d *canonical) number(v *[]byte) bool {
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	digits := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	*v = d.b[start:d.i]
	// JSON has no leading zeros; leave those to encoding/json to refuse.
	return d.i > digits && (d.b[digits] != '0' || d.i == digits+1)
}

// raw takes one JSON value without surrounding space, checked with
// json.Valid; copied unless the decoder aliases.
func (d *canonical) raw(v *json.RawMessage) bool {
	end, ok := valueEnd(d.b, d.i)
	if !ok || end == d.i || isSpace(d.b[d.i]) || isSpace(d.b[end-1]) || !json.Valid(d.b[d.i:end]) {
		return false
	}
	*v = d.b[d.i:end:end]
	if !d.alias {
		*v = bytes.Clone(*v)
	}
	d.i = end
	return true
}

// valueEnd finds where the compact JSON value starting at i ends: it
// tracks strings and nesting only; json.Valid checks the rest.
func valueEnd(b []byte, i int) (int, bool) {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return 0, false
			}
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth < 0 {
				return i, true // the end of the enclosing object
			}
		case ',':
			if depth == 0 {
				return i, true
			}
		}
		if depth == 0 && i+1 < len(b) && (b[i+1] == ',' || b[i+1] == '}') {
			return i + 1, true
		}
	}
	return 0, false
}
