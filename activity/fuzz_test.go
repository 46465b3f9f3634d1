package activity_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/council/activityhistory/activity"
)

// FuzzDecode feeds arbitrary bodies to the request decoder: it must not
// panic, every rejection must be a ValidationError naming a field, and
// what it accepts must encode to valid JSON in valid UTF-8, holding no
// repeated key, that decodes back to the same activity.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		good,
		`[` + good + `,` + good + `]`,
		`{"targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"create","targetType":"person","newData":{"a":[1,{"b":"\u00e9\ud83d\ude00"}]}}`,
		`{"targetId":"x","targetId":"y"}`,
		"{\"targetId\":\"\xff\"}",
		`{"a":{"a":{"a":{"a":{"a":{"a":{"a":{"a":1}}}}}}}}`,
		`[]`, `{}`, `null`, `"x"`, `[{}]`, `{"newData":"\ud800"}`,
	} {
		f.Add([]byte(s))
	}
	v, err := activity.NewValidator(activity.Rules{Now: func() time.Time { return fixedNow }})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		acts, _, err := v.Decode(body)
		if err != nil {
			var ve *activity.ValidationError
			if !errors.As(err, &ve) || len(ve.Fields) == 0 {
				t.Fatalf("rejection is not a ValidationError naming a field: %v", err)
			}
			return
		}
		for _, a := range acts {
			out, err := json.Marshal(a)
			if err != nil {
				t.Fatalf("encode accepted activity: %v", err)
			}
			if !utf8.Valid(out) || !json.Valid(out) {
				t.Fatalf("accepted activity encodes to invalid JSON: %q", out)
			}
			var back activity.Activity
			if err := json.Unmarshal(out, &back); err != nil || !back.Equal(a) {
				t.Fatalf("round trip changed the activity: %v\n%s", err, out)
			}
			if _, _, err := v.Decode(out); err != nil {
				t.Fatalf("the service's own output is refused: %v\n%s", err, out)
			}
		}
	})
}
