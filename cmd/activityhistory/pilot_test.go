package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
)

// TestPilotCompatibility holds the pilot's HTTP behaviours its clients rely
// on, run against the real service: any trailing slash, any case on every
// route, {…} and (…) GUIDs, health entries with data, CORS allowing any
// request header, and null author fields and sourceDomain kept as null.
func TestPilotCompatibility(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	s := start(t, baseEnv(t.TempDir()))
	tok := mint(t, "readers", "writers")
	target, id := uuid.New(), uuid.New()
	upper := strings.ToUpper(target.String())

	// One activity posted the pilot's way: braced ids, trailing slash, nulls.
	posted := `{"id":"{` + strings.ToUpper(id.String()) + `}","targetId":"(` + upper + `)","type":"create","targetType":"person",` +
		`"createdAt":"2024-02-01T10:00:00Z","newData":{"a":1},"authorDetails":{"fullName":null,"email":null},"sourceDomain":null}`
	nulls := `"authorDetails":{"fullName":null,"email":null},"sourceDomain":null}`

	type check func(t *testing.T, res *http.Response, body []byte)
	hasNulls := func(t *testing.T, _ *http.Response, body []byte) {
		if !bytes.Contains(body, []byte(nulls)) {
			t.Errorf("nulls not kept: %s", body)
		}
	}
	onePage := func(t *testing.T, _ *http.Response, body []byte) {
		var p page
		if err := json.Unmarshal(body, &p); err != nil || len(p.Results) != 1 || p.Results[0].ID != id.String() {
			t.Errorf("page %s", body)
		}
		hasNulls(t, nil, body)
	}
	healthData := func(t *testing.T, _ *http.Response, body []byte) {
		var rep struct {
			Entries map[string]map[string]json.RawMessage
		}
		if err := json.Unmarshal(body, &rep); err != nil || len(rep.Entries) == 0 {
			t.Fatalf("health %s", body)
		}
		for name, e := range rep.Entries {
			if d := string(e["data"]); d != "{}" {
				t.Errorf("entry %s: data %q, want an object", name, d)
			}
		}
	}
	empty := func(t *testing.T, res *http.Response, body []byte) {
		if len(body) != 0 || res.Header.Get("Content-Type") == "" {
			t.Errorf("HEAD: body %q, Content-Type %q", body, res.Header.Get("Content-Type"))
		}
	}
	cases := []struct {
		name         string
		method, path string
		body         string
		status       int
		check        check
	}{
		{"POST braced ids, trailing slash, nulls", "POST", "/api/v1/activityHistory/", posted, 201,
			func(t *testing.T, res *http.Response, body []byte) {
				hasNulls(t, res, body)
				if !bytes.Contains(body, []byte(`"id":"`+id.String()+`","targetId":"`+target.String()+`"`)) {
					t.Errorf("ids not normalised: %s", body)
				}
			}},
		{"POST again is the same activity", "POST", "/API/V1/ActivityHistory", posted, 200, hasNulls},
		{"history, trailing slash", "GET", "/api/v1/activityHistory/?targetId=" + target.String(), "", 200, onePage},
		{"history, lower case, braced target", "GET", "/api/v1/activityhistory?targetId={" + upper + "}", "", 200, onePage},
		{"history, upper case, parenthesised target", "GET", "/API/V1/ACTIVITYHISTORY/?targetId=(" + target.String() + ")", "", 200, onePage},
		{"by id, braced, trailing slash", "GET", "/api/v1/activityHistory/%7B" + id.String() + "%7D/", "", 200, hasNulls},
		{"health, pilot spelling", "GET", "/api/v1/HealthCheck/Ping", "", 200, healthData},
		{"health, trailing slash", "GET", "/api/v1/healthcheck/ping/", "", 200, healthData},
		{"liveness, upper case", "GET", "/HEALTHZ", "", 200, nil},
		{"readiness, trailing slash", "GET", "/ReadyZ/", "", 200, nil},
		{"HEAD history", "HEAD", "/api/v1/activityHistory?targetId=" + target.String(), "", 200, empty},
		{"HEAD health", "HEAD", "/api/v1/healthcheck/ping", "", 200, empty},
		{"HEAD by id", "HEAD", "/api/v1/activityhistory/" + id.String(), "", 200, empty},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req, err := http.NewRequest(tc.method, s.url+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			if tc.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			res, b := chk.Do(t, nil, req)
			if res.StatusCode != tc.status {
				t.Fatalf("%d, want %d: %s", res.StatusCode, tc.status, b)
			}
			if tc.check != nil {
				tc.check(t, res, b)
			}
		})
		if tc.method == "POST" {
			// Reads are eventually consistent: wait for the projector.
			checkFor(t, 5*time.Second, func() error {
				if ids := history(t, chk, s.url, tok, target.String()); len(ids) != 1 {
					return fmt.Errorf("history %v", ids)
				}
				return nil
			})
		}
	}

	// CORS: a preflight may ask for any request header, as the pilot allowed.
	for _, asked := range []string{"x-api-key", "authorization, content-type, x-amz-date, x-amz-security-token, x-api-key"} {
		res := preflight(t, s.url+"/api/v1/activityHistory", "https://frontend.example.org", "GET", asked)
		if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Headers") != asked ||
			!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "GET") {
			t.Errorf("preflight asking for %q: %d %v", asked, res.StatusCode, res.Header)
		}
	}
}

// CORS_ALLOWED_HEADERS restricts what a preflight is told.
func TestCORSAllowedHeaders(t *testing.T) {
	t.Parallel()
	env := baseEnv(t.TempDir())
	env["CORS_ALLOWED_HEADERS"] = "x-api-key"
	s := start(t, env)
	res := preflight(t, s.url+"/api/v1/activityHistory", "https://frontend.example.org", "GET", "x-amz-date")
	if got := res.Header.Get("Access-Control-Allow-Headers"); got != "Authorization, Content-Type, x-correlation-id, traceparent, x-api-key" {
		t.Errorf("Access-Control-Allow-Headers %q", got)
	}
}

// preflight sends a CORS preflight for method from origin, asking for
// headers when not empty.
func preflight(t *testing.T, url, origin, method, headers string) *http.Response {
	t.Helper()
	req := request(t, "OPTIONS", url, "", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res
}
