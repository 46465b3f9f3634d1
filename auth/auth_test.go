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

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
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

// The routes of the test server: the API's own paths, so that every answer,
// the 401s and 403s above all, is checked against the OpenAPI document.
// No API route needs audit; the test puts it on the activity by id.
const (
	testTarget = "6f1c2b0a-3d4e-4f5a-8b6c-7d8e9f0a1b2c"
	testID     = "0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e"
	readPath   = "/api/v1/activityHistory?targetId=" + testTarget // GET, read
	writePath  = "/api/v1/activityHistory"                        // POST, write
	auditPath  = "/api/v1/activityHistory/" + testID              // GET, audit
)

// principalData is what the test routes tell of the caller.
type principalData struct {
	Principal    Identity `json:"principal"`
	HasPrincipal bool     `json:"hasPrincipal"`
	HasAuthor    bool     `json:"hasAuthor"`
}

// principalActivity is the documented answer of the test routes: an
// activity whose authorDetails is Author and whose newData holds what
// Principal returned.
func principalActivity(c *gin.Context) activity.Activity {
	id, hasID := Principal(c)
	author, hasAuthor := Author(c)
	data, err := json.Marshal(principalData{Principal: id, HasPrincipal: hasID, HasAuthor: hasAuthor})
	if err != nil {
		panic(err) // strings, bools and a string slice always encode
	}
	return activity.Activity{
		ID: testID, TargetID: testTarget, Type: activity.TypeUpdate, TargetType: "person",
		CreatedAt: testNow(), NewData: data, AuthorDetails: author,
	}
}

// newServer serves readPath, writePath and auditPath behind a.
func newServer(t *testing.T, a *Authenticator) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(newEngine(a, Read, Write, Audit))
	t.Cleanup(srv.Close)
	return srv
}

// newEngine guards the history with read, posting with write and the
// activity by id with audit; each answers in the documented shape.
func newEngine(a *Authenticator, read, write, audit Permission) *gin.Engine {
	gin.SetMode(gin.TestMode)
	e := httpapi.NewEngine("authtest", slog.New(slog.DiscardHandler), nil)
	e.GET("/api/v1/activityHistory", a.Require(read), func(c *gin.Context) {
		c.JSON(http.StatusOK, gin.H{
			"results":           []activity.Activity{principalActivity(c)},
			"paginationDetails": gin.H{"nextToken": nil},
		})
	})
	e.POST("/api/v1/activityHistory", a.Require(write), func(c *gin.Context) {
		c.Header("X-Activity-Position", "1")
		c.Header("Location", "/api/v1/activityHistory/"+testID)
		c.JSON(http.StatusCreated, principalActivity(c))
	})
	e.GET("/api/v1/activityHistory/:id", a.Require(audit), func(c *gin.Context) {
		c.JSON(http.StatusOK, principalActivity(c))
	})
	return e
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

// call sends one request to srv and checks the answer against the OpenAPI
// document.
func call(t *testing.T, chk *apitest.Checker, srv *httptest.Server, method, path, authorization string) response {
	t.Helper()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"targetId":"` + testTarget + `","type":"update","targetType":"person"}`)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	res, b := chk.Do(t, srv.Client(), req)
	return response{status: res.StatusCode, challenge: res.Header.Get("WWW-Authenticate"), body: b}
}

func invalid(desc string) string {
	return `Bearer realm="activityhistory", error="invalid_token", error_description="` + desc + `"`
}

func TestAuthMatrix(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
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
		{"no header", hmacOnly, "GET", readPath, "", 401, `Bearer realm="activityhistory"`, "missing bearer token"},
		{"basic", hmacOnly, "GET", readPath, "Basic YWRhOnNlY3JldA==", 401, invalid("authorization scheme must be Bearer"),
			"invalid bearer token: authorization scheme must be Bearer"},
		{"bearer without token", hmacOnly, "GET", readPath, "Bearer", 401, invalid("empty bearer token"), "invalid bearer token: empty bearer token"},
		{"garbage", hmacOnly, "GET", readPath, "Bearer not-a-jwt", 401, invalid("malformed token"), "invalid bearer token: malformed token"},
		{"garbage three parts", hmacOnly, "GET", readPath, "Bearer a.b.c", 401, invalid("malformed token"), "invalid bearer token: malformed token"},
		{"too long", hmacOnly, "GET", readPath, "Bearer " + strings.Repeat("a", maxTokenLen+1), 401, invalid("token too long"),
			"invalid bearer token: token too long"},
		{"alg none", hmacOnly, "GET", readPath, "Bearer " + none, 401, invalid("signing algorithm not accepted"),
			"invalid bearer token: signing algorithm not accepted"},
		{"alg none with keys", both, "GET", readPath, "Bearer " + none, 401, invalid("signing algorithm not accepted"),
			"invalid bearer token: signing algorithm not accepted"},
		{"HS256 wrong secret", hmacOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!"), "", user(readers, nil)),
			401, invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"HS384 not configured", hmacOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS384, []byte(testSecret), "", user(readers, nil)),
			401, invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"RS256 when only HS256", hmacOnly, "GET", readPath, "Bearer " + rs("", user(readers, nil)), 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"RS256 with kid when only HS256", hmacOnly, "GET", readPath, "Bearer " + rs("rsa-1", user(readers, nil)), 401,
			invalid("unknown key"), "invalid bearer token: unknown key"},
		{"HS256 when only keys", keysOnly, "GET", readPath, "Bearer " + readerMinted, 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		// Key confusion: the public key as HMAC secret must never verify.
		{"HS256 keyed with the public key, keys only", keysOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS256, rsaDER, "rsa-1", user(readers, nil)), 401,
			invalid("signing algorithm not accepted"), "invalid bearer token: signing algorithm not accepted"},
		{"HS256 keyed with the public key PEM, both", both, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS256, keys.pem, "rsa-1", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"RS256 kid", keysOnly, "GET", readPath, "Bearer " + rs("rsa-1", user(readers, nil)), 200, "", ""},
		{"RS256 no kid", keysOnly, "GET", readPath, "Bearer " + rs("", user(readers, nil)), 200, "", ""},
		{"ES256 thumbprint kid", keysOnly, "GET", readPath, "Bearer " + es(keys.ecKid, user(readers, nil)), 200, "", ""},
		{"ES256 no kid", both, "GET", readPath, "Bearer " + es("", user(readers, nil)), 200, "", ""},
		{"RS256 on both", both, "POST", writePath, "Bearer " + rs("rsa-1", user([]string{"writers"}, nil)), 201, "", ""},
		{"HS256 on both", both, "GET", readPath, "Bearer " + readerMinted, 200, "", ""},
		{"unknown kid", keysOnly, "GET", readPath, "Bearer " + rs("nope", user(readers, nil)), 401, invalid("unknown key"),
			"invalid bearer token: unknown key"},
		{"kid of the wrong key type", keysOnly, "GET", readPath, "Bearer " + rs(keys.ecKid, user(readers, nil)), 401,
			invalid("signing algorithm does not match the key"), "invalid bearer token: signing algorithm does not match the key"},
		{"RS256 by another key", keysOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodRS256, keys.otherRSA, "", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"RS256 by another key claiming a kid", keysOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodRS256, keys.otherRSA, "rsa-1", user(readers, nil)), 401,
			invalid("invalid signature"), "invalid bearer token: invalid signature"},
		{"expired", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-time.Minute))
		})), 401, invalid("token expired"), "invalid bearer token: token expired"},
		{"expired within skew", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-20 * time.Second))
		})), 200, "", ""},
		{"expired RS256", keysOnly, "GET", readPath, "Bearer " + rs("rsa-1", user(readers, func(c *claims) {
			c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-time.Hour))
		})), 401, invalid("token expired"), "invalid bearer token: token expired"},
		{"nbf in the future", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) {
			c.NotBefore = jwt.NewNumericDate(testNow().Add(5 * time.Minute))
		})), 401, invalid("token not valid yet"), "invalid bearer token: token not valid yet"},
		{"nbf within skew", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) {
			c.NotBefore = jwt.NewNumericDate(testNow().Add(20 * time.Second))
		})), 200, "", ""},
		{"iat in the future", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) {
			c.IssuedAt = jwt.NewNumericDate(testNow().Add(5 * time.Minute))
		})), 401, invalid("token issued in the future"), "invalid bearer token: token issued in the future"},
		{"no exp", hmacOnly, "GET", readPath, "Bearer " + hs(user(readers, func(c *claims) { c.ExpiresAt = nil })), 401,
			invalid("token has no exp claim"), "invalid bearer token: token has no exp claim"},
		{"groups neither array nor string", hmacOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", jwt.MapClaims{"groups": 7, "exp": testNow().Add(time.Hour).Unix()}),
			401, invalid("invalid groups claim"), "invalid bearer token: invalid groups claim"},
		{"groups array of numbers", hmacOnly, "GET", readPath,
			"Bearer " + sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", jwt.MapClaims{"groups": []int{1}, "exp": testNow().Add(time.Hour).Unix()}),
			401, invalid("invalid groups claim"), "invalid bearer token: invalid groups claim"},
		{"no allowed group", hmacOnly, "GET", readPath, "Bearer " + mint(t, "somebody-else"), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"no groups at all", hmacOnly, "GET", readPath, "Bearer " + mint(t), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader on POST", hmacOnly, "POST", writePath, "Bearer " + readerMinted, 403, forbidden("write"),
			"forbidden: no group of the token grants write access"},
		{"writer-only on GET", hmacOnly, "GET", readPath, "Bearer " + writerMinted, 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader on audit", hmacOnly, "GET", auditPath, "Bearer " + readerMinted, 403, forbidden("audit"),
			"forbidden: no group of the token grants audit access"},
		{"group names are exact", hmacOnly, "GET", readPath, "Bearer " + mint(t, "Readers", "readers "), 403, forbidden("read"),
			"forbidden: no group of the token grants read access"},
		{"reader GET", hmacOnly, "GET", readPath, "Bearer " + readerMinted, 200, "", ""},
		{"lower-case scheme", hmacOnly, "GET", readPath, "bearer " + readerMinted, 200, "", ""},
		{"writer POST", hmacOnly, "POST", writePath, "Bearer " + writerMinted, 201, "", ""},
		{"admin GET", hmacOnly, "GET", readPath, "Bearer " + adminMinted, 200, "", ""},
		{"admin POST", hmacOnly, "POST", writePath, "Bearer " + adminMinted, 201, "", ""},
		{"auditor", hmacOnly, "GET", auditPath, "Bearer " + mint(t, "auditors"), 200, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := call(t, chk, tc.srv, tc.method, tc.path, tc.authorization)
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
			if tc.status < 300 {
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

// principalIn reads what principalActivity put in a 2xx answer, a page or
// an activity.
func principalIn(t *testing.T, body []byte) (principalData, activity.Author) {
	t.Helper()
	var page struct {
		Results []json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if len(page.Results) == 1 {
		body = page.Results[0]
	}
	var a struct {
		NewData       principalData   `json:"newData"`
		AuthorDetails activity.Author `json:"authorDetails"`
	}
	if err := json.Unmarshal(body, &a); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return a.NewData, a.AuthorDetails
}

func checkPrincipal(t *testing.T, body []byte) {
	t.Helper()
	got, author := principalIn(t, body)
	p := got.Principal
	if !got.HasPrincipal || p.Subject != "u-1" || p.Name != "Ada Lovelace" || p.Email != "ada@example.org" || len(p.Groups) == 0 {
		t.Errorf("principal %+v (present %v)", p, got.HasPrincipal)
	}
	if !got.HasAuthor || author.FullName != "Ada Lovelace" || author.Email != "ada@example.org" {
		t.Errorf("author %+v (present %v)", author, got.HasAuthor)
	}
}

func TestMoreThanOneAuthorizationHeader(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	srv := newServer(t, newAuth(t, Config{HMACSecret: []byte(testSecret)}))
	req, err := http.NewRequestWithContext(t.Context(), "GET", srv.URL+readPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Add("Authorization", "Bearer "+mint(t, "readers"))
	req.Header.Add("Authorization", "Bearer "+mint(t, "readers"))
	res, _ := chk.Do(t, srv.Client(), req)
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
	chk := apitest.New(t)
	srv := newServer(t, a)
	for _, tc := range []struct {
		method, path, authorization string
		status                      int
	}{
		{"GET", readPath, "", 200}, {"POST", writePath, "", 201}, {"GET", auditPath, "Bearer garbage", 200},
	} {
		res := call(t, chk, srv, tc.method, tc.path, tc.authorization)
		if res.status != tc.status {
			t.Fatalf("%s %s: status %d: %s", tc.method, tc.path, res.status, res.body)
		}
		if got, author := principalIn(t, res.body); got.HasPrincipal || got.HasAuthor || author != (activity.Author{}) {
			t.Errorf("%s %s: a principal was set: %s", tc.method, tc.path, res.body)
		}
	}
}

func TestUnknownPermissionFailsClosed(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	a := newAuth(t, Config{HMACSecret: []byte(testSecret)})
	e := newEngine(a, Permission(42), Permission(42), Permission(42))
	req := httptest.NewRequest("GET", readPath, nil)
	req.Header.Set("Authorization", "Bearer "+mint(t, "readers", "writers", "auditors"))
	if res, body := chk.Serve(t, e, req); res.StatusCode != http.StatusInternalServerError {
		t.Errorf("status %d, want 500: %s", res.StatusCode, body)
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
