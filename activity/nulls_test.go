package activity_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/council/activityhistory/activity"
)

// The pilot kept a null author field or sourceDomain as null; an absent one
// is "" here, and text stays text.
func TestNullTextFieldsKept(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	const head = `{"id":"6f22e9ae-3e8a-4e0e-af46-db02eb87f8e6","targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"create","targetType":"person","createdAt":"2021-02-19T15:12:00Z"`
	for _, tc := range []struct {
		name, in, want string
	}{
		{"all null", `,"authorDetails":{"fullName":null,"email":null},"sourceDomain":null}`,
			`"authorDetails":{"fullName":null,"email":null},"sourceDomain":null}`},
		{"email null", `,"authorDetails":{"fullName":"Ada","email":null},"sourceDomain":"Person"}`,
			`"authorDetails":{"fullName":"Ada","email":null},"sourceDomain":"Person"}`},
		{"absent", `}`, `"authorDetails":{"fullName":"","email":""},"sourceDomain":""}`},
		{"empty strings", `,"authorDetails":{"fullName":"","email":""},"sourceDomain":""}`,
			`"authorDetails":{"fullName":"","email":""},"sourceDomain":""}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acts, _, err := v.Decode([]byte(head + tc.in))
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(acts[0])
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(string(b), tc.want) {
				t.Fatalf("encoded %s, want it to end %s", b, tc.want)
			}
			// As stored and read back: the same document, equal to what was posted.
			var back activity.Activity
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			again, _ := json.Marshal(back)
			if string(again) != string(b) || !back.Equal(acts[0]) {
				t.Errorf("round trip %s, want %s (equal %v)", again, b, back.Equal(acts[0]))
			}
		})
	}
	// A null filled in from the token is text; a retry of the same post is equal.
	acts, _, err := v.Decode([]byte(head + `,"authorDetails":{"fullName":null,"email":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	filled := acts[0]
	filled.AuthorDetails = activity.Author{FullName: "Ada", Email: "ada@example.org"}
	b, _ := json.Marshal(filled)
	if !strings.Contains(string(b), `"authorDetails":{"fullName":"Ada","email":"ada@example.org"}`) {
		t.Errorf("filled author encoded as %s", b)
	}
	var back activity.Activity
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(filled) {
		t.Errorf("filled author does not round-trip equal: %v", err)
	}
	// A wrong type is still named by its field.
	_, _, err = v.Decode([]byte(head + `,"sourceDomain":5,"authorDetails":{"email":true}}`))
	var ve *activity.ValidationError
	if !errors.As(err, &ve) || ve.Fields["sourceDomain"] == nil && ve.Fields["authorDetails.email"] == nil {
		t.Errorf("wrong types: %v", err)
	}
}
