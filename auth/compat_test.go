package auth

import (
	"crypto/rsa"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/auth/authtest"
)

// councilClaims are shaped like the council's user tokens: sub, email, iss,
// name, groups, iat and no exp.
func councilClaims(iat time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "u-1", "email": "ada@example.org", "iss": "Hackney", "name": "Ada Lovelace",
		"groups": []string{"readers", "writers"}, "iat": iat.Unix(),
	}
}

func TestTokensWithoutExp(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	hs := func(c jwt.Claims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c) }
	council := hs(councilClaims(testNow().Add(-2 * time.Hour)))
	strict := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret)}))
	lenient := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret), AllowMissingExp: true}))
	aged := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret), AllowMissingExp: true, MaxTokenAge: time.Hour}))

	noIat := councilClaims(testNow())
	delete(noIat, "iat")
	expired := councilClaims(testNow().Add(-2 * time.Hour))
	expired["exp"] = testNow().Add(-time.Hour).Unix()
	for _, tc := range []struct {
		name         string
		srv          *httptest.Server
		method, path string
		token        string
		status       int
		desc         string
	}{
		{"council token, exp required", strict, "GET", readPath, council, 401, "token has no exp claim"},
		{"council token read", lenient, "GET", readPath, council, 200, ""},
		{"council token write", lenient, "POST", writePath, council, 201, ""},
		{"exp in the past still refused", lenient, "GET", readPath, hs(expired), 401, "token expired"},
		{"within max age", aged, "GET", readPath, hs(councilClaims(testNow().Add(-30 * time.Minute))), 200, ""},
		{"beyond max age", aged, "GET", readPath, council, 401, "token older than the maximum token age"},
		{"no iat with max age", aged, "GET", readPath, hs(noIat), 401, "token has no iat claim"},
		{"no iat without max age", lenient, "GET", readPath, hs(noIat), 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := call(t, chk, tc.srv, tc.method, tc.path, "Bearer "+tc.token)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d: %s", res.status, tc.status, res.body)
			}
			if tc.desc != "" && res.challenge != invalid(tc.desc) {
				t.Errorf("challenge %s, want %s", res.challenge, invalid(tc.desc))
			}
			if tc.status < 300 {
				checkPrincipal(t, res.body)
			}
		})
	}
}

// RFC 7515 4.1.11 and RFC 7519 4.1.4: an unknown crit header, or a time
// claim that is not a number, makes the token invalid.
func TestStrictHeaderAndTimeClaims(t *testing.T) {
	t.Parallel()
	a := newAuth(t, Config{HMACSecret: []byte(testSecret)})
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "u-1", "groups": []string{"readers"}, "iat": testNow().Unix(),
			"nbf": testNow().Unix(), "exp": testNow().Add(time.Hour).Unix()}
	}
	withCrit := func(crit any) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, good())
		tok.Header["crit"] = crit
		tok.Header["x-unknown"] = true
		s, err := tok.SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	edited := func(claim string, v any) string {
		c := good()
		c[claim] = v
		return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c)
	}
	if _, err := a.verify(sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", good())); err != nil {
		t.Fatalf("the good token: %v", err)
	}
	const wrongType = "a registered claim has the wrong type (exp, nbf and iat must be numbers)"
	for _, tc := range []struct {
		name, token, desc string
	}{
		{"crit naming an unknown header", withCrit([]string{"x-unknown"}), "unsupported critical header"},
		{"crit empty", withCrit([]string{}), "unsupported critical header"},
		{"exp as a string", edited("exp", "4102444800"), wrongType},
		{"nbf as a string", edited("nbf", "0"), wrongType},
		{"iat as a string", edited("iat", "0"), wrongType},
		{"exp as null", edited("exp", nil), wrongType},
		{"exp as a bool", edited("exp", true), wrongType},
		{"exp as an object", edited("exp", map[string]int{"s": 1}), wrongType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.verify(tc.token)
			var te *tokenError
			if !errors.As(err, &te) || te.desc != tc.desc {
				t.Errorf("verify: %v, want %q", err, tc.desc)
			}
		})
	}
}

// cognitoClaims are shaped like a Cognito ID token.
func cognitoClaims(groups string) jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "u-1", "iss": "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test", "aud": "frontend",
		"token_use": "id", "custom:groups": groups, "name": "Ada Lovelace", "email": "ada@example.org",
		"iat": testNow().Add(-time.Minute).Unix(), "exp": testNow().Add(time.Hour).Unix(),
	}
}

func TestCognitoTokensFromJWKS(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	first, second := newRSA(t, 2048), newRSA(t, 2048)
	jwks := authtest.NewJWKS(t, map[string]*rsa.PrivateKey{"k1": first})
	a := newAuth(t, Config{
		JWKSURLs: []string{jwks.URL}, JWKSMinRefresh: time.Millisecond,
		Issuer: "https://cognito-idp.eu-west-2.amazonaws.com/eu-west-2_test", Audience: []string{"frontend"},
		GroupsClaim: "custom:groups",
	})
	t.Cleanup(func() { _ = a.Close() })
	if err := a.Ready(t.Context()); err != nil {
		t.Fatalf("ready: %v", err)
	}
	srv := newServer(t, a)
	rs := func(key *rsa.PrivateKey, kid string, c jwt.MapClaims) string {
		return "Bearer " + sign(t, jwt.SigningMethodRS256, key, kid, c)
	}
	expect := func(t *testing.T, method, path, authz string, status int, desc string) {
		t.Helper()
		res := call(t, chk, srv, method, path, authz)
		if res.status != status {
			t.Fatalf("%s %s: status %d, want %d: %s", method, path, res.status, status, res.body)
		}
		if desc != "" && res.challenge != invalid(desc) {
			t.Errorf("challenge %s, want %s", res.challenge, invalid(desc))
		}
		if status < 300 {
			checkPrincipal(t, res.body)
		}
	}
	good := cognitoClaims("readers;writers")
	expect(t, "GET", readPath, rs(first, "k1", good), 200, "")
	expect(t, "POST", writePath, rs(first, "k1", good), 201, "")
	expect(t, "GET", readPath, rs(first, "k1", cognitoClaims("writers,readers")), 200, "")
	expect(t, "GET", readPath, rs(first, "", good), 200, "") // no kid: every key of the set is tried
	expect(t, "POST", writePath, rs(first, "k1", cognitoClaims("readers")), 403, "")
	wrongIss := cognitoClaims("readers")
	wrongIss["iss"] = "https://elsewhere.example.org"
	expect(t, "GET", readPath, rs(first, "k1", wrongIss), 401, "wrong issuer")
	wrongAud := cognitoClaims("readers")
	wrongAud["aud"] = "another-client"
	expect(t, "GET", readPath, rs(first, "k1", wrongAud), 401, "wrong audience")
	expect(t, "GET", readPath, rs(second, "k1", good), 401, "invalid signature")
	// HS256 signed with anything is refused: a JWKS key is no HMAC secret.
	expect(t, "GET", readPath, "Bearer "+sign(t, jwt.SigningMethodHS256, []byte(testSecret), "k1", good), 401,
		"signing algorithm not accepted")

	// The issuer rotates: the new kid is fetched on first sight, the old
	// key is gone.
	jwks.Rotate(map[string]*rsa.PrivateKey{"k2": second})
	expect(t, "GET", readPath, rs(second, "k2", good), 200, "")
	expect(t, "POST", writePath, rs(second, "k2", good), 201, "")
	expect(t, "GET", readPath, rs(first, "k1", good), 401, "unknown key")
}

func TestJWKSUnreachable(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	key := newRSA(t, 2048)
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/jwks.json"
	ln.Close()
	a := newAuth(t, Config{JWKSURLs: []string{dead}, JWKSMinRefresh: time.Millisecond})
	t.Cleanup(func() { _ = a.Close() })
	if err := a.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), "not fetched") {
		t.Errorf("ready: %v, want the URL and why", err)
	}
	srv := newServer(t, a)
	res := call(t, chk, srv, "GET", readPath, "Bearer "+sign(t, jwt.SigningMethodRS256, key, "k1", user([]string{"readers"}, nil)))
	if res.status != 401 || res.challenge != invalid("unknown key") {
		t.Errorf("status %d %s, want 401 unknown key", res.status, res.challenge)
	}

	// A host that answers errors, then comes back.
	jwks := authtest.NewJWKS(t, map[string]*rsa.PrivateKey{"k1": key})
	jwks.SetDown(true)
	b := newAuth(t, Config{JWKSURLs: []string{jwks.URL}, JWKSMinRefresh: time.Millisecond})
	t.Cleanup(func() { _ = b.Close() })
	if err := b.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("ready: %v, want the status", err)
	}
	srvB := newServer(t, b)
	tok := "Bearer " + sign(t, jwt.SigningMethodRS256, key, "k1", user([]string{"readers"}, nil))
	if res := call(t, chk, srvB, "GET", readPath, tok); res.status != 401 {
		t.Errorf("while down: %d, want 401", res.status)
	}
	jwks.SetDown(false)
	if res := call(t, chk, srvB, "GET", readPath, tok); res.status != 200 {
		t.Errorf("back up: %d, want 200: %s", res.status, res.body)
	}
	if err := b.Ready(t.Context()); err != nil {
		t.Errorf("ready after a good fetch: %v", err)
	}
}

// Unknown kids fetch the key set again, at most once per JWKSMinRefresh:
// tokens with made-up kids cannot flood the issuer.
func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	t.Parallel()
	key := authtest.RSAKey(t)
	jwks := authtest.NewJWKS(t, map[string]*rsa.PrivateKey{"k1": key})
	a := newAuth(t, Config{JWKSURLs: []string{jwks.URL}, JWKSMinRefresh: time.Hour})
	t.Cleanup(func() { _ = a.Close() })
	if n := jwks.Fetches(); n != 1 {
		t.Fatalf("%d fetches at start, want 1", n)
	}
	for i := range 10 {
		tok := sign(t, jwt.SigningMethodRS256, key, fmt.Sprintf("made-up-%d", i), user([]string{"readers"}, nil))
		if _, err := a.verify(tok); err == nil {
			t.Fatal("a made-up kid verified")
		}
	}
	if n := jwks.Fetches(); n != 2 {
		t.Errorf("%d fetches after 10 unknown kids, want 2 (one refresh)", n)
	}
	if _, err := a.verify(sign(t, jwt.SigningMethodRS256, key, "k1", user([]string{"readers"}, nil))); err != nil {
		t.Errorf("the known kid: %v", err)
	}
}
