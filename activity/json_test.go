package activity

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// reflectJSON is how MarshalJSON wrote an activity before it was hand
// written: the oracle the hand-written encoder must match byte for byte.
func reflectJSON(a Activity) ([]byte, error) {
	type author struct {
		FullName *string `json:"fullName"`
		Email    *string `json:"email"`
	}
	type shape struct {
		ID                  string          `json:"id"`
		TargetID            string          `json:"targetId"`
		Type                Type            `json:"type"`
		TargetType          TargetType      `json:"targetType"`
		CreatedAt           string          `json:"createdAt"`
		TimeToLiveForRecord int             `json:"timetoLiveForRecord"`
		OldData             json.RawMessage `json:"oldData"`
		NewData             json.RawMessage `json:"newData"`
		AuthorDetails       author          `json:"authorDetails"`
		SourceDomain        *string         `json:"sourceDomain"`
		Source              *Source         `json:"source,omitempty"`
	}
	ptr := func(s string, null bool) *string {
		if null {
			return nil
		}
		return &s
	}
	n := a.shownNulls()
	return json.Marshal(shape{
		ID: a.ID, TargetID: a.TargetID, Type: a.Type, TargetType: a.TargetType,
		CreatedAt:           a.CreatedAt.UTC().Format(time.RFC3339Nano),
		TimeToLiveForRecord: a.TimeToLiveForRecord,
		OldData:             orNull(a.OldData), NewData: orNull(a.NewData),
		AuthorDetails: author{FullName: ptr(a.AuthorDetails.FullName, n&NullFullName != 0),
			Email: ptr(a.AuthorDetails.Email, n&NullEmail != 0)},
		SourceDomain: ptr(a.SourceDomain, n&NullSourceDomain != 0),
		Source:       a.Source,
	})
}

// slowDecode is encoding/json's reading of a document, without the fast path.
func slowDecode(b []byte) (Activity, error) {
	type plain Activity
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return Activity{}, err
	}
	a := Activity(p)
	a.CreatedAt = a.CreatedAt.UTC()
	if isNull(a.OldData) {
		a.OldData = nil
	}
	if isNull(a.NewData) {
		a.NewData = nil
	}
	var n struct {
		AuthorDetails *struct{ FullName, Email json.RawMessage }
		SourceDomain  json.RawMessage
	}
	if err := json.Unmarshal(b, &n); err != nil {
		return Activity{}, err
	}
	if n.AuthorDetails != nil {
		a.Nulls |= nullIf(n.AuthorDetails.FullName, NullFullName) | nullIf(n.AuthorDetails.Email, NullEmail)
	}
	a.Nulls |= nullIf(n.SourceDomain, NullSourceDomain)
	return a, nil
}

func jsonSamples() []Activity {
	at := time.Date(2021, 2, 19, 15, 12, 0, 123456789, time.FixedZone("x", 3600))
	base := Activity{
		ID: "6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6", TargetID: "0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d",
		Type: TypeUpdate, TargetType: "person", CreatedAt: at, TimeToLiveForRecord: 30,
		OldData: json.RawMessage(`{"a":1}`), NewData: json.RawMessage(`{"a":[1,2,{"b":"c,}]"}]}`),
		AuthorDetails: Author{FullName: "Ada", Email: "ada@example.org"}, SourceDomain: "Person",
	}
	var out []Activity
	add := func(f func(a *Activity)) {
		a := base
		f(&a)
		out = append(out, a)
	}
	add(func(*Activity) {})
	add(func(a *Activity) { a.OldData, a.NewData = nil, json.RawMessage("null") })
	add(func(a *Activity) { a.NewData = json.RawMessage(" {\n\"x\" : \"<b>&amp;\u2028\" } ") })
	add(func(a *Activity) { a.OldData, a.NewData = json.RawMessage(`"s"`), json.RawMessage(`-1.5e3`) })
	add(func(a *Activity) { a.OldData, a.NewData = json.RawMessage(`true`), json.RawMessage(`[]`) })
	add(func(a *Activity) { a.AuthorDetails.FullName = "Zoë \"Q\" <z> & \\ \t\x01" })
	add(func(a *Activity) { a.SourceDomain = "bad \xff utf8 \u2029" })
	add(func(a *Activity) {
		a.Nulls = NullFullName | NullEmail | NullSourceDomain
		a.AuthorDetails = Author{}
		a.SourceDomain = ""
	})
	add(func(a *Activity) { a.Nulls = NullEmail; a.AuthorDetails.Email = "" })
	add(func(a *Activity) { a.Nulls = NullFullName }) // text wins over the mark
	add(func(a *Activity) { a.TimeToLiveForRecord, a.CreatedAt = -3, time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC) })
	add(func(a *Activity) { a.Source = &Source{EventID: "e1", EventType: "PersonUpdated"} })
	add(func(a *Activity) {
		a.Source = &Source{EventID: "e1", EventType: "T", SourceSystem: "sys", CorrelationID: "c<1>"}
	})
	add(func(a *Activity) { a.Source = &Source{EventID: "e1", EventType: "T", CorrelationID: "c"} })
	add(func(a *Activity) { a.ID, a.TargetID, a.Type = "", "", "" })
	return out
}

func TestMarshalJSONMatchesReflection(t *testing.T) {
	t.Parallel()
	for i, a := range jsonSamples() {
		got, err := a.MarshalJSON()
		want, werr := reflectJSON(a)
		if err != nil || werr != nil || !bytes.Equal(got, want) {
			t.Errorf("sample %d:\n got %s (%v)\nwant %s (%v)", i, got, err, want, werr)
		}
	}
	bad := jsonSamples()[0]
	bad.NewData = json.RawMessage(`{"a":`)
	if _, err := bad.MarshalJSON(); err == nil {
		t.Error("invalid raw data encoded without an error")
	}
}

// Every sample and variations of it the fast path must refuse or read as
// encoding/json does.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	var docs [][]byte
	for _, a := range jsonSamples() {
		b, err := a.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, b)
	}
	doc := string(docs[0])
	docs = append(docs,
		[]byte(` `+doc), []byte(doc+` `),
		bytes.Replace(docs[0], []byte(`"oldData":{`), []byte(`"oldData": {`), 1),
		bytes.Replace(docs[0], []byte(`{"a":1}`), []byte(`{"a":1} `), 1),
		bytes.Replace(docs[0], []byte(`"Ada"`), []byte(`"A\u0064a"`), 1),
		bytes.Replace(docs[0], []byte(`"id"`), []byte(`"ID"`), 1),
		bytes.Replace(docs[0], []byte(`:30,`), []byte(`:030,`), 1),
		bytes.Replace(docs[0], []byte(`:30,`), []byte(`:3.0,`), 1),
		bytes.Replace(docs[0], []byte(`}}`), []byte(`},"extra":1}`), 1),
		bytes.Replace(docs[0], []byte(`{"a":1}`), []byte(`{"a":}`), 1),
		bytes.Replace(docs[0], []byte(`Person"}`), []byte(`Person","sourceDomain":"X"}`), 1),
		bytes.Replace(docs[0], []byte(`2021-02-19T14:12:00.123456789Z`), []byte(`2021-02-19T15:12:00.1+01:00`), 1),
		bytes.Replace(docs[0], []byte(`2021-02-19T14:12:00.123456789Z`), []byte(`yesterday`), 1),
		[]byte(doc[:len(doc)-1]), []byte(doc+`}`), []byte(`{}`), []byte(`null`),
	)
	for i, b := range docs {
		checkDecode(t, i, b)
	}
}

func checkDecode(t *testing.T, i int, b []byte) {
	t.Helper()
	want, werr := slowDecode(b)
	var got Activity
	gerr := got.UnmarshalJSON(b)
	ev, everr := DecodeEvent(EventRecorded, b)
	if (gerr == nil) != (werr == nil) || (everr == nil) != (werr == nil) {
		t.Fatalf("doc %d %s: error %v / %v, encoding/json %v", i, b, gerr, everr, werr)
	}
	if werr != nil {
		return
	}
	if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(ev, want) {
		t.Fatalf("doc %d %s:\n got %#v\nwant %#v", i, b, got, want)
	}
}

// FuzzDecodeEvent: whatever the fast path accepts, encoding/json reads the
// same; and an activity's own encoding reads back as itself.
func FuzzDecodeEvent(f *testing.F) {
	for _, a := range jsonSamples() {
		b, _ := a.MarshalJSON()
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, 0, b)
		a, err := DecodeEvent(EventRecorded, b)
		if err != nil {
			return
		}
		again, err := a.MarshalJSON()
		want, werr := reflectJSON(a)
		if (err == nil) != (werr == nil) || !bytes.Equal(again, want) {
			t.Fatalf("re-encoding %s: %s (%v), want %s (%v)", b, again, err, want, werr)
		}
	})
}
