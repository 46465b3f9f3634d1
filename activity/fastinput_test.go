package activity

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// FuzzFastDecode: a body decodes to the same activities, or the same
// error, whether or not the fast readers (fastInput, fastArray) take it.
func FuzzFastDecode(f *testing.F) {
	item := `{"id":"6f22e9ae-3e8a-4e0e-af46-000000000001","targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"update","targetType":"person","createdAt":"2021-02-19T15:12:00Z","timetoLiveForRecord":30,"oldData":{"a": [1, {"b" : "x y"}]},"newData":null,"authorDetails":{"fullName":"A","email":null},"sourceDomain":"P"}`
	for _, s := range []string{
		item, "[" + item + " , " + item + "]", "[" + item + "]x",
		`{"targetId":"x","type":"create","targetType":"person","newData":{"a":1,}}`,
		`{"targetId":"x","timetoLiveForRecord":01}`, `{"targetId":"x","timetoLiveForRecord":1.0}`,
		`{"targetId":"x","timetoLiveForRecord":-0}`, `{"targetId":"x","timetoLiveForRecord":99999999999999999999}`,
		`{"targetId":"x","authorDetails":null,"sourceDomain":null}`, `{"targetId":"x","authorDetails":{}}`,
		`{"targetId":"x","oldData":[1]}`, `{"targetId":"x","oldData":"{}"}`, `{"targetId":"a\"b"}`,
		`{"targetId":1}`, `{"id":null}`, `{} {}`, `[{},1]`, `[{"id":"x"},{"id":"x"}]`, `{"oldData":{"a":nul}}`,
	} {
		f.Add([]byte(s))
	}
	rules := Rules{Now: func() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) },
		NewID: func() (string, error) { return "00000000-0000-0000-0000-000000000000", nil }}
	v, err := NewValidator(rules)
	if err != nil {
		f.Fatal(err)
	}
	slow, _ := NewValidator(rules)
	slow.noFast = true
	f.Fuzz(func(t *testing.T, body []byte) {
		fastActs, fastMany, fastErr := v.Decode(body)
		slowActs, slowMany, slowErr := slow.Decode(body)
		if !reflect.DeepEqual(fastErr, slowErr) || fastMany != slowMany || !reflect.DeepEqual(fastActs, slowActs) {
			t.Fatalf("fast: %v %v %+v\nslow: %v %v %+v", fastMany, fastErr, fastActs, slowMany, slowErr, slowActs)
		}
	})
}

// FuzzCompactValid: what compactValid passes is valid JSON that
// json.Compact (and, with html, json.HTMLEscape) leaves as it is.
func FuzzCompactValid(f *testing.F) {
	for _, s := range []string{
		`{"a":[1,-0.5e+3,true,false,null,"x\u00e9\n\"<"],"b":{}}`, `{"a": 1}`, `[01]`, `1.`, `"\ud800"`,
		`{"a":"<>&"}`, "\"\u2028\"", `{"a":1,}`, `[]`, `"\x"`, `-`, `1e`, `{"a"}`, `[[[[]]]]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c bytes.Buffer
		compactErr := json.Compact(&c, b)
		for _, html := range []bool{false, true} {
			if !compactValid(b, html) {
				continue
			}
			if compactErr != nil || !bytes.Equal(c.Bytes(), b) {
				t.Fatalf("compactValid(%q, %v) but json.Compact gives %q, %v", b, html, c.Bytes(), compactErr)
			}
			var e bytes.Buffer
			if json.HTMLEscape(&e, b); html && !bytes.Equal(e.Bytes(), b) {
				t.Fatalf("compactValid(%q, true) but json.HTMLEscape changes it", b)
			}
		}
		// It must take what is plainly compact (and not too deep), or
		// nothing gets faster.
		shallow := bytes.Count(b, []byte("{"))+bytes.Count(b, []byte("[")) <= maxCompactDepth
		if compactErr == nil && bytes.Equal(c.Bytes(), b) && shallow && !compactValid(b, false) {
			t.Fatalf("compactValid(%q) refuses compact valid JSON", b)
		}
	})
}
