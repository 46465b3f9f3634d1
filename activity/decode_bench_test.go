package activity_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
)

// benchBody is a realistic POST: one activity whose data holds a few dozen
// fields, nested once, about 1 KiB in all; many is 100 of them.
func benchBody(b *testing.B, many bool) []byte {
	b.Helper()
	item := func(i int) map[string]any {
		data := map[string]any{}
		for j := range 20 {
			data[fmt.Sprintf("field%02d", j)] = strings.Repeat("x", 20)
		}
		data["address"] = map[string]any{"line1": "1 High Street", "postCode": "E8 1DY", "uprn": 100023456}
		return map[string]any{
			"id": fmt.Sprintf("6f22e9ae-3e8a-4e0e-af46-%012d", i), "targetId": "0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d",
			"type": "update", "targetType": "person", "createdAt": "2021-02-19T15:12:00Z",
			"oldData": data, "newData": data,
			"authorDetails": map[string]any{"fullName": "Mehdi Kimakhe", "email": "mehdi@example.org"},
			"sourceDomain":  "Person",
		}
	}
	var v any = item(0)
	if many {
		items := make([]any, 100)
		for i := range items {
			items[i] = item(i)
		}
		v = items
	}
	body, err := json.Marshal(v)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

func BenchmarkDecode(b *testing.B) {
	v, err := activity.NewValidator(activity.Rules{Now: func() time.Time { return fixedNow }})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		many bool
	}{{"one", false}, {"batch_of_100", true}} {
		b.Run(bc.name, func(b *testing.B) {
			body := benchBody(b, bc.many)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := v.Decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
