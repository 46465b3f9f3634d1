package activity_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/council/activityhistory/activity"
)

// Input encoding/json lets through: invalid UTF-8 (kept raw in data, so
// pages stop being JSON), repeated keys (the last silently won), nesting
// beyond MaxDepth. Each is a 400 naming where it is.
func TestDecodeRejectsHostileJSON(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	const tid = `"targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d"`
	const base = `{` + tid + `,"type":"create","targetType":"person"`
	nest := func(n int) string { return strings.Repeat(`{"a":`, n) + `1` + strings.Repeat(`}`, n) }
	cases := []struct {
		name, body, field, msg string
	}{
		{"bad UTF-8 in oldData value", base + `,"oldData":{"a":{"b":"x` + "\xff" + `y"}}}`, "oldData.a.b", "UTF-8"},
		{"bad UTF-8 in newData key", base + `,"newData":{"k` + "\xc3" + `":1}}`, "newData.k\uFFFD", "UTF-8"},
		{"bad UTF-8 in array in data", base + `,"newData":{"l":["ok","` + "\xed\xa0\x80" + `"]}}`, "newData.l[1]", "UTF-8"},
		{"bad UTF-8 in fullName", base + `,"authorDetails":{"fullName":"` + "\xfe" + `"}}`, "authorDetails.fullName", "UTF-8"},
		{"bad UTF-8 in sourceDomain of an item", `[` + base + `},` + base + `,"sourceDomain":"` + "\x80" + `"}]`, "[1].sourceDomain", "UTF-8"},
		{"unpaired surrogate escape", base + `,"newData":{"a":"\ud800x"}}`, "newData.a", "surrogate"},
		{"two targetIds", base + `,"targetId":"11111111-2222-3333-4444-555555555555"}`, "targetId", "more than once"},
		{"repeated key deep in data", base + `,"newData":{"a":{"b":{"c":1,"c":2}}}}`, "newData.a.b.c", "more than once"},
		{"repeated key spelt with an escape", base + `,"oldData":{"ab":1,"\u0061b":2}}`, "oldData.ab", "more than once"},
		{"repeated author field", base + `,"authorDetails":{"email":"a@example.org","email":"b@example.org"}}`, "authorDetails.email", "more than once"},
		{"repeated key among many", base + `,"newData":{` + manyKeys(40) + `,"k7":0}}`, "newData.k7", "more than once"},
		{"repeated key in a batch item", `[` + base + `},` + base + `,"type":"update"}]`, "[1].type", "more than once"},
		{"too deep", base + `,"newData":` + nest(activity.MaxDepth) + `}`, "newData", "levels deep"},
		{"a thousand levels", base + `,"newData":` + nest(1000) + `}`, "newData", "levels deep"},
		{"too deep in arrays", base + `,"oldData":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, "oldData", "levels deep"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := v.Decode([]byte(c.body))
			var ve *activity.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("want a ValidationError, got %v", err)
			}
			msgs, ok := ve.Fields[c.field]
			if !ok || !strings.Contains(strings.Join(msgs, ";"), c.msg) {
				t.Fatalf("want %q on field %q, got %v", c.msg, c.field, ve.Fields)
			}
		})
	}
}

// The limits admit what they document: nesting of exactly MaxDepth (the
// body's object counting as one), valid multi-byte text, surrogate pairs,
// and the same key in sibling objects.
func TestDecodeAcceptsTheLimits(t *testing.T) {
	t.Parallel()
	v := newValidator(t, activity.Rules{})
	const base = `{"targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"create","targetType":"person"`
	deepest := strings.Repeat(`{"a":`, activity.MaxDepth-1) + `1` + strings.Repeat(`}`, activity.MaxDepth-1)
	for _, body := range []string{
		base + `,"newData":` + deepest + `}`,
		base + `,"newData":{"name":"Zoë Ángel 李","emoji":"😀","esc":"\ud83d\ude00 \u00e9"}}`,
		base + `,"newData":{"a":{"x":1},"b":{"x":2},"l":[{"x":1},{"x":2}]}}`,
		`[` + base + `},` + base + `}]`,
	} {
		if _, _, err := v.Decode([]byte(body)); err != nil {
			t.Errorf("%.80s…: %v", body, err)
		}
	}
}

func manyKeys(n int) string {
	s := make([]string, n)
	for i := range s {
		s[i] = fmt.Sprintf(`"k%d":%d`, i, i)
	}
	return strings.Join(s, ",")
}
