package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/council/activityhistory/internal/testkit"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apidocs"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/auth"
	"github.com/council/activityhistory/projection/redistest"
)

const testSecret = "an-hs256-test-secret-of-at-least-32-bytes"

// syncBuffer collects logs written by the service's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// service is one running instance of the binary's serve, on a free port.
type service struct {
	url    string
	logs   *syncBuffer
	stdout *syncBuffer
	stop   func()
}

func baseEnv(dataDir string) map[string]string {
	return map[string]string{
		"DATA_DIR":          dataDir,
		"HTTP_ADDR":         "127.0.0.1:0",
		"AUTH_JWT_SECRET":   testSecret,
		"AUTH_READ_GROUPS":  "readers",
		"AUTH_WRITE_GROUPS": "writers",
		"AUTH_AUDIT_GROUPS": "auditors",
		"LOG_LEVEL":         "debug",
		// These tests are about behaviour, not latency: a loaded machine
		// running them under -race must not turn a slow append into a 503.
		// The deadline's own tests set a short one.
		"DEPENDENCY_TIMEOUT": "10s",
	}
}

// start runs serve with env until the test ends or stop is called, and
// waits until it is ready.
func start(t *testing.T, env map[string]string, args ...string) *service {
	t.Helper()
	s := launch(t, env, args...)
	s.waitReady(t)
	return s
}

// launch runs serve with env until the test ends or stop is called; it
// does not wait for readiness.
func launch(t *testing.T, env map[string]string, args ...string) *service {
	t.Helper()
	getenv := func(k string) string { return env[k] }
	logs, stdout := &syncBuffer{}, &syncBuffer{}
	cfg, err := parseServeConfig(args, getenv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := build(ctx, cfg, newLogger(cfg, logs), stdout)
	if err != nil {
		cancel()
		t.Fatalf("build: %v\n%s", err, logs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := a.run(ctx, ln)
		a.close()
		done <- err
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &service{url: "http://" + ln.Addr().String(), logs: logs, stdout: stdout, stop: stop}
}

func (s *service) waitReady(t *testing.T) {
	t.Helper()
	checkFor(t, 10*time.Second, func() error {
		resp, err := http.Get(s.url + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", resp.StatusCode)
		}
		return nil
	})
}

// checkFor is the shared poll of the tests.
var checkFor = testkit.CheckFor

func mint(t *testing.T, groups ...string) string {
	t.Helper()
	return mintWith(t, []byte(testSecret), groups...)
}

// mintWith mints a token signed with secret, valid one hour.
func mintWith(t *testing.T, secret []byte, groups ...string) string {
	t.Helper()
	tok, err := auth.Mint(secret, auth.MintClaims{
		Subject: "tester", Name: "Test Writer", Email: "writer@example.org", Groups: groups, TTL: time.Hour,
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func request(t *testing.T, method, url, token string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

type pageItem struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"createdAt"`
}

type page struct {
	Results           []pageItem `json:"results"`
	PaginationDetails struct {
		NextToken *string `json:"nextToken"`
	} `json:"paginationDetails"`
}

func activityBody(target string, i int) map[string]any {
	return map[string]any{
		"id":         uuid.NewString(),
		"targetId":   target,
		"type":       "update",
		"targetType": "person",
		"createdAt":  time.Date(2024, 1, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339),
		"newData":    map[string]any{"n": i},
	}
}

// history reads every page of a target's history.
func history(t *testing.T, chk *apitest.Checker, base, token, target string) []string {
	t.Helper()
	var ids []string
	next := ""
	for {
		u := base + "/api/v1/activityhistory?pageSize=7&targetId=" + target
		if next != "" {
			u += "&paginationToken=" + next
		}
		resp, body := chk.Do(t, nil, request(t, http.MethodGet, u, token, nil))
		if resp.StatusCode == http.StatusNotFound {
			return nil
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET history: %d %s", resp.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Results {
			ids = append(ids, r.ID)
		}
		if p.PaginationDetails.NextToken == nil {
			return ids
		}
		next = *p.PaginationDetails.NextToken
	}
}

func postAll(t *testing.T, chk *apitest.Checker, base, token, target string, n int) []string {
	t.Helper()
	var items []map[string]any
	var ids []string
	for i := range n {
		a := activityBody(target, i)
		items = append(items, a)
		ids = append(ids, a["id"].(string))
	}
	resp, body := chk.Do(t, nil, request(t, http.MethodPost, base+"/api/v1/activityHistory", token, items))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	return ids
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// The all-in-one service on the embedded default keeps its history across
// a restart: the in-memory read model is rebuilt from the event store.
func TestEmbeddedHistorySurvivesRestart(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	env := baseEnv(t.TempDir())
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()

	s := start(t, env)
	ids := postAll(t, chk, s.url, writer, target, 12)
	checkFor(t, 5*time.Second, func() error {
		if got := len(history(t, chk, s.url, reader, target)); got != 12 {
			return fmt.Errorf("%d of 12 visible", got)
		}
		return nil
	})
	s.stop()

	s2 := start(t, env)
	// Ready means caught up: no polling needed after a restart.
	got := history(t, chk, s2.url, reader, target)
	if strings.Join(got, ",") != strings.Join(reversed(ids), ",") {
		t.Fatalf("after restart:\n got %v\nwant %v", got, reversed(ids))
	}
	if !strings.Contains(s2.logs.String(), "read model caught up") {
		t.Errorf("restart did not log catching up:\n%s", s2.logs)
	}
}

// With Redis, a restarted projector resumes from its checkpoint instead
// of re-applying everything.
func TestRedisProjectorResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	_, prefix := redistest.Client(t)
	env := baseEnv(t.TempDir())
	env["REDIS_URL"] = redisURL()
	env["REDIS_PREFIX"] = prefix
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()

	s := start(t, env)
	postAll(t, chk, s.url, writer, target, 5)
	resp, _ := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/activityHistory", writer, activityBody(target, 99)))
	pos := resp.Header.Get("X-Activity-Position")
	checkFor(t, 5*time.Second, func() error {
		if got := len(history(t, chk, s.url, reader, target)); got != 6 {
			return fmt.Errorf("%d of 6 visible", got)
		}
		return nil
	})
	s.stop()

	s2 := start(t, env)
	// The projector starts once it holds the lease, which may be after
	// the service answers.
	want := fmt.Sprintf(`"msg":"projector resuming","position":%s`, pos)
	checkFor(t, 5*time.Second, func() error {
		if !strings.Contains(s2.logs.String(), want) {
			return fmt.Errorf("restart did not resume from checkpoint %s:\n%s", pos, s2.logs)
		}
		return nil
	})
	if got := len(history(t, chk, s2.url, reader, target)); got != 6 {
		t.Fatalf("after restart %d of 6", got)
	}
}

func redisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379"
}

// Auth on the real wiring: what needs a token, which token, and what is open.
func TestAuthOnTheService(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	env := baseEnv(t.TempDir())
	env["AUTH_EXPORT_GROUPS"] = "analysts"
	s := start(t, env)
	target := uuid.NewString()
	writer, reader := mint(t, "writers"), mint(t, "readers")
	both := mint(t, "readers", "writers")
	other := mint(t, "someone-else")
	auditor, analyst := mint(t, "auditors"), mint(t, "analysts")
	hist := s.url + "/api/v1/activityHistory?targetId=" + target
	post := s.url + "/api/v1/activityHistory"
	events := s.url + "/api/v1/activityHistory/streams/" + target + "/events"
	verify := s.url + "/api/v1/activityHistory/streams/" + target + "/verify"
	export := s.url + "/api/v1/activityHistory/export"

	cases := []struct {
		name   string
		req    *http.Request
		status int
	}{
		{"GET without token", request(t, "GET", hist, "", nil), 401},
		{"POST without token", request(t, "POST", post, "", activityBody(target, 1)), 401},
		{"GET with garbage", request(t, "GET", hist, "not.a.jwt", nil), 401},
		{"GET without a group", request(t, "GET", hist, other, nil), 403},
		{"POST with reader token", request(t, "POST", post, reader, activityBody(target, 1)), 403},
		{"GET with writer token", request(t, "GET", hist, writer, nil), 403},
		{"POST with writer token", request(t, "POST", post, writer, activityBody(target, 1)), 201},
		{"GET with both", request(t, "GET", hist, both, nil), 0},
		{"replay without token", request(t, "GET", events, "", nil), 401},
		{"replay with reader token", request(t, "GET", events, reader, nil), 403},
		{"verify with reader token", request(t, "GET", verify, reader, nil), 403},
		{"export with reader token", request(t, "GET", export, reader, nil), 403},
		{"replay with writer token", request(t, "GET", events, writer, nil), 403},
		{"replay with export token", request(t, "GET", events, analyst, nil), 403},
		{"verify with export token", request(t, "GET", verify, analyst, nil), 403},
		{"replay with auditor token", request(t, "GET", events, auditor, nil), 200},
		{"verify with auditor token", request(t, "GET", verify, auditor, nil), 200},
		{"export with auditor token", request(t, "GET", export, auditor, nil), 200},
		{"export with export token", request(t, "GET", export, analyst, nil), 200},
		{"history with auditor token", request(t, "GET", hist, auditor, nil), 403},
		{"ping is open", request(t, "GET", s.url+"/api/v1/healthcheck/ping", "", nil), 200},
		{"healthz is open", request(t, "GET", s.url+"/healthz", "", nil), 200},
		{"readyz is open", request(t, "GET", s.url+"/readyz", "", nil), 200},
		{"metrics is open", request(t, "GET", s.url+"/metrics", "", nil), 200},
		{"openapi.yaml is open", request(t, "GET", s.url+"/openapi.yaml", "", nil), 200},
		{"openapi.json is open", request(t, "GET", s.url+"/openapi.json", "", nil), 200},
		{"swagger is open", request(t, "GET", s.url+"/swagger/", "", nil), 200},
	}
	for _, c := range cases {
		resp, body := chk.Do(t, nil, c.req)
		switch {
		case c.status == 0:
			// A reader sees the history (200) once projected, or 404 before.
			if resp.StatusCode != 200 && resp.StatusCode != 404 {
				t.Errorf("%s: %d %s", c.name, resp.StatusCode, body)
			}
		case resp.StatusCode != c.status:
			t.Errorf("%s: got %d, want %d: %s", c.name, resp.StatusCode, c.status, body)
		}
		if resp.StatusCode == 401 && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: 401 without a Bearer challenge", c.name)
		}
	}
	if strings.Contains(s.logs.String(), writer) || strings.Contains(s.logs.String(), testSecret) {
		t.Error("a token or the secret reached the log")
	}
}

// POST without authorDetails takes them from the token.
func TestAuthorFromToken(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	s := start(t, baseEnv(t.TempDir()))
	body := activityBody(uuid.NewString(), 1)
	resp, got := chk.Do(t, nil, request(t, "POST", s.url+"/api/v1/activityHistory", mint(t, "writers"), body))
	if resp.StatusCode != 201 {
		t.Fatalf("%d %s", resp.StatusCode, got)
	}
	if !bytes.Contains(got, []byte(`"authorDetails":{"fullName":"Test Writer","email":"writer@example.org"}`)) {
		t.Fatalf("author not taken from the token: %s", got)
	}
}

// The correlation id is echoed when sent, generated when not, and is in
// the error body and the request's log line.
func TestCorrelationID(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	s := start(t, baseEnv(t.TempDir()))
	req := request(t, "GET", s.url+"/api/v1/activityHistory?targetId=12345667890", mint(t, "readers"), nil)
	req.Header.Set("x-correlation-id", "support-ticket-4711")
	resp, body := chk.Do(t, nil, req)
	if resp.StatusCode != 400 || resp.Header.Get("x-correlation-id") != "support-ticket-4711" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("x-correlation-id"))
	}
	var env struct {
		CorrelationID string              `json:"correlationId"`
		Errors        map[string][]string `json:"errors"`
	}
	if err := json.Unmarshal(body, &env); err != nil || env.CorrelationID != "support-ticket-4711" || env.Errors["targetId"] == nil {
		t.Fatalf("error body %s (%v)", body, err)
	}
	checkFor(t, 2*time.Second, func() error {
		for _, l := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(l, `"msg":"request"`) && strings.Contains(l, "support-ticket-4711") {
				return nil
			}
		}
		return fmt.Errorf("no request log line with the correlation id")
	})

	resp, body = chk.Do(t, nil, request(t, "GET", s.url+"/api/v1/activityHistory?targetId="+uuid.NewString(), "", nil))
	gen := resp.Header.Get("x-correlation-id")
	if _, err := uuid.Parse(gen); err != nil || !bytes.Contains(body, []byte(gen)) {
		t.Fatalf("generated id %q not a UUID or not in the body %s", gen, body)
	}
}

// CORS: preflights are answered and the correlation id is exposed.
func TestCORS(t *testing.T) {
	t.Parallel()
	env := baseEnv(t.TempDir())
	env["CORS_ALLOWED_ORIGINS"] = "https://portal.example.org"
	s := start(t, env)
	resp := preflight(t, s.url+"/api/v1/activityHistory", "https://portal.example.org", "POST", "")
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "https://portal.example.org" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "x-correlation-id") {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
	req := request(t, "GET", s.url+"/healthz", "", nil)
	req.Header.Set("Origin", "https://evil.example.org")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatal("an origin not allowed got CORS headers")
	}
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no auth configured", map[string]string{"DATA_DIR": dir}, nil, "no authentication configured"},
		{"short secret", map[string]string{"DATA_DIR": dir, "AUTH_JWT_SECRET": "short", "AUTH_READ_GROUPS": "r", "AUTH_WRITE_GROUPS": "w"}, nil, "32"},
		{"no read groups", map[string]string{"DATA_DIR": dir, "AUTH_JWT_SECRET": testSecret, "AUTH_WRITE_GROUPS": "w"}, nil, "AUTH_READ_GROUPS"},
		{"bad role", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true"}, []string{"--roles", "reader"}, "unknown role"},
		{"memory model split", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true"}, []string{"--roles", "query"}, "REDIS_URL"},
		{"bad sync", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true", "EVENTSTORE_SYNC": "sometimes"}, nil, "EVENTSTORE_SYNC"},
		{"bad url", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true", "EVENTSTORE_URL": "http://x"}, nil, "EVENTSTORE_URL"},
		{"dependency timeout past the write timeout", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true", "DEPENDENCY_TIMEOUT": "45s"}, nil, "DEPENDENCY_TIMEOUT"},
		{"zero dependency timeout", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true"}, []string{"--dependency-timeout", "0s"}, "DEPENDENCY_TIMEOUT"},
		{"bad target id format", map[string]string{"DATA_DIR": dir, "AUTH_DISABLED": "true", "TARGET_ID_FORMAT": "guid"}, nil, "TARGET_ID_FORMAT"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := run(context.Background(), append([]string{"serve", "--http-addr", "127.0.0.1:0"}, c.args...),
				func(k string) string { return c.env[k] }, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}

// Development auth mode prints a working token; AUTH_DISABLED warns.
func TestDevAuthAndDisabled(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	env := map[string]string{"DATA_DIR": t.TempDir(), "LOG_LEVEL": "info"}
	s := start(t, env, "--dev-auth")
	out := s.stdout.String()
	i := strings.Index(out, "export TOKEN=")
	if i < 0 {
		t.Fatalf("no token printed:\n%s", out)
	}
	tok := strings.Fields(out[i+len("export TOKEN="):])[0]
	if strings.Contains(s.logs.String(), tok) {
		t.Error("the dev token reached the log")
	}
	resp, body := chk.Do(t, nil, request(t, "POST", s.url+"/api/v1/activityHistory", tok, activityBody(uuid.NewString(), 1)))
	if resp.StatusCode != 201 {
		t.Fatalf("dev token POST: %d %s", resp.StatusCode, body)
	}

	off := start(t, map[string]string{"DATA_DIR": t.TempDir(), "AUTH_DISABLED": "true"})
	if !strings.Contains(off.logs.String(), "AUTHENTICATION IS DISABLED") {
		t.Error("no warning with auth disabled")
	}
	resp, body = chk.Do(t, nil, request(t, "POST", off.url+"/api/v1/activityHistory", "", activityBody(uuid.NewString(), 1)))
	if resp.StatusCode != 201 {
		t.Fatalf("auth disabled POST: %d %s", resp.StatusCode, body)
	}
}

func TestTokenCommand(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	err := run(context.Background(), []string{"token", "--secret", testSecret, "--groups", "a,b", "--email", "x@example.org", "--name", "X", "--ttl", "1h"},
		func(string) string { return "" }, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if parts := strings.Split(strings.TrimSpace(out.String()), "."); len(parts) != 3 {
		t.Fatalf("not a JWT: %q", out.String())
	}
	if err := run(context.Background(), []string{"token"}, func(string) string { return "" }, io.Discard, io.Discard); err == nil {
		t.Fatal("token without a secret succeeded")
	}
}

// Every route the service serves is in the OpenAPI document.
func TestEveryRouteIsDocumented(t *testing.T) {
	t.Parallel()
	doc := string(apidocs.YAML())
	_, prefix := redistest.Client(t)
	for _, roles := range []string{"command,query,projector", "command", "query", "projector"} {
		env := map[string]string{"DATA_DIR": t.TempDir(), "AUTH_DISABLED": "true", "ROLES": roles,
			"REDIS_URL": redisURL(), "REDIS_PREFIX": prefix}
		cfg, err := parseServeConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		a, err := build(context.Background(), cfg, newLogger(cfg, io.Discard), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range a.engines {
			for _, r := range e.Routes() {
				path := r.Path
				switch path {
				case "/swagger", "/swagger/*filepath":
					// The UI and its assets: documented as /swagger/.
					path = "/swagger/"
				case "/ui", "/ui/*filepath":
					// The timeline page and its files: documented as /ui/ (and /ui/config.json).
					path = "/ui/"
				}
				path = pathParam.ReplaceAllString(path, "{$1}")
				i := strings.Index(doc, "\n  "+path+":")
				if i < 0 {
					t.Errorf("roles %s: %s %s is not in the document", roles, r.Method, r.Path)
					continue
				}
				rest := doc[i+1:]
				if j := strings.Index(rest[3:], "\n  /"); j >= 0 {
					rest = rest[:j+3]
				}
				if !strings.Contains(rest, "\n    "+strings.ToLower(r.Method)+":") {
					t.Errorf("roles %s: %s %s: method not documented", roles, r.Method, r.Path)
				}
			}
		}
		a.close()
	}
}

// pathParam is a gin path parameter, written {name} in the document.
var pathParam = regexp.MustCompile(`:(\w+)`)

// 16 concurrent writers × 100 activities to one target: the history holds
// exactly the 1,600, each once, newest first.
func TestConcurrentWritersOneTarget(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	s := start(t, baseEnv(t.TempDir()))
	writer, reader := mint(t, "writers"), mint(t, "readers")
	target := uuid.NewString()
	const writers, each = 16, 100

	posted := make(chan string, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				body := map[string]any{
					"id": uuid.NewString(), "targetId": target, "type": "update", "targetType": "tenure",
					"newData": map[string]any{"writer": w, "i": i},
				}
				req := request(t, http.MethodPost, s.url+"/api/v1/activityHistory", writer, body)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				chk.Check(t, req, nil, resp, got)
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("writer %d item %d: %d %s", w, i, resp.StatusCode, got)
					return
				}
				posted <- body["id"].(string)
			}
		})
	}
	wg.Wait()
	close(posted)
	want := map[string]bool{}
	for id := range posted {
		want[id] = true
	}
	if len(want) != writers*each {
		t.Fatalf("%d activities acknowledged, want %d", len(want), writers*each)
	}

	// Writes are acknowledged before they are projected: read every page
	// until the projector has caught up with all of them.
	var all []pageItem
	checkFor(t, 10*time.Second, func() error {
		all = all[:0]
		next := ""
		for {
			u := s.url + "/api/v1/activityHistory?pageSize=1000&targetId=" + target
			if next != "" {
				u += "&paginationToken=" + next
			}
			resp, body := chk.Do(t, nil, request(t, http.MethodGet, u, reader, nil))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET: %d", resp.StatusCode)
			}
			var p page
			if err := json.Unmarshal(body, &p); err != nil {
				return err
			}
			all = append(all, p.Results...)
			if p.PaginationDetails.NextToken == nil {
				break
			}
			next = *p.PaginationDetails.NextToken
		}
		if len(all) != writers*each {
			return fmt.Errorf("history holds %d, want %d", len(all), writers*each)
		}
		return nil
	})
	seen := map[string]bool{}
	for i, r := range all {
		if !want[r.ID] || seen[r.ID] {
			t.Fatalf("item %d: id %s unexpected or repeated", i, r.ID)
		}
		seen[r.ID] = true
		if i > 0 && r.CreatedAt.After(all[i-1].CreatedAt) {
			t.Fatalf("item %d is newer than the one before it", i)
		}
	}
}

// A query-only process reads the Redis read model alone: it starts and is
// healthy with the event store unreachable, and a projector-only process
// needs no auth settings.
func TestSplitRolesDependOnlyOnWhatTheyUse(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	_, prefix := redistest.Client(t)
	env := map[string]string{
		"DATA_DIR": t.TempDir(), "ROLES": "query", "REDIS_URL": redisURL(), "REDIS_PREFIX": prefix,
		"EVENTSTORE_URL": "nats://127.0.0.1:1", "AUTH_JWT_SECRET": testSecret, "AUTH_READ_GROUPS": "readers",
	}
	s := start(t, env)
	resp, body := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/healthcheck/ping", "", nil))
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte("EventStore")) {
		t.Fatalf("query-only ping: %d %s", resp.StatusCode, body)
	}
	resp, body = chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory?targetId="+uuid.NewString(), mint(t, "readers"), nil))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("query-only history of an unknown target: %d %s", resp.StatusCode, body)
	}

	projector := map[string]string{"DATA_DIR": t.TempDir(), "ROLES": "projector", "REDIS_URL": redisURL(), "REDIS_PREFIX": prefix}
	start(t, projector)
}
