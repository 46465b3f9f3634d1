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
	if compactValid(m, true) {
		return append(b, m...), nil
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
// compactValid or else json.Valid; copied unless the decoder aliases.
func (d *canonical) raw(v *json.RawMessage) bool {
	end, ok := valueEnd(d.b, d.i)
	if !ok || end == d.i || isSpace(d.b[d.i]) || isSpace(d.b[end-1]) ||
		!compactValid(d.b[d.i:end], false) && !json.Valid(d.b[d.i:end]) {
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

// compactValid reports whether b is one valid JSON value that json.Compact
// would leave as it is (no space outside strings), and with html none that
// json.HTMLEscape would change either: such data are copied as they are.
// It is a plain recursive reader, several times faster than json.Compact's
// state machine; false sends the caller to encoding/json.
func compactValid(b []byte, html bool) bool {
	end, ok := compactValue(b, 0, html, 0)
	return ok && end == len(b)
}

// maxCompactDepth bounds compactValue's recursion; deeper values go to
// encoding/json.
const maxCompactDepth = 512

func compactValue(b []byte, i int, html bool, depth int) (int, bool) {
	if i >= len(b) || depth > maxCompactDepth {
		return 0, false
	}
	var ok bool
	switch c := b[i]; {
	case c == '{', c == '[':
		close := byte('}')
		if c == '[' {
			close = ']'
		}
		i++
		if i < len(b) && b[i] == close {
			return i + 1, true
		}
		for {
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return 0, false
				}
				if i, ok = compactString(b, i, html); !ok || i >= len(b) || b[i] != ':' {
					return 0, false
				}
				i++
			}
			if i, ok = compactValue(b, i, html, depth+1); !ok || i >= len(b) {
				return 0, false
			}
			switch b[i] {
			case ',':
				i++
			case close:
				return i + 1, true
			default:
				return 0, false
			}
		}
	case c == '"':
		return compactString(b, i, html)
	case c == '-' || '0' <= c && c <= '9':
		return compactNumber(b, i)
	case c == 't':
		return compactLiteral(b, i, "true")
	case c == 'f':
		return compactLiteral(b, i, "false")
	case c == 'n':
		return compactLiteral(b, i, "null")
	}
	return 0, false
}

func compactLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
		return i + len(lit), true
	}
	return 0, false
}

func compactString(b []byte, i int, html bool) (int, bool) {
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c < 0x20:
			return 0, false
		case c == '\\':
			if i+1 >= len(b) {
				return 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i++
			case 'u':
				if i+6 > len(b) {
					return 0, false
				}
				for _, h := range b[i+2 : i+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return 0, false
					}
				}
				i += 5
			default:
				return 0, false
			}
		case html && (c == '<' || c == '>' || c == '&'):
			return 0, false
		case html && c == 0xE2 && i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xA8 || b[i+2] == 0xA9):
			return 0, false // U+2028, U+2029
		}
	}
	return 0, false
}

func compactNumber(b []byte, i int) (int, bool) {
	digits := func() bool {
		start := i
		for i < len(b) && '0' <= b[i] && b[i] <= '9' {
			i++
		}
		return i > start
	}
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return 0, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return 0, false
		}
	}
	return i, true
}
