package main

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/projection/redistest"
)

// A stalled Redis (SIGSTOP: connections open, nothing answered) makes reads
// answer 503 with Retry-After within the dependency deadline, never 500 or a
// hang; health answers within its own timeout; once Redis is back, reads
// are served again.
func TestStalledRedisAnswers503(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	rs := redistest.StartServer(t)
	env := baseEnv(t.TempDir())
	env["REDIS_URL"] = rs.URL()
	env["DEPENDENCY_TIMEOUT"] = "1s"
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()
	s := start(t, env)
	var items []map[string]any
	var ids []string
	for i := range 3 {
		items = append(items, activityBody(target, i))
		ids = append(ids, items[i]["id"].(string))
	}
	// A slow append (a loaded machine, -race) may pass the short deadline:
	// an unknown outcome, retried with the same ids as clients do.
	checkFor(t, 30*time.Second, func() error {
		resp, body := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/activityHistory", writer, items))
		if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
			return fmt.Errorf("POST: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	checkFor(t, 5*time.Second, func() error {
		if n := len(history(t, chk, s.url, reader, target)); n != 3 {
			return fmt.Errorf("%d of 3 visible", n)
		}
		return nil
	})

	rs.Stall()
	stalled := true
	defer func() {
		if stalled {
			rs.Resume()
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, u := range []string{
		s.url + "/api/v1/activityHistory?targetId=" + target,
		s.url + "/api/v1/activityHistory/" + ids[0],
	} {
		// Enough calls to open the breaker: those after it are refused
		// without waiting, the same way.
		for i := range 8 {
			resp, body := chk.Do(t, client, request(t, http.MethodGet, u, reader, nil))
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("GET %s with Redis stalled, call %d: %d (Retry-After %q) %s", u, i, resp.StatusCode, resp.Header.Get("Retry-After"), body)
			}
		}
	}
	for _, path := range []string{"/api/v1/healthcheck/ping", "/readyz"} {
		resp, body := chk.Do(t, client, request(t, http.MethodGet, s.url+path, "", nil))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("GET %s with Redis stalled: %d %s", path, resp.StatusCode, body)
		}
	}

	rs.Resume()
	stalled = false
	checkFor(t, 10*time.Second, func() error {
		// 503 until the breaker lets a probe through.
		resp, body := chk.Do(t, client, request(t, http.MethodGet, s.url+"/api/v1/activityHistory?targetId="+target, reader, nil))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
	checkFor(t, 10*time.Second, func() error {
		if n := len(history(t, chk, s.url, reader, target)); n != 3 {
			return fmt.Errorf("%d of 3 visible", n)
		}
		return nil
	})
}
