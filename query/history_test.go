package query

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
)

func TestSortKeyOf(t *testing.T) {
	t.Parallel()
	a := activity.Activity{
		ID: "0b9e3a57-1c2d-4e5f-8a9b-0c1d2e3f4a5b", TargetID: "6f3c8a4e-0d7b-4d8e-9a51-2f1e5b7c9d01",
		Type: activity.TypeCreate, TargetType: "person",
		CreatedAt: time.Date(2024, 3, 1, 9, 30, 0, 120000000, time.UTC),
		OldData:   json.RawMessage(`{"createdAt":"1999-01-01T00:00:00Z","id":"x"}`),
	}
	canonical, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := a.SortKey()
	cases := []struct {
		name, doc string
		fast      bool
	}{
		{"canonical", string(canonical), true},
		{"spaced", `{ "id" : "` + a.ID + `", "createdAt": "2024-03-01T09:30:00.12Z"}`, false},
		{"reordered, nested decoy first", `{"oldData":{"createdAt":"1999-01-01T00:00:00Z"},"createdAt":"2024-03-01T09:30:00.12Z","id":"` + a.ID + `"}`, false},
		{"decoy in an object before createdAt", `{"id":"` + a.ID + `","x":{"createdAt":"1999-01-01T00:00:00Z"},"createdAt":"2024-03-01T09:30:00.12Z"}`, false},
		{"offset time", `{"id":"` + a.ID + `","createdAt":"2024-03-01T10:30:00.12+01:00"}`, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := sortKeyOf([]byte(tc.doc))
			if err != nil || got != want {
				t.Fatalf("sortKeyOf = %q, %v; want %q", got, err, want)
			}
			if _, _, fast := scanKeyFields([]byte(tc.doc)); fast != tc.fast {
				t.Errorf("fast path taken = %v, want %v", fast, tc.fast)
			}
		})
	}
	for _, bad := range []string{
		``, `[]`, `{}`, `{"id":"x"}`, `{"id":"x","createdAt":"yesterday"}`, `{"id":"x","createdAt":`,
		`{"id":"","createdAt":"2024-03-01T09:30:00Z"}`, strings.Repeat("{", 100),
	} {
		if got, err := sortKeyOf([]byte(bad)); err == nil {
			t.Errorf("sortKeyOf(%q) = %q, want an error", bad, got)
		}
	}
}

func BenchmarkSortKeyOf(b *testing.B) {
	doc, err := json.Marshal(activity.Activity{
		ID: "0b9e3a57-1c2d-4e5f-8a9b-0c1d2e3f4a5b", TargetID: "6f3c8a4e-0d7b-4d8e-9a51-2f1e5b7c9d01",
		Type: activity.TypeCreate, TargetType: "person", CreatedAt: time.Now(),
		NewData: json.RawMessage(`{"firstName":"Ann","lastName":"Other"}`),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := sortKeyOf(doc); err != nil {
			b.Fatal(err)
		}
	}
}
