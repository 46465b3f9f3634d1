package main

import (
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/auth/authtest"
)

// A council user token: sub, email, iss, name, groups, iat — no exp.
func councilToken(t *testing.T, groups ...string) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "100518888746922116647", "email": "ada.lovelace@hackney.gov.uk", "iss": "Hackney",
		"name": "Ada Lovelace", "groups": groups, "iat": time.Now().Add(-time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func status(t *testing.T, chk *apitest.Checker, req *http.Request) int {
	t.Helper()
	res, _ := chk.Do(t, nil, req)
	return res.StatusCode
}

func TestCouncilTokensWithoutExp(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	tok := councilToken(t, "readers", "writers")
	target := uuid.NewString()

	strict := start(t, baseEnv(t.TempDir()))
	if got := status(t, chk, request(t, "GET", strict.url+"/api/v1/activityHistory?targetId="+target, tok, nil)); got != 401 {
		t.Errorf("council token with exp required: %d, want 401", got)
	}
	// The access line says why, without the token.
	if logs := strict.logs.String(); !strings.Contains(logs, `"authError":"token has no exp claim"`) || strings.Contains(logs, tok) {
		t.Errorf("the 401's log line does not say why, or shows the token")
	}

	env := baseEnv(t.TempDir())
	env["AUTH_REQUIRE_EXP"] = "false"
	env["AUTH_MAX_TOKEN_AGE"] = "12h"
	lenient := start(t, env)
	if !strings.Contains(lenient.logs.String(), "tokens without exp are accepted") {
		t.Error("no warning at start with AUTH_REQUIRE_EXP=false")
	}
	ids := postAll(t, chk, lenient.url, tok, target, 2)
	checkFor(t, 5*time.Second, func() error {
		if got := history(t, chk, lenient.url, tok, target); len(got) != len(ids) {
			return fmt.Errorf("history %v, want %v", got, ids)
		}
		return nil
	})
}

// A Cognito ID token: RS256 with a kid, groups in custom:groups as "a;b".
func cognitoToken(t *testing.T, key *rsa.PrivateKey, kid, groups string) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
		"sub": "4f1c2b0a-user", "iss": "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test", "aud": "frontend",
		"token_use": "id", "custom:groups": groups, "name": "Ada Lovelace", "email": "ada@example.org",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCognitoTokensFromAJWKSURL(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	first, second := authtest.RSAKey(t), authtest.RSAKey(t)
	host := authtest.NewJWKS(t, map[string]*rsa.PrivateKey{"k1": first})
	env := baseEnv(t.TempDir())
	delete(env, "AUTH_JWT_SECRET")
	env["AUTH_JWKS_URL"] = host.URL
	env["AUTH_GROUPS_CLAIM"] = "custom:groups"
	env["AUTH_ISSUER"] = "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test"
	env["AUTH_AUDIENCE"] = "frontend"
	s := start(t, env)
	target := uuid.NewString()

	tok := cognitoToken(t, first, "k1", "readers;writers")
	ids := postAll(t, chk, s.url, tok, target, 2)
	checkFor(t, 5*time.Second, func() error {
		if got := history(t, chk, s.url, tok, target); len(got) != len(ids) {
			return fmt.Errorf("history %v, want %v", got, ids)
		}
		return nil
	})
	if got := status(t, chk, request(t, "POST", s.url+"/api/v1/activityHistory", cognitoToken(t, first, "k1", "readers"), activityBody(target, 9))); got != 403 {
		t.Errorf("write with a read-only Cognito token: %d, want 403", got)
	}

	// The key rotates: a token of the new kid works at once, the old is gone.
	host.Rotate(map[string]*rsa.PrivateKey{"k2": second})
	tok2 := cognitoToken(t, second, "k2", "writers;readers")
	ids = append(ids, postAll(t, chk, s.url, tok2, target, 1)...)
	checkFor(t, 5*time.Second, func() error {
		if got := history(t, chk, s.url, tok2, target); len(got) != len(ids) {
			return fmt.Errorf("history %v, want %d ids", got, len(ids))
		}
		return nil
	})
	// The rotation refresh above is rate-limited (30 s by default): the old
	// key, now unknown, is refused without a new fetch.
	if got := status(t, chk, request(t, "GET", s.url+"/api/v1/activityHistory?targetId="+target, tok, nil)); got != 401 {
		t.Errorf("token of the rotated-out key: %d, want 401", got)
	}
}

// The JWKS host is down at start: the service starts, tokens are 401 (not
// 500), and /readyz says why.
func TestJWKSHostUnreachable(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/.well-known/jwks.json"
	ln.Close()
	env := baseEnv(t.TempDir())
	delete(env, "AUTH_JWT_SECRET")
	env["AUTH_JWKS_URL"] = dead
	s := launch(t, env)

	var body []byte
	checkFor(t, 10*time.Second, func() error {
		var res *http.Response
		res, body = chk.Do(t, nil, request(t, "GET", s.url+"/readyz", "", nil))
		if res.StatusCode != 503 || !strings.Contains(string(body), "dependency down") {
			return fmt.Errorf("readyz %d %s", res.StatusCode, body)
		}
		return nil
	})
	var ready struct{ Reasons map[string]string }
	if err := json.Unmarshal(body, &ready); err != nil || !strings.Contains(ready.Reasons["JWKS"], dead) {
		t.Errorf("readyz does not say why: %s", body)
	}
	tok := cognitoToken(t, authtest.RSAKey(t), "k1", "readers")
	if got := status(t, chk, request(t, "GET", s.url+"/api/v1/activityHistory?targetId="+uuid.NewString(), tok, nil)); got != 401 {
		t.Errorf("token while the JWKS host is down: %d, want 401", got)
	}
}

// The metrics the README lists are there from the start, at zero.
func TestMetricsAtZero(t *testing.T) {
	t.Parallel()
	s := start(t, baseEnv(t.TempDir()))
	res, err := http.Get(s.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b strings.Builder
	if _, err := io.Copy(&b, res.Body); err != nil {
		t.Fatal(err)
	}
	for _, series := range []string{
		"activityhistory_projector_events_applied_total 0",
		`activityhistory_projector_events_skipped_total{reason="unknown_type"} 0`,
		`activityhistory_projector_events_skipped_total{reason="undecodable"} 0`,
		`activityhistory_projector_errors_total{op="apply"} 0`,
		"activityhistory_eventstore_index_conflicts_total 0",
	} {
		if !strings.Contains(b.String(), series+"\n") {
			t.Errorf("no %s", series)
		}
	}
}

// One access line per request, plus the query line of a read; a 401 says
// why on its access line; a bad query parameter is not an "invalid
// activity".
func TestLogLinesPerRequest(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	s := start(t, baseEnv(t.TempDir()))
	tok := mint(t, "readers", "writers")
	target := uuid.NewString()
	postAll(t, chk, s.url, tok, target, 1)
	for _, tc := range []struct {
		name   string
		req    *http.Request
		lines  int
		absent string
	}{
		{"POST", request(t, "POST", s.url+"/api/v1/activityHistory", tok, activityBody(target, 2)), 1, ""},
		{"GET history", request(t, "GET", s.url+"/api/v1/activityHistory?targetId="+target, tok, nil), 2, ""},
		{"bad pageSize", request(t, "GET", s.url+"/api/v1/activityHistory?pageSize=x&targetId="+target, tok, nil), 2, "invalid activity"},
		{"401", request(t, "GET", s.url+"/api/v1/activityHistory?targetId="+target, "x.y.z", nil), 1, ""},
		{"HEAD", request(t, "HEAD", s.url+"/healthz", "", nil), 1, ""},
	} {
		id := uuid.NewString()
		tc.req.Header.Set("x-correlation-id", id)
		chk.Do(t, nil, tc.req)
		var mine []string
		for _, line := range strings.Split(s.logs.String(), "\n") {
			if strings.Contains(line, id) {
				mine = append(mine, line)
			}
		}
		if len(mine) != tc.lines {
			t.Errorf("%s: %d log lines, want %d:\n%s", tc.name, len(mine), tc.lines, strings.Join(mine, "\n"))
		}
		if tc.absent != "" && strings.Contains(strings.Join(mine, "\n"), tc.absent) {
			t.Errorf("%s: logged %q", tc.name, tc.absent)
		}
		if tc.name == "HEAD" && !strings.Contains(strings.Join(mine, ""), `"method":"HEAD"`) {
			t.Errorf("HEAD logged as %v", mine)
		}
	}
}
