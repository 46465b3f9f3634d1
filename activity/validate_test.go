package activity_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
)

var fixedNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func newValidator(t *testing.T, r activity.Rules) *activity.Validator {
	t.Helper()
	if r.Now == nil {
		r.Now = func() time.Time { return fixedNow }
	}
	v, err := activity.NewValidator(r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const good = `{"id":"6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6","targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d",
"type":"update","targetType":"person","createdAt":"2021-02-19T15:12:00Z","timetoLiveForRecord":365,
"oldData":{"Forename":"M", "middle name":""},"newData":{"Forename":"Mehdi","middle name":""},
"authorDetails":{"fullName":"Mehdi Kimakhe","email":"mehdi@example.org"},"sourceDomain":"Person"}`

func TestDecodeGood(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	acts, many, err := v.Decode([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if many || len(acts) != 1 {
		t.Fatalf("many=%v len=%d", many, len(acts))
	}
	a := acts[0]
	if a.ID != "6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6" || a.Type != activity.TypeUpdate || a.TimeToLiveForRecord != 365 {
		t.Fatalf("unexpected %+v", a)
	}
	if string(a.OldData) != `{"Forename":"M","middle name":""}` {
		t.Fatalf("oldData not kept: %s", a.OldData)
	}
	out, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":"6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6","targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"update","targetType":"person","createdAt":"2021-02-19T15:12:00Z","timetoLiveForRecord":365,"oldData":{"Forename":"M","middle name":""},"newData":{"Forename":"Mehdi","middle name":""},"authorDetails":{"fullName":"Mehdi Kimakhe","email":"mehdi@example.org"},"sourceDomain":"Person"}`
	if string(out) != want {
		t.Fatalf("json shape:\n got %s\nwant %s", out, want)
	}
	back, err := activity.DecodeEvent(activity.EventRecorded, out)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(a) {
		t.Fatalf("event round trip changed the activity:\n%+v\n%+v", back, a)
	}
}

func TestDecodeDefaultsAndNormalises(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	acts, _, err := v.Decode([]byte(`{"targetId":"0A4A1E2C4CF34B5E9D896F2A1C3E5B7D","type":"create","targetType":"tenure"}`))
	if err != nil {
		t.Fatal(err)
	}
	a := acts[0]
	if a.TargetID != "0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d" {
		t.Errorf("targetId not canonical: %s", a.TargetID)
	}
	if !a.CreatedAt.Equal(fixedNow) {
		t.Errorf("createdAt = %v, want now", a.CreatedAt)
	}
	if _, err := activity.ID(a.ID); err != nil || a.ID[14] != '7' {
		t.Errorf("generated id %q is not a UUIDv7", a.ID)
	}
	out, _ := json.Marshal(a)
	if !strings.Contains(string(out), `"oldData":null,"newData":null`) {
		t.Errorf("absent data not null: %s", out)
	}
}

func TestSortKeyOrdersByTimeThenID(t *testing.T) {
	t.Parallel()
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	keys := []string{
		activity.Activity{ID: "b", CreatedAt: base}.SortKey(),
		activity.Activity{ID: "a", CreatedAt: base.Add(time.Nanosecond)}.SortKey(),
		activity.Activity{ID: "a", CreatedAt: base.Add(time.Second)}.SortKey(),
		activity.Activity{ID: "b", CreatedAt: base.Add(time.Second)}.SortKey(),
		activity.Activity{ID: "a", CreatedAt: base.AddDate(10, 0, 0)}.SortKey(),
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1] >= keys[i] {
			t.Fatalf("%q should sort before %q", keys[i-1], keys[i])
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	tid := `"targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d"`
	ok := `{` + tid + `,"type":"create","targetType":"person"}`
	big := `{"k":"` + strings.Repeat("x", activity.MaxDataBytes) + `"}`
	items := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = ok
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	cases := []struct {
		name, body, field string
	}{
		{"empty", ``, "body"},
		{"not json", `{nope`, "body"},
		{"scalar", `42`, "body"},
		{"trailing data", ok + `{}`, "body"},
		{"missing targetId", `{"type":"create","targetType":"person"}`, "targetId"},
		{"numeric targetId", `{"targetId":12,"type":"create","targetType":"person"}`, "targetId"},
		{"malformed targetId", `{"targetId":"12345667890","type":"create","targetType":"person"}`, "targetId"},
		{"urn targetId", `{"targetId":"urn:uuid:0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"create","targetType":"person"}`, "targetId"},
		{"bad type", `{` + tid + `,"type":"created","targetType":"person"}`, "type"},
		{"missing type", `{` + tid + `,"targetType":"person"}`, "type"},
		{"bad targetType", `{` + tid + `,"type":"create","targetType":"people"}`, "targetType"},
		{"unknown field", `{` + tid + `,"type":"create","targetType":"person","colour":"red"}`, "colour"},
		{"unknown author field", `{` + tid + `,"type":"create","targetType":"person","authorDetails":{"id":"x"}}`, "authorDetails.id"},
		{"author as string", `{` + tid + `,"type":"create","targetType":"person","authorDetails":"me"}`, "authorDetails"},
		{"ttl as string", `{` + tid + `,"type":"create","targetType":"person","timetoLiveForRecord":"365 days"}`, "timetoLiveForRecord"},
		{"negative ttl", `{` + tid + `,"type":"create","targetType":"person","timetoLiveForRecord":-1}`, "timetoLiveForRecord"},
		{"future createdAt", `{` + tid + `,"type":"create","targetType":"person","createdAt":"2026-11-30T12:06:00Z"}`, "createdAt"},
		{"createdAt not rfc3339", `{` + tid + `,"type":"create","targetType":"person","createdAt":"2021-02-19 15:12:00"}`, "createdAt"},
		{"newData too big", `{` + tid + `,"type":"create","targetType":"person","newData":` + big + `}`, "newData"},
		{"newData array", `{` + tid + `,"type":"create","targetType":"person","newData":[1]}`, "newData"},
		{"oldData string", `{` + tid + `,"type":"create","targetType":"person","oldData":"x"}`, "oldData"},
		{"bad email", `{` + tid + `,"type":"create","targetType":"person","authorDetails":{"email":"not-an-address"}}`, "authorDetails.email"},
		{"long name", `{` + tid + `,"type":"create","targetType":"person","authorDetails":{"fullName":"` + strings.Repeat("n", 257) + `"}}`, "authorDetails.fullName"},
		{"long sourceDomain", `{` + tid + `,"type":"create","targetType":"person","sourceDomain":"` + strings.Repeat("d", 65) + `"}`, "sourceDomain"},
		{"bad id", `{"id":"nope",` + tid + `,"type":"create","targetType":"person"}`, "id"},
		{"empty array", `[]`, "body"},
		{"too many", items(activity.MaxBatch + 1), "body"},
		{"one bad item", `[` + ok + `,` + ok + `,{` + tid + `,"type":"x","targetType":"person"}]`, "[2].type"},
		{"repeated id in batch", `[{"id":"6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6",` + tid + `,"type":"create","targetType":"person"},{"id":"6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6",` + tid + `,"type":"create","targetType":"person"}]`, "[1].id"},
		{"unknown field in item", `[` + ok + `,{` + tid + `,"type":"create","targetType":"person","x":1}]`, "[1].x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := v.Decode([]byte(c.body))
			var ve *activity.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError, got %v", err)
			}
			if _, ok := ve.Fields[c.field]; !ok {
				t.Fatalf("want field %q named, got %v", c.field, ve.Fields)
			}
		})
	}
}

func TestTargetIDFormats(t *testing.T) {
	t.Parallel()
	opaque := newValidator(t, activity.Rules{TargetIDFormat: activity.TargetIDOpaque})
	for _, id := range []string{"TWVoZGlLaW1ha2hlCg==", "a", "rent.account-1/2_3~+", strings.Repeat("x", 128)} {
		if got, err := opaque.TargetID(id); err != nil || got != id {
			t.Errorf("opaque %q: %q %v", id, got, err)
		}
	}
	for _, id := range []string{"", "has space", "a:b", strings.Repeat("x", 129), "ü"} {
		if _, err := opaque.TargetID(id); err == nil {
			t.Errorf("opaque %q accepted", id)
		}
	}
	uuidV := newValidator(t, activity.Rules{})
	if _, err := uuidV.TargetID("TWVoZGlLaW1ha2hlCg=="); err == nil {
		t.Error("uuid format accepted an opaque id")
	}
	if _, err := activity.NewValidator(activity.Rules{TargetIDFormat: "guid"}); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestExtraTargetTypes(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{ExtraTargetTypes: []activity.TargetType{" parkingPermit ", ""}})
	body := fmt.Sprintf(`{"targetId":"%s","type":"create","targetType":"parkingPermit"}`, "0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d")
	if _, _, err := v.Decode([]byte(body)); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeEventUnknownType(t *testing.T) {
	t.Parallel()
	if _, err := activity.DecodeEvent("SomethingElse", []byte(`{}`)); err == nil {
		t.Fatal("unknown event type accepted")
	}
}
