package apitest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
)

// failures stands in for the test the Checker is given, recording what it
// reports instead of failing.
type failures struct {
	testing.TB
	mu   sync.Mutex
	msgs []string
}

func (f *failures) Helper() {}

func (f *failures) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}

func (f *failures) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

const activityJSON = `{"id":"0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e","targetId":"6f1c2b0a-3d4e-4f5a-8b6c-7d8e9f0a1b2c",` +
	`"type":"update","targetType":"person","createdAt":"2024-05-14T10:21:33.123Z","timetoLiveForRecord":0,` +
	`"oldData":null,"newData":{"a":1},"authorDetails":{"fullName":"","email":""},"sourceDomain":""}`

const errorJSON = `{"message":"m","statusCode":%d,"correlationId":"c","traceId":"t"}`

// canned is a response the test server gives for one case.
type canned struct {
	status  int
	headers map[string]string
	body    string
}

func jsonResp(status int, body string, headers ...string) canned {
	h := map[string]string{"Content-Type": "application/json; charset=utf-8", "x-correlation-id": "abc"}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			delete(h, headers[i])
		} else {
			h[headers[i]] = headers[i+1]
		}
	}
	return canned{status, h, body}
}

func TestChecker(t *testing.T) {
	t.Parallel()
	page := `{"results":[` + activityJSON + `],"paginationDetails":{"nextToken":null}}`
	cases := []struct {
		name, method, path string
		resp               canned
		pass               bool
	}{
		{"good page", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(200, page), true},
		{"good page, next token", "GET", "/api/v1/activityHistory?targetId=x",
			jsonResp(200, `{"results":[],"paginationDetails":{"nextToken":"abc"}}`), true},
		{"path in lower case", "GET", "/api/v1/activityhistory?targetId=x", jsonResp(200, page), true},
		{"path in upper case, with id", "GET", "/API/V1/ACTIVITYHISTORY/0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e",
			jsonResp(200, activityJSON), true},
		{"missing results", "GET", "/api/v1/activityHistory?targetId=x",
			jsonResp(200, `{"paginationDetails":{"nextToken":null}}`), false},
		{"undocumented property", "GET", "/api/v1/activityHistory?targetId=x",
			jsonResp(200, `{"results":[],"paginationDetails":{"nextToken":null,"hasNext":false}}`), false},
		{"activity id not a uuid", "GET", "/api/v1/activityHistory/x",
			jsonResp(200, strings.Replace(activityJSON, "0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e", "nope", 1)), false},
		{"unknown activity type", "GET", "/api/v1/activityHistory/x",
			jsonResp(200, strings.Replace(activityJSON, `"update"`, `"rename"`, 1)), false},
		{"open target type", "GET", "/api/v1/activityHistory/x",
			jsonResp(200, strings.Replace(activityJSON, `"person"`, `"somethingConfigured"`, 1)), true},
		{"undocumented status", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(418, fmt.Sprintf(errorJSON, 418)), false},
		{"undocumented redirect", "GET", "/api/v1/activityHistory?targetId=x",
			canned{http.StatusMovedPermanently, map[string]string{"Location": "/elsewhere", "x-correlation-id": "abc"}, ""}, false},
		{"status documented for another operation only", "GET", "/api/v1/activityHistory/x",
			jsonResp(409, fmt.Sprintf(errorJSON, 409)), false},
		{"documented error", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(404, fmt.Sprintf(errorJSON, 404)), true},
		{"error envelope incomplete", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(404, `{"message":"m"}`), false},
		{"400 with field errors", "GET", "/api/v1/activityHistory?targetId=x",
			jsonResp(400, `{"message":"m","statusCode":400,"correlationId":"c","traceId":"t","errors":{"pageSize":["bad"]}}`), true},
		{"no correlation id", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(200, page, "x-correlation-id", ""), false},
		{"wrong content type", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(200, page, "Content-Type", "text/plain"), false},
		{"no content type", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(200, page, "Content-Type", ""), false},
		{"empty body", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(200, ""), false},
		{"401 with WWW-Authenticate", "GET", "/api/v1/activityHistory?targetId=x",
			jsonResp(401, fmt.Sprintf(errorJSON, 401), "WWW-Authenticate", `Bearer realm="activityhistory"`), true},
		{"401 without WWW-Authenticate", "GET", "/api/v1/activityHistory?targetId=x", jsonResp(401, fmt.Sprintf(errorJSON, 401)), false},
		{"created one", "POST", "/api/v1/activityHistory",
			jsonResp(201, activityJSON, "Location", "/api/v1/activityHistory/0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e", "X-Activity-Position", "7"), true},
		{"created a batch", "POST", "/api/v1/activityHistory",
			jsonResp(201, "["+activityJSON+","+activityJSON+"]", "X-Activity-Position", "8"), true},
		{"already recorded", "POST", "/api/v1/activityHistory", jsonResp(200, activityJSON, "X-Activity-Position", "7"), true},
		{"created without position", "POST", "/api/v1/activityHistory", jsonResp(201, activityJSON), false},
		{"position not a number", "POST", "/api/v1/activityHistory", jsonResp(201, activityJSON, "X-Activity-Position", "x"), false},
		{"created an empty batch", "POST", "/api/v1/activityHistory", jsonResp(201, "[]", "X-Activity-Position", "8"), false},
		{"undocumented route", "GET", "/api/v1/nothing", jsonResp(404, fmt.Sprintf(errorJSON, 404)), false},
		{"undocumented method", "DELETE", "/api/v1/activityHistory/x", jsonResp(405, fmt.Sprintf(errorJSON, 405)), false},
		{"health", "GET", "/api/v1/healthcheck/ping", jsonResp(503,
			`{"status":"Unhealthy","totalDurationMs":3,"entries":{"ReadModel":{"data":{},"status":"Unhealthy","description":"redis","durationMs":3,"exceptionMessage":"down"}}}`), true},
		{"health, bad status", "GET", "/api/v1/healthcheck/ping", jsonResp(200,
			`{"status":"OK","totalDurationMs":3,"entries":{}}`), false},
		{"metrics", "GET", "/metrics", canned{200, map[string]string{"Content-Type": "text/plain; version=0.0.4; charset=utf-8", "x-correlation-id": "a"}, "# HELP x\n"}, true},
		{"probe", "GET", "/readyz", jsonResp(503, `{"status":"not ready"}`), true},
		{"undocumented 204", "GET", "/healthz", canned{204, map[string]string{"x-correlation-id": "a"}, ""}, false},
	}

	byName := map[string]canned{}
	for _, tc := range cases {
		byName[tc.name] = tc.resp
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := byName[r.Header.Get("X-Case")]
		for k, v := range c.headers {
			w.Header().Set(k, v)
		}
		if c.headers["Content-Type"] == "" {
			w.Header()["Content-Type"] = nil // stop net/http sniffing one
		}
		w.WriteHeader(c.status)
		_, _ = w.Write([]byte(c.body))
	}))
	t.Cleanup(srv.Close)
	chk := apitest.New(t)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(`{"sent":true}`))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("X-Case", tc.name)
			f := &failures{TB: t}
			resp, body := chk.Do(f, client, req)
			if resp.StatusCode != tc.resp.status || string(body) != tc.resp.body {
				t.Fatalf("Do returned %d %q, want the canned response", resp.StatusCode, body)
			}
			if tc.pass && len(f.msgs) != 0 {
				t.Errorf("checker rejected a response that matches the document:\n%s", strings.Join(f.msgs, "\n"))
			}
			if !tc.pass && len(f.msgs) == 0 {
				t.Error("checker accepted a response that does not match the document")
			}
			if !tc.pass && len(f.msgs) != 0 {
				t.Log(f.msgs[0]) // what a failing test shows, for review
			}
		})
	}
}

// Serve checks in-process handlers the same way.
func TestServe(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("x-correlation-id", "abc")
		_, _ = w.Write([]byte(activityJSON))
	})
	f := &failures{TB: t}
	resp, body := chk.Serve(f, h, httptest.NewRequest(http.MethodGet, "/api/v1/activityHistory/0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e", nil))
	if resp.StatusCode != 200 || string(body) != activityJSON || len(f.msgs) != 0 {
		t.Errorf("good exchange: %d %s %v", resp.StatusCode, body, f.msgs)
	}
	f = &failures{TB: t}
	chk.Serve(f, h, httptest.NewRequest(http.MethodGet, "/api/v1/activityHistory?targetId=x", nil))
	if len(f.msgs) == 0 {
		t.Error("an Activity as a page was accepted")
	}
}

func TestCheckNoRoute(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	respond := func(status int, body string, headers ...string) *http.Response {
		rec := httptest.NewRecorder()
		rec.Header().Set("Content-Type", "application/json; charset=utf-8")
		for i := 0; i+1 < len(headers); i += 2 {
			rec.Header().Set(headers[i], headers[i+1])
		}
		rec.WriteHeader(status)
		_, _ = rec.WriteString(body)
		return rec.Result()
	}
	envelope := func(status int) string { return fmt.Sprintf(errorJSON, status) }
	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
		headers            []string
		pass               bool
	}{
		{"unknown path 404", "GET", "/api/v1/nothing", 404, envelope(404), []string{"x-correlation-id", "a"}, true},
		{"wrong method 405", "DELETE", "/api/v1/activityHistory/x", 405, envelope(405), []string{"x-correlation-id", "a"}, true},
		{"unknown path 200", "GET", "/api/v1/nothing", 200, envelope(200), []string{"x-correlation-id", "a"}, false},
		{"wrong method 404", "DELETE", "/api/v1/activityHistory/x", 404, envelope(404), []string{"x-correlation-id", "a"}, false},
		{"documented route", "GET", "/healthz", 404, envelope(404), []string{"x-correlation-id", "a"}, false},
		{"not the envelope", "GET", "/api/v1/nothing", 404, `{"error":"no"}`, []string{"x-correlation-id", "a"}, false},
		{"no correlation id", "GET", "/api/v1/nothing", 404, envelope(404), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(tc.method, tc.path, nil)
			f := &failures{TB: t}
			resp := respond(tc.status, tc.body, tc.headers...)
			chk.CheckNoRoute(f, req, resp, []byte(tc.body))
			if tc.pass != (len(f.msgs) == 0) {
				t.Errorf("pass = %v, want %v: %v", len(f.msgs) == 0, tc.pass, f.msgs)
			}
		})
	}
}

// The shared plumbing's real responses (error envelope, correlation header,
// NoRoute/NoMethod, Activity JSON) match the document.
func TestRealPlumbingMatches(t *testing.T) {
	t.Parallel()
	e := httpapi.NewEngine("test", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	a := activity.Activity{
		ID: "0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e", TargetID: "6f1c2b0a-3d4e-4f5a-8b6c-7d8e9f0a1b2c",
		Type: activity.TypeCreate, TargetType: "person", CreatedAt: time.Date(2024, 5, 14, 10, 0, 0, 0, time.UTC),
		NewData: json.RawMessage(`{"x":1}`),
	}
	e.GET("/api/v1/activityHistory/:id", func(c *gin.Context) {
		switch c.Param("id") {
		case "bad":
			httpapi.Error(c, http.StatusBadRequest, "invalid id", map[string][]string{"id": {"must be a UUID"}})
		case "boom":
			httpapi.Internal(c, errors.New("boom"))
		case "panic":
			panic("boom")
		default:
			c.JSON(http.StatusOK, a)
		}
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	chk := apitest.New(t)
	for id, status := range map[string]int{"bad": 400, "boom": 500, "panic": 500, a.ID: 200} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/v1/activityHistory/"+id, nil)
		req.Header.Set("x-correlation-id", "test-"+id)
		resp, _ := chk.Do(t, srv.Client(), req)
		if resp.StatusCode != status {
			t.Errorf("%s: status %d, want %d", id, resp.StatusCode, status)
		}
		if got := resp.Header.Get("x-correlation-id"); got != "test-"+id {
			t.Errorf("%s: correlation id %q not echoed", id, got)
		}
	}
	for _, r := range []struct{ method, path string }{{"GET", "/api/v1/nothing"}, {"DELETE", "/api/v1/activityHistory/x"}} {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, nil)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		chk.CheckNoRoute(t, req, resp, body)
	}
}
