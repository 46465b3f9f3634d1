package activity

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// fastInput reads an item the way decodeOne's encoding/json decoder does,
// in one pass and without reflection, when it is plainly well formed:
// known keys, strings without escapes, an integer ttl, data objects that
// json.Compact takes. It reports false for anything else, which decodeOne
// then decodes with encoding/json, so that every error keeps its wording.
// scanBody has already refused repeated and unknown keys, bad UTF-8 and
// deep nesting.
func fastInput(b []byte, in *input) bool {
	d := fast{b: b}
	return d.input(in) && d.end()
}

// input reads the activity object at the cursor.
func (d *fast) input(in *input) bool {
	ok := d.members(func(key string) bool {
		switch key {
		case "id":
			return d.strPtr(&in.ID)
		case "targetId":
			return d.strPtr(&in.TargetID)
		case "type":
			return d.strPtr(&in.Type)
		case "targetType":
			return d.strPtr(&in.TargetType)
		case "createdAt":
			return d.strPtr(&in.CreatedAt)
		case "timetoLiveForRecord":
			return d.intPtr(&in.TimeToLiveForRecord)
		case "oldData":
			return d.data(&in.OldData)
		case "newData":
			return d.data(&in.NewData)
		case "authorDetails":
			return d.author(&in.AuthorDetails)
		case "sourceDomain":
			return d.opt(&in.SourceDomain)
		}
		return false
	})
	in.compacted = ok
	return ok
}

// members reads the object at the cursor, calling member with the cursor
// on each key's value; member reads the value and reports success.
func (d *fast) members(member func(key string) bool) bool {
	d.ws()
	if !d.byte('{') {
		return false
	}
	d.ws()
	if d.byte('}') {
		return true
	}
	for {
		d.ws()
		key, ok := d.str()
		if !ok {
			return false
		}
		d.ws()
		if !d.byte(':') {
			return false
		}
		d.ws()
		if !member(key) {
			return false
		}
		d.ws()
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

type fast struct {
	b []byte
	i int
}

func (d *fast) ws() {
	for d.i < len(d.b) && isSpace(d.b[d.i]) {
		d.i++
	}
}

func (d *fast) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end: nothing but space after the object.
func (d *fast) end() bool {
	d.ws()
	return d.i == len(d.b)
}

func (d *fast) null() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// str takes a string without escapes or control characters.
func (d *fast) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	for j := d.i; j < len(d.b); j++ {
		switch c := d.b[j]; {
		case c == '"':
			s := string(d.b[d.i:j])
			d.i = j + 1
			return s, true
		case c == '\\' || c < 0x20:
			return "", false
		}
	}
	return "", false
}

// strPtr takes a string or null (which leaves the field nil).
func (d *fast) strPtr(p **string) bool {
	if d.null() {
		*p = nil
		return true
	}
	s, ok := d.str()
	*p = &s
	return ok
}

func (d *fast) opt(o *optString) bool {
	*o = optString{set: true}
	if d.null() {
		o.null = true
		return true
	}
	var ok bool
	o.s, ok = d.str()
	return ok
}

// intPtr takes an integer of up to 18 digits, or null.
func (d *fast) intPtr(p **int) bool {
	if d.null() {
		*p = nil
		return true
	}
	start := d.i
	d.byte('-')
	digits := d.i
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	if n := d.i - digits; n == 0 || n > 18 || n > 1 && d.b[digits] == '0' {
		return false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return false
	}
	n, err := strconv.Atoi(string(d.b[start:d.i]))
	*p = &n
	return err == nil
}

func (d *fast) author(p **authorInput) bool {
	if d.null() {
		*p = nil
		return true
	}
	a := &authorInput{}
	*p = a
	return d.members(func(key string) bool {
		switch key {
		case "fullName":
			return d.opt(&a.FullName)
		case "email":
			return d.opt(&a.Email)
		}
		return false
	})
}

// data takes null or an object of at most MaxDataBytes as written, and
// keeps it compacted (checkData's work): copied when compactValid,
// else through json.Compact, which validates it.
func (d *fast) data(m *json.RawMessage) bool {
	if d.null() {
		*m = nil
		return true
	}
	if d.i >= len(d.b) || d.b[d.i] != '{' {
		return false
	}
	if end, ok := compactValue(d.b, d.i, false, 0); ok {
		if end-d.i > MaxDataBytes {
			return false
		}
		*m = bytes.Clone(d.b[d.i:end])
		d.i = end
		return true
	}
	end, ok := valueEnd(d.b, d.i)
	if !ok {
		return false
	}
	for end > d.i && isSpace(d.b[end-1]) {
		end--
	}
	raw := d.b[d.i:end]
	if len(raw) > MaxDataBytes {
		return false
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(raw)))
	if json.Compact(buf, raw) != nil {
		return false
	}
	*m = buf.Bytes()
	d.i = end
	return true
}

// fastArray reads an array of 1–MaxBatch items with fastInput; false when
// any item (or the array) does not read that way.
func fastArray(b []byte) ([]input, bool) {
	d := fast{b: b}
	d.ws()
	if !d.byte('[') {
		return nil, false
	}
	ins := make([]input, 0, 16)
	for len(ins) < MaxBatch {
		ins = append(ins, input{})
		if !d.input(&ins[len(ins)-1]) {
			return nil, false
		}
		d.ws()
		if d.byte(']') {
			return ins, d.end()
		}
		if !d.byte(',') {
			return nil, false
		}
	}
	return nil, false
}
