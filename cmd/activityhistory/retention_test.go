package main

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/projection/redistest"
)

// An activity POSTed already expired is accepted and stored, and never
// returned: not in its target's history, not by id, not in an export; the
// projector's sweeper then removes it from the read model. On both read
// models, with the real clock.
func TestExpiredOnArrival(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"memory", "redis"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			chk := apitest.New(t)
			env := baseEnv(t.TempDir())
			env["RETENTION_SWEEP_INTERVAL"] = "20ms"
			if name == "redis" {
				_, prefix := redistest.Client(t)
				env["REDIS_URL"], env["REDIS_PREFIX"] = redisURL(), prefix
			}
			writer, reader, auditor := mint(t, "writers"), mint(t, "readers"), mint(t, "auditors")
			s := start(t, env)
			target, gone := uuid.NewString(), uuid.NewString()
			old := activityBody(target, 1) // createdAt 2024-01-01
			old["timetoLiveForRecord"] = 30
			forever := activityBody(target, 2)
			later := activityBody(target, 3)
			later["timetoLiveForRecord"] = 36500
			alone := activityBody(gone, 4)
			alone["timetoLiveForRecord"] = 1
			for _, a := range []map[string]any{old, forever, later, alone} {
				resp, body := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/activityHistory", writer, a))
				if resp.StatusCode != http.StatusCreated {
					t.Fatalf("POST %v: %d %s", a["timetoLiveForRecord"], resp.StatusCode, body)
				}
			}
			live := []string{later["id"].(string), forever["id"].(string)}
			checkFor(t, 10*time.Second, func() error {
				if got := history(t, chk, s.url, reader, target); fmt.Sprint(got) != fmt.Sprint(live) {
					return fmt.Errorf("history %v, want %v", got, live)
				}
				return nil
			})
			if got := history(t, chk, s.url, reader, gone); got != nil {
				t.Fatalf("a target whose only activity expired: %v, want 404", got)
			}
			for _, id := range []string{old["id"].(string), alone["id"].(string)} {
				resp, body := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/"+id, reader, nil))
				if resp.StatusCode != http.StatusNotFound {
					t.Fatalf("GET expired %s: %d %s", id, resp.StatusCode, body)
				}
			}
			resp, body := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/export?format=ndjson", auditor, nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("export: %d %s", resp.StatusCode, body)
			}
			for _, a := range []map[string]any{old, alone} {
				if id := a["id"].(string); bytes.Contains(body, []byte(id)) {
					t.Fatalf("export holds expired %s:\n%s", id, body)
				}
			}
			for _, id := range live {
				if !bytes.Contains(body, []byte(id)) {
					t.Fatalf("export lacks %s:\n%s", id, body)
				}
			}
			waitMetric(t, s.url, "activityhistory_retention_swept_total", 2)
		})
	}
}
