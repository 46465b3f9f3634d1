package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/council/activityhistory/httpapi"
)

// testNow is the fixed clock of the tests.
func testNow() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

const testSecret = "0123456789abcdef0123456789abcdef-test"

// testKeys are the signing keys of one test.
type testKeys struct {
	rsa      *rsa.PrivateKey
	ec       *ecdsa.PrivateKey
	ecKid    string // thumbprint: its PEM block has no kid header
	otherRSA *rsa.PrivateKey
	pem      []byte // rsa (kid "rsa-1") and ec public keys
}

func newTestKeys(tb testing.TB) testKeys {
	tb.Helper()
	k := testKeys{rsa: newRSA(tb, 2048), ec: newEC(tb, elliptic.P256()), otherRSA: newRSA(tb, 2048)}
	var err error
	if k.ecKid, err = Thumbprint(&k.ec.PublicKey); err != nil {
		tb.Fatal(err)
	}
	k.pem = append(pemKey(tb, &k.rsa.PublicKey, map[string]string{"kid": "rsa-1"}), pemKey(tb, &k.ec.PublicKey, nil)...)
	return k
}

func newRSA(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func newEC(tb testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

func pemKey(tb testing.TB, pub crypto.PublicKey, headers map[string]string) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: headers, Bytes: der})
}

// sign makes a token with any method, key, kid and claims.
func sign(tb testing.TB, m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	tb.Helper()
	t := jwt.NewWithClaims(m, c)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// user is a valid claim set for groups, changed by edit.
func user(groups []string, edit func(*claims)) claims {
	c := tokenClaims(MintClaims{Subject: "u-1", Name: "Ada Lovelace", Email: "ada@example.org", TTL: time.Hour},
		groups, testNow().Add(-time.Minute))
	if edit != nil {
		edit(&c)
	}
	return c
}

func mint(tb testing.TB, groups ...string) string {
	tb.Helper()
	s, err := Mint([]byte(testSecret), MintClaims{Subject: "u-1", Name: "Ada Lovelace", Email: "ada@example.org",
		Groups: groups, TTL: time.Hour}, testNow().Add(-time.Minute))
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// newServer serves GET /r (read) and POST /w (write) behind a.
func newServer(t *testing.T, a *Authenticator) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	e := httpapi.NewEngine("authtest", slog.New(slog.DiscardHandler), nil)
	ok := func(c *gin.Context) {
		id, hasID := Principal(c)
		author, hasAuthor := Author(c)
		c.JSON(http.StatusOK, gin.H{"principal": id, "hasPrincipal": hasID, "author": author, "hasAuthor": hasAuthor})
	}
	e.GET("/r", a.Require(Read), ok)
	e.POST("/w", a.Require(Write), ok)
	e.GET("/a", a.Require(Audit), ok)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func newAuth(t *testing.T, cfg Config) *Authenticator {
	t.Helper()
	cfg.ReadGroups = []string{"readers", "admins"}
	cfg.WriteGroups = []string{"writers", " admins "}
	cfg.AuditGroups = []string{"auditors"}
	if cfg.Now == nil {
		cfg.Now = testNow
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

type response struct {
	status    int
	challenge string
	body      []byte
}

func call(t *testing.T, srv *httptest.Server, method, path, authorization string) response {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: res.StatusCode, challenge: res.Header.Get("WWW-Authenticate"), body: body}
}

func invalid(desc string) string {
	return `Bearer realm="activityhistory", error="invalid_token", error_description="` + desc + `"`
}

func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	keys := newTestKeys(t)
	hmacOnly := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret)}))
	keysOnly := newServer(t, newAuth(t, Config{PublicKeysPEM: keys.pem}))
	both := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret), PublicKeysPEM: keys.pem}))

	readers := []string{"readers"}
	rsaDER, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c claims) string { return sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c) }
	rs := func(kid string, c claims) string { return sign(t, jwt.SigningMethodRS256, keys.rsa, kid, c) }
	es := func(kid string, c claims) string { return sign(t, jwt.SigningMethodES256, keys.ec, kid, c) }
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", user(readers, nil))
	readerMinted, writerMinted, adminMinted := mint(t, "readers"), mint(t, "writers"), mint(t, "other", "admins")

	forbidden := func(perm string) string {
		return `Bearer realm="activityhistory", error="insufficient_scope", error_description="no group of the token grants ` + perm + `"`
	}
	cases := []struct {
		name          string
		srv           *httptest.Server
		method, path  string
		authorization string
		status        int
		challenge     string // exact WWW-Authenticate; "" = none expected
		message       string // exact envelope message on errors
	}{
		{"no header", hmacOnly, "GET", "/r", "", 401, `Bearer realm="activityhistory"`, "missing bearer token"},
		{"basic", hmacOnly, "GET", "/r", "Basic YWRhOnNlY3JldA==", 401, invalid("authorization scheme must be Bearer"),
			"invalid bearer token: authorization scheme must be Bearer"},
		{"bearer without token", hmacOnly, "GET", "/r", "Bearer", 401, invalid("empty bearer token"), "invalid bearer token: empty bearer token"},
		{"garbage", hmacOnly, "GET", "/r", "Bearer not-a-jwt", 401, invalid("malformed token"), "invalid bearer token: malformed token"},
		{"garbage three parts", hmacOnly, "GET", "/r", "Bearer a.b.c", 401, invalid("malformed token"), "invalid bearer token: malformed token"},
		{"too long", hmacOnly, "GET", "/r", "Bearer " + strings.Repeat("a", maxTokenLen+1), 401, invalid("token too long"),
			"invalid bearer token: token too long"},
		{"alg none", hmacOnly, "GET", "/r", "Bearer " + none, 401, invalid("signing algorithm not accepted"),
			"invalid bearer token: signing algorithm not accepted"},
		{"alg none with keys", both, "GET", "/r", "Bearer " + none, 401, invalid("signing algorithm not accepted"),
			"invalid bearer token: signing algorithm not accepted"},
		{"HS256 wrong secret", hmacOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!"), "", user(readers, nil)),
			401, invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"HS384 not configured", hmacOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodHS384, []byte(testSecret), "", user(readers, nil)),
			401, invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"RS256 when only HS256", hmacOnly, "GET", "/r", "Bearer " + rs("", user(readers, nil)), 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"RS256 with kid when only HS256", hmacOnly, "GET", "/r", "Bearer " + rs("rsa-1", user(readers, nil)), 401,
			invalid("unknown key"), "invalid bearer token: unknown key"},
		{"HS256 when only keys", keysOnly, "GET", "/r", "Bearer " + readerMinted, 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		// Key confusion: the public key as HMAC secret must never verify.
		{"HS256 keyed with the public key, keys only", keysOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodHS256, rsaDER, "rsa-1", user(readers, nil)), 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"HS256 keyed with the public key PEM, both", both, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodHS256, keys.pem, "rsa-1", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"RS256 kid", keysOnly, "GET", "/r", "Bearer " + rs("rsa-1", user(readers, nil)), 200, "", ""},
		{"RS256 no kid", keysOnly, "GET", "/r", "Bearer " + rs("", user(readers, nil)), 200, "", ""},
		{"ES256 thumbprint kid", keysOnly, "GET", "/r", "Bearer " + es(keys.ecKid, user(readers, nil)), 200, "", ""},
		{"ES256 no kid", both, "GET", "/r", "Bearer " + es("", user(readers, nil)), 200, "", ""},
		{"RS256 on both", both, "POST", "/w", "Bearer " + rs("rsa-1", user([]string{"writers"}, nil)), 200, "", ""},
		{"HS256 on both", both, "GET", "/r", "Bearer " + readerMinted, 200, "", ""},
		{"unknown kid", keysOnly, "GET", "/r", "Bearer " + rs("nope", user(readers, nil)), 401, invalid("unknown key"),
			"invalid bearer token: unknown key"},
		{"kid of the wrong key type", keysOnly, "GET", "/r", "Bearer " + rs(keys.ecKid, user(readers, nil)), 401,
			invalid("signing algorithm does not match the key"), "invalid bearer token: signing algorithm does not match the key"},
		{"RS256 by another key", keysOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodRS256, keys.otherRSA, "", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"RS256 by another key claiming a kid", keysOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodRS256, keys.otherRSA, "rsa-1", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"expired", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-time.Minute))
		})), 401, invalid("token expired"), "invalid bearer token: token expired"},
		{"expired within skew", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-20 * time.Second))
		})), 200, "", ""},
		{"expired RS256", keysOnly, "GET", "/r", "Bearer " + rs("rsa-1", user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-time.Hour))
		})), 401, invalid("token expired"), "invalid bearer token: token expired"},
		{"nbf in the future", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) {
			c.NotBefore = jwt.NewNumericDate(testNow().Add(5 * time.Minute))
		})), 401, invalid("token not valid yet"), "invalid bearer token: token not valid yet"},
		{"nbf within skew", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) {
			c.NotBefore = jwt.NewNumericDate(testNow().Add(20 * time.Second))
		})), 200, "", ""},
		{"iat in the future", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(testNow().Add(5 * time.Minute))
		})), 401, invalid("token issued in the future"), "invalid bearer token: token issued in the future"},
		{"no exp", hmacOnly, "GET", "/r", "Bearer " + hs(user(readers, func(c *claims) { c.ExpiresAt = nil })), 401,
			invalid("token has no exp claim"), "invalid bearer token: token has no exp claim"},
		{"groups not an array", hmacOnly, "GET", "/r",
			"Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", jwt.MapClaims{"groups": "readers", "exp": testNow().Add(time.Hour).Unix()}),
			401, invalid("malformed token"), "invalid bearer token: malformed token"},
		{"no allowed group", hmacOnly, "GET", "/r", "Bearer " + mint(t, "somebody-else"), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"no groups at all", hmacOnly, "GET", "/r", "Bearer " + mint(t), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader on POST", hmacOnly, "POST", "/w", "Bearer " + readerMinted, 403, forbidden("write"),
			"forbidden: no group of the token grants write access"},
		{"writer-only on GET", hmacOnly, "GET", "/r", "Bearer " + writerMinted, 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader on audit", hmacOnly, "GET", "/a", "Bearer " + readerMinted, 403, forbidden("audit"),
			"forbidden: no group of the token grants audit access"},
		{"group names are exact", hmacOnly, "GET", "/r", "Bearer " + mint(t, "Readers", "readers "), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader GET", hmacOnly, "GET", "/r", "Bearer " + readerMinted, 200, "", ""},
		{"lower-case scheme", hmacOnly, "GET", "/r", "bearer " + readerMinted, 200, "", ""},
		{"writer POST", hmacOnly, "POST", "/w", "Bearer " + writerMinted, 200, "", ""},
		{"admin GET", hmacOnly, "GET", "/r", "Bearer " + adminMinted, 200, "", ""},
		{"admin POST", hmacOnly, "POST", "/w", "Bearer " + adminMinted, 200, "", ""},
		{"auditor", hmacOnly, "GET", "/a", "Bearer " + mint(t, "auditors"), 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := call(t, tc.srv, tc.method, tc.path, tc.authorization)
			if res.status != tc.status {
				t.Fatalf("status %d, want %d; body %s", res.status, tc.status, res.body)
			}
			if res.challenge != tc.challenge {
				t.Errorf("WWW-Authenticate\n got %s\nwant %s", res.challenge, tc.challenge)
			}
			if _, token, ok := strings.Cut(tc.authorization, " "); ok && len(token) > 8 {
				if strings.Contains(string(res.body), token) || strings.Contains(res.challenge, token) {
					t.Error("the response echoes the token")
				}
			}
			if tc.status == http.StatusOK {
				checkPrincipal(t, res.body)
				return
			}
			var env httpapi.ErrorBody
			if err := json.Unmarshal(res.body, &env); err != nil {
				t.Fatalf("body is not the envelope: %v: %s", err, res.body)
			}
			if env.Message != tc.message || env.StatusCode != tc.status || env.CorrelationID == "" || env.TraceID == "" {
				t.Errorf("envelope %+v, want message %q, statusCode %d and ids", env, tc.message, tc.status)
			}
		})
	}
}

func checkPrincipal(t *testing.T, body []byte) {
	t.Helper()
	var got struct {
		Principal    Identity
		HasPrincipal bool
		Author       struct{ FullName, Email string }
		HasAuthor    bool
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	p := got.Principal
	if !got.HasPrincipal || p.Subject != "u-1" || p.Name != "Ada Lovelace" || p.Email != "ada@example.org" || len(p.Groups) == 0 {
		t.Errorf("principal %+v (present %v)", p, got.HasPrincipal)
	}
	if !got.HasAuthor || got.Author.FullName != "Ada Lovelace" || got.Author.Email != "ada@example.org" {
		t.Errorf("author %+v (present %v)", got.Author, got.HasAuthor)
	}
}

func TestMoreThanOneAuthorizationHeader(t *testing.T) {
	t.Parallel()
	srv := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret)}))
	req, err := http.NewRequest("GET", srv.URL+"/r", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("Authorization", "Bearer "+mint(t, "readers"))
	req.Header.Add("Authorization", "Bearer "+mint(t, "readers"))
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 || res.Header.Get("WWW-Authenticate") != invalid("more than one Authorization header") {
		t.Errorf("status %d, challenge %s", res.StatusCode, res.Header.Get("WWW-Authenticate"))
	}
}

func TestDisabledLetsEverythingThrough(t *testing.T) {
	t.Parallel()
	a, err := New(Config{Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, a)
	for _, tc := range []struct{ method, path, authorization string }{
		{"GET", "/r", ""}, {"POST", "/w", ""}, {"GET", "/a", "Bearer garbage"},
	} {
		res := call(t, srv, tc.method, tc.path, tc.authorization)
		if res.status != 200 {
			t.Fatalf("%s %s: status %d: %s", tc.method, tc.path, res.status, res.body)
		}
		if !strings.Contains(string(res.body), `"hasPrincipal":false`) || !strings.Contains(string(res.body), `"hasAuthor":false`) {
			t.Errorf("%s %s: a principal was set: %s", tc.method, tc.path, res.body)
		}
	}
}

func TestUnknownPermissionFailsClosed(t *testing.T) {
	t.Parallel()
	a := newAuth(t, Config{HMACSecret: []byte(testSecret)})
	e := httpapi.NewEngine("authtest", slog.New(slog.DiscardHandler), nil)
	e.GET("/x", a.Require(Permission(42)), func(c *gin.Context) { c.Status(200) })
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/x", nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, "readers", "writers", "auditors"))
	e.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", rec.Code)
	}
}

func TestMint(t *testing.T) {
	t.Parallel()
	a := newAuth(t, Config{HMACSecret: []byte(testSecret)})
	tok := mint(t, "readers", "writers")
	id, err := a.verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if id.Subject != "u-1" || id.Name != "Ada Lovelace" || id.Email != "ada@example.org" ||
		strings.Join(id.Groups, ",") != "readers,writers" {
		t.Errorf("identity %+v", id)
	}
	// Issued a minute before testNow() for an hour: expired 59 min 31 s later.
	late := newAuth(t, Config{HMACSecret: []byte(testSecret), Now: func() time.Time { return testNow().Add(time.Hour) }})
	if _, err := late.verify(tok); err == nil {
		t.Error("a minted token outlived its TTL")
	}
	for _, tc := range []struct {
		name   string
		secret string
		ttl    time.Duration
		want   string
	}{
		{"short secret", "0123456789abcdef0123456789abcde", time.Hour, "31 bytes, need at least 32"},
		{"no ttl", testSecret, 0, "TTL must be positive"},
		{"negative ttl", testSecret, -time.Hour, "TTL must be positive"},
	} {
		_, err := Mint([]byte(tc.secret), MintClaims{Subject: "x", TTL: tc.ttl}, testNow())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSkewConfigurable(t *testing.T) {
	t.Parallel()
	a := newAuth(t, Config{HMACSecret: []byte(testSecret), Skew: 2 * time.Minute})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", user([]string{"readers"}, func(c *claims) {
		c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-90 * time.Second))
	}))
	if _, err := a.verify(tok); err != nil {
		t.Errorf("expired 90 s ago with a 2 min skew: %v", err)
	}
	strict := newAuth(t, Config{HMACSecret: []byte(testSecret), Skew: time.Nanosecond})
	if _, err := strict.verify(tok); err == nil || !strings.Contains(err.Error(), "token expired") {
		t.Errorf("expired 90 s ago with no skew: %v", err)
	}
}
