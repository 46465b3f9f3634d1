package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/council/activityhistory/internal/testkit/natstest"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/projection/redistest"
)

// post records one activity and returns its id and X-Activity-Position.
func post(t *testing.T, chk *apitest.Checker, base, token, target string, i int) (string, uint64) {
	t.Helper()
	a := activityBody(target, i)
	resp, body := chk.Do(t, nil, request(t, http.MethodPost, base+"/api/v1/activityHistory", token, a))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	pos, err := strconv.ParseUint(resp.Header.Get("X-Activity-Position"), 10, 64)
	if err != nil {
		t.Fatalf("X-Activity-Position: %v", err)
	}
	return a["id"].(string), pos
}

// preload records n activities of target in one batch POST. A 5xx means
// an unknown outcome (a loaded machine can time a store call out): the
// same batch is sent again, which records nothing twice, and then answers
// 200 or 201.
func preload(t *testing.T, chk *apitest.Checker, base, token, target string, first, n int) []string {
	t.Helper()
	items := make([]map[string]any, n)
	ids := make([]string, n)
	for i := range items {
		items[i] = activityBody(target, first+i)
		ids[i] = items[i]["id"].(string)
	}
	for attempt := 1; ; attempt++ {
		resp, body := chk.Do(t, nil, request(t, http.MethodPost, base+"/api/v1/activityHistory", token, items))
		switch {
		case resp.StatusCode == http.StatusCreated || resp.StatusCode == http.StatusOK:
			return ids
		case resp.StatusCode < 500 || attempt == 5:
			t.Fatalf("POST: %d %s", resp.StatusCode, body)
		}
	}
}

// A writer reads its own write from another query process at once, by
// giving the position its write returned; a position not reached within
// READ_WAIT_MAX gives 503 with Retry-After.
func TestReadYourWritesAcrossProcesses(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	_, prefix := redistest.Client(t)
	env := baseEnv(t.TempDir())
	env["REDIS_URL"] = redisURL()
	env["REDIS_PREFIX"] = prefix
	env["READ_WAIT_MAX"] = "300ms"
	writerSvc := start(t, env, "--roles", "command,projector")
	qenv := baseEnv(t.TempDir())
	for k, v := range env {
		qenv[k] = v
	}
	qenv["CURSOR_SECRET"] = strings.Repeat("s", 32)
	readers := []*service{start(t, qenv, "--roles", "query"), start(t, qenv, "--roles", "query")}
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()
	for i := range 20 {
		id, pos := post(t, chk, writerSvc.url, writer, target, i)
		r := readers[i%2]
		// No polling: the first answer has the write.
		req := request(t, http.MethodGet, r.url+"/api/v1/activityHistory/"+id, reader, nil)
		req.Header.Set("X-Min-Position", strconv.FormatUint(pos, 10))
		resp, body := chk.Do(t, nil, req)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s with X-Min-Position %d: %d %s", id, pos, resp.StatusCode, body)
		}
		resp, body = chk.Do(t, nil, request(t, http.MethodGet,
			fmt.Sprintf("%s/api/v1/activityHistory?targetId=%s&pageSize=1&minPosition=%d", r.url, target, pos), reader, nil))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), id) {
			t.Fatalf("history with minPosition %d: %d %s", pos, resp.StatusCode, body)
		}
	}
	// A position the read model will not reach in time.
	u := fmt.Sprintf("%s/api/v1/activityHistory?targetId=%s&minPosition=%d", readers[0].url, target, uint64(1)<<60)
	resp, body := chk.Do(t, nil, request(t, http.MethodGet, u, reader, nil))
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("unreachable position: %d Retry-After %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	// Bad positions are the client's mistake, named.
	for _, bad := range []string{"minPosition=abc", "minPosition=-1", "minPosition=1&minPosition=2"} {
		resp, body := chk.Do(t, nil, request(t, http.MethodGet, readers[0].url+"/api/v1/activityHistory?targetId="+target+"&"+bad, reader, nil))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"minPosition"`) {
			t.Fatalf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
	req := request(t, http.MethodGet, readers[1].url+"/api/v1/activityHistory?targetId="+target, reader, nil)
	req.Header.Set("X-Min-Position", "x")
	if resp, body := chk.Do(t, nil, req); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "X-Min-Position") {
		t.Fatalf("bad header: %d %s", resp.StatusCode, body)
	}
}

// Restarted with history in its store, the all-in-one service answers
// reads with 503 until its read model has caught up — never a short page
// or a false 404 — and accepts writes meanwhile.
func TestRestartServesNoPartialHistory(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	env := baseEnv(t.TempDir())
	env["READ_WAIT_MAX"] = "50ms"
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()
	s := start(t, env)
	var ids []string
	for i := range 10 {
		ids = append(ids, preload(t, chk, s.url, writer, target, i*500, 500)...)
	}
	s.stop()

	s2 := launch(t, env)
	var saw503, saw200 atomic.Int64
	check := func() bool {
		u := s2.url + "/api/v1/activityHistory?pageSize=100&targetId=" + target
		resp, err := http.DefaultClient.Do(request(t, http.MethodGet, u, reader, nil))
		if err != nil {
			return false // not listening yet
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusServiceUnavailable:
			if resp.Header.Get("Retry-After") == "" {
				t.Fatalf("503 without Retry-After")
			}
			saw503.Add(1)
		case http.StatusOK:
			var p page
			if err := json.Unmarshal(body, &p); err != nil || len(p.Results) != 100 {
				t.Fatalf("short page during start: %d results (%v)", len(p.Results), err)
			}
			saw200.Add(1)
		default:
			t.Fatalf("history during start: %d %s", resp.StatusCode, body)
		}
		resp, err = http.DefaultClient.Do(request(t, http.MethodGet, s2.url+"/api/v1/activityHistory/"+ids[0], reader, nil))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("GET by id during start: %d", resp.StatusCode)
		}
		return resp.StatusCode == http.StatusOK
	}
	// Writes are accepted while reads wait.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for {
			resp, err := http.DefaultClient.Do(request(t, http.MethodPost, s2.url+"/api/v1/activityHistory", writer, activityBody(uuid.NewString(), 1)))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated {
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for ok := 0; ok < 20; {
		if check() {
			ok++
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 60s:\n%s", s2.logs)
		}
	}
	<-wrote
	t.Logf("during start: %d answers 503, then %d full pages", saw503.Load(), saw200.Load())
	if got := len(history(t, chk, s2.url, reader, target)); got != len(ids) {
		t.Fatalf("after start %d of %d", got, len(ids))
	}
}

// natsURL runs a JetStream server for processes that share one store.
func natsURL(t *testing.T) string { return natstest.StartServer(t).ClientURL() }

// Rebuild while serving: readers page through a target all along and see
// no error and no short page; writes go on; the new generation holds
// everything and the old one's keys are gone. With an event store of its
// own the rebuild command runs the rebuild; with the embedded store it
// asks the serving projector.
func TestRebuildWhileServing(t *testing.T) {
	t.Parallel()
	t.Run("ExternalStore", func(t *testing.T) {
		t.Parallel()
		testRebuildWhileServing(t, natsURL(t))
	})
	t.Run("EmbeddedStore", func(t *testing.T) {
		t.Parallel()
		testRebuildWhileServing(t, "")
	})
}

func testRebuildWhileServing(t *testing.T, eventStoreURL string) {
	chk := apitest.New(t)
	c, prefix := redistest.Client(t)
	env := baseEnv(t.TempDir())
	env["EVENTSTORE_URL"] = eventStoreURL
	env["REDIS_URL"] = redisURL()
	env["REDIS_PREFIX"] = prefix
	s := start(t, env)
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()
	var ids []string
	for i := range 6 {
		ids = append(ids, preload(t, chk, s.url, writer, target, i*500, 500)...)
	}
	checkFor(t, 30*time.Second, func() error {
		if n := len(history(t, chk, s.url, reader, target)); n != len(ids) {
			return fmt.Errorf("%d of %d", n, len(ids))
		}
		return nil
	})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	var reads atomic.Int64
	wg.Go(func() { // readers: full pages, the whole history, always
		for ctx.Err() == nil {
			n, err := readAll(s.url, reader, target, 100)
			if err != nil {
				errs <- err
				return
			}
			if n < len(ids) {
				errs <- fmt.Errorf("history of %d, want at least %d", n, len(ids))
				return
			}
			reads.Add(1)
		}
	})
	var more atomic.Int64
	wg.Go(func() { // a writer keeps writing to other targets
		for i := 0; ctx.Err() == nil; i++ {
			b, _ := json.Marshal(activityBody(uuid.NewString(), i))
			// A 5xx is an unknown outcome (a loaded machine): send the same
			// activity again until it is known, whatever ctx says.
			for attempt := 1; ; attempt++ {
				req, _ := http.NewRequest(http.MethodPost, s.url+"/api/v1/activityHistory", bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+writer)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					errs <- err
					return
				}
				resp.Body.Close()
				if resp.StatusCode >= 500 && attempt < 10 {
					continue
				}
				if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("POST during rebuild: %d", resp.StatusCode)
					return
				}
				break
			}
			more.Add(1)
		}
	})
	var stderr syncBuffer
	renv := map[string]string{"EVENTSTORE_URL": env["EVENTSTORE_URL"], "REDIS_URL": env["REDIS_URL"], "REDIS_PREFIX": prefix}
	err := run(context.Background(), []string{"rebuild", "--progress-every", "100ms"}, func(k string) string { return renv[k] }, io.Discard, &stderr)
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err != nil {
		t.Fatalf("rebuild: %v\n%s", err, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "events/s") || !strings.Contains(out, "readers switched") || !strings.Contains(out, "rebuild done") {
		t.Fatalf("no progress on stderr:\n%s", out)
	}
	t.Logf("%d full reads and %d writes during the rebuild; progress:\n%s", reads.Load(), more.Load(), out)
	if gen, _ := c.Get(context.Background(), prefix+"{%meta}:gen").Result(); gen != "g1" {
		t.Fatalf("generation %q, want g1", gen)
	}
	// The first generation's keys are gone.
	for _, pattern := range []string{prefix + "{*", prefix + "id:*"} {
		var left []string
		iter := c.Scan(context.Background(), 0, pattern, 1000).Iterator()
		for iter.Next(context.Background()) {
			if !strings.HasPrefix(iter.Val(), prefix+"{%meta}") {
				left = append(left, iter.Val())
			}
		}
		if len(left) > 0 {
			t.Fatalf("%d keys of the old generation left, e.g. %s", len(left), left[0])
		}
	}
	if got := len(history(t, chk, s.url, reader, target)); got != len(ids) {
		t.Fatalf("after the rebuild %d of %d", got, len(ids))
	}
	// The live projector follows the new generation: a new write shows.
	id, pos := post(t, chk, s.url, writer, target, 9999)
	req := request(t, http.MethodGet, s.url+"/api/v1/activityHistory/"+id, reader, nil)
	req.Header.Set("X-Min-Position", strconv.FormatUint(pos, 10))
	if resp, body := chk.Do(t, nil, req); resp.StatusCode != http.StatusOK {
		t.Fatalf("write after the rebuild: %d %s", resp.StatusCode, body)
	}
	var n int64
	iter := c.Scan(context.Background(), 0, prefix+"g1:id:*", 1000).Iterator()
	for iter.Next(context.Background()) {
		n++
	}
	if want := int64(len(ids)) + more.Load() + 1; n != want {
		t.Fatalf("%d ids in the new generation, want %d", n, want)
	}

}

// readAll pages through target and checks that every page but the last
// is full; it returns how many activities it saw.
func readAll(base, token, target string, size int) (int, error) {
	n, next := 0, ""
	for {
		u := fmt.Sprintf("%s/api/v1/activityHistory?pageSize=%d&targetId=%s", base, size, target)
		if next != "" {
			u += "&paginationToken=" + next
		}
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return n, err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return n, fmt.Errorf("page after %d: %d %s", n, resp.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			return n, err
		}
		n += len(p.Results)
		if p.PaginationDetails.NextToken == nil {
			return n, nil
		}
		if len(p.Results) != size {
			return n, fmt.Errorf("short page of %d after %d", len(p.Results), n)
		}
		next = *p.PaginationDetails.NextToken
	}
}

// The service on a three-master Redis Cluster: write, then read back by id
// and in pages, with read-your-writes.
func TestRedisClusterEndToEnd(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	_, url := redistest.Cluster(t)
	env := baseEnv(t.TempDir())
	env["REDIS_URL"] = url
	env["REDIS_CLUSTER"] = "true"
	s := start(t, env)
	writer, reader := mint(t, "writers"), mint(t, "readers")
	targets := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	want := map[string][]string{}
	for i := range 30 {
		target := targets[i%3]
		id, pos := post(t, chk, s.url, writer, target, i)
		want[target] = append(want[target], id)
		req := request(t, http.MethodGet, s.url+"/api/v1/activityHistory/"+id, reader, nil)
		req.Header.Set("X-Min-Position", strconv.FormatUint(pos, 10))
		if resp, body := chk.Do(t, nil, req); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", id, resp.StatusCode, body)
		}
	}
	for _, target := range targets {
		if got := history(t, chk, s.url, reader, target); strings.Join(got, ",") != strings.Join(reversed(want[target]), ",") {
			t.Fatalf("history of %s: %v, want %v", target, got, reversed(want[target]))
		}
	}
}
