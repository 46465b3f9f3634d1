package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// A write whose answer never reached the client (the connection dropped)
// has an unknown outcome; the README says to retry with the same id and
// createdAt. When the first attempt went in, the retry answers 200 with the
// activity as recorded, and nothing is stored twice.
func TestUnknownOutcomeRetry(t *testing.T) {
	t.Parallel()
	s := newService(t, storeAt{dataDir: t.TempDir()}.env())
	target, id := uuid.NewString(), uuid.NewString()
	body, _ := json.Marshal(map[string]any{
		"id": id, "targetId": target, "type": "update", "targetType": "person",
		"createdAt": "2026-01-02T03:04:05.123Z", "newData": map[string]any{"x": 1},
	})

	// The first attempt: sent, never read; the client hangs up.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /api/v1/activityHistory HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	var recorded []byte
	checkFor(t, 10*time.Second, func() error {
		resp, err := http.Get(s.url + "/api/v1/activityHistory/" + id)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		recorded, _ = io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET by id: %d", resp.StatusCode)
		}
		return nil
	})
	conn.Close()

	resp, err := http.Post(s.url+"/api/v1/activityHistory", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("retry of a write that went in: %d %s, want 200", resp.StatusCode, got)
	}
	if !jsonEqual(got, recorded) {
		t.Fatalf("retry answered %s, recorded %s", got, recorded)
	}
	h, err := history(http.DefaultClient, s.url, target)
	if err != nil || len(h) != 1 {
		t.Fatalf("history after the retry: %d activities, %v", len(h), err)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y bytes.Buffer
	return json.Compact(&x, a) == nil && json.Compact(&y, b) == nil && bytes.Equal(x.Bytes(), y.Bytes())
}
