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
	d := fast{canonical{b: b}}
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
		var key string
		if !d.str(&key) {
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

// fast reads input with the stored-event reader's cursor (json.go).
type fast struct{ canonical }

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

// strPtr takes a string or null (which leaves the field nil).
func (d *fast) strPtr(p **string) bool {
	if d.lit("null") {
		*p = nil
		return true
	}
	var s string
	ok := d.str(&s)
	*p = &s
	return ok
}

func (d *fast) opt(o *optString) bool {
	*o = optString{set: true}
	if d.lit("null") {
		o.null = true
		return true
	}
	return d.str(&o.s)
}

// intPtr takes an integer of up to 18 digits, or null.
func (d *fast) intPtr(p **int) bool {
	if d.lit("null") {
		*p = nil
		return true
	}
	var v []byte
	if !d.number(&v) || len(bytes.TrimPrefix(v, []byte("-"))) > 18 {
		return false
	}
	if d.i < len(d.b) && (d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		return false
	}
	n, err := strconv.Atoi(string(v))
	*p = &n
	return err == nil
}

func (d *fast) author(p **authorInput) bool {
	if d.lit("null") {
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
	if d.lit("null") {
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
	d := fast{canonical{b: b}}
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
