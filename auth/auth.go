// Package auth checks the bearer JWTs of API requests and maps the token's
// groups to read, write and audit permissions.
package auth

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/golang-jwt/jwt/v5"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/httpapi"
)

const (
	// Realm is the realm of the WWW-Authenticate challenge.
	Realm = "activityhistory"
	// DefaultSkew is the clock skew allowed on exp, nbf and iat when Config.Skew is zero.
	DefaultSkew = 30 * time.Second
	// MinSecretLen is the shortest HMAC secret accepted: HS256 needs 256 bits of key.
	MinSecretLen = 32

	// maxTokenLen bounds the work done on a header before any signature check.
	maxTokenLen  = 16 << 10
	ctxPrincipal = "ah.principal"
)

// Permission is what a route requires of the caller's groups.
type Permission int

// The permissions; each has its own list of groups, none implies another.
const (
	Read Permission = iota + 1
	Write
	Audit
	// Export is granted by the export groups and by the audit groups.
	Export
)

// String names p, as in the 403 message.
func (p Permission) String() string {
	switch p {
	case Read:
		return "read"
	case Write:
		return "write"
	case Audit:
		return "audit"
	case Export:
		return "export"
	}
	return fmt.Sprintf("permission(%d)", int(p))
}

// Default claim names, as in the council's user tokens.
const (
	DefaultGroupsClaim = "groups"
	DefaultNameClaim   = "name"
	DefaultEmailClaim  = "email"
)

// Config configures an Authenticator. At least one of HMACSecret,
// PublicKeysPEM and JWKSURLs is needed unless Disabled.
type Config struct {
	// HMACSecret verifies HS256 tokens; at least MinSecretLen bytes.
	HMACSecret []byte
	// PublicKeysPEM holds PUBLIC KEY (PKIX), RSA PUBLIC KEY (PKCS #1) or
	// CERTIFICATE blocks: RSA keys verify RS256, P-256 keys ES256. A block's
	// "kid" PEM header names its key, else the key's RFC 7638 thumbprint does.
	PublicKeysPEM []byte
	// JWKSURLs publish RS256/ES256 keys (Cognito, for one): fetched at
	// New, refreshed every JWKSRefresh and when a token names an unknown
	// kid (at most once per JWKSMinRefresh).
	JWKSURLs       []string
	JWKSRefresh    time.Duration // zero means DefaultJWKSRefresh
	JWKSMinRefresh time.Duration // zero means DefaultJWKSMinRefresh
	// JWKSClient fetches the key sets; nil means a client with a 5 s timeout.
	JWKSClient *http.Client
	// Issuer and Audience, when set, must match the token's iss and aud
	// (one of Audience).
	Issuer   string
	Audience []string
	// GroupsClaim names the claim holding the caller's groups: an array
	// of strings, or one string of groups separated by ";" or ",".
	// NameClaim and EmailClaim name the author's claims. Empty means the
	// Default…Claim.
	GroupsClaim, NameClaim, EmailClaim string
	// AllowMissingExp accepts tokens without exp (the council's user
	// tokens have none). A token with an exp in the past is refused still.
	AllowMissingExp bool
	// MaxTokenAge, when set, refuses tokens issued longer ago, and tokens
	// without iat.
	MaxTokenAge time.Duration
	// Groups granting each permission; a token needs one of them. Audit
	// groups grant export too.
	ReadGroups, WriteGroups, AuditGroups, ExportGroups []string
	// Skew is the leeway on exp, nbf and iat; zero means DefaultSkew.
	Skew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Disabled lets every request through without a principal.
	Disabled bool
}

// Identity is the authenticated caller, taken from the token's claims.
type Identity struct {
	Subject string
	Name    string
	Email   string
	Groups  []string
}

// Authenticator verifies bearer tokens and enforces permissions.
type Authenticator struct {
	disabled bool
	secret   []byte
	keys     []publicKey
	byKid    map[string]publicKey
	byAlg    map[string][]jwt.VerificationKey
	jwks     *keySet // nil without JWKSURLs
	groups   map[Permission]map[string]bool
	parser   *jwt.Parser
	now      func() time.Time
	skew     time.Duration
	maxAge   time.Duration
	verified tokenCache

	groupsClaim, nameClaim, emailClaim string
}

// New checks cfg and returns an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Disabled {
		return &Authenticator{disabled: true}, nil
	}
	if len(cfg.HMACSecret) == 0 && len(cfg.PublicKeysPEM) == 0 && len(cfg.JWKSURLs) == 0 {
		return nil, errors.New("auth: no HMAC secret, no public keys and no JWKS URL configured, and auth is not disabled")
	}
	if n := len(cfg.HMACSecret); n > 0 && n < MinSecretLen {
		return nil, fmt.Errorf("auth: HMAC secret is %d bytes, need at least %d", n, MinSecretLen)
	}
	if cfg.Skew < 0 {
		return nil, fmt.Errorf("auth: negative clock skew %s", cfg.Skew)
	}
	if cfg.MaxTokenAge < 0 {
		return nil, fmt.Errorf("auth: negative maximum token age %s", cfg.MaxTokenAge)
	}
	a := &Authenticator{
		byKid: map[string]publicKey{},
		byAlg: map[string][]jwt.VerificationKey{},
		groups: map[Permission]map[string]bool{
			Read:   groupSet(cfg.ReadGroups),
			Write:  groupSet(cfg.WriteGroups),
			Audit:  groupSet(cfg.AuditGroups),
			Export: groupSet(append(slices.Clone(cfg.ExportGroups), cfg.AuditGroups...)),
		},
	}
	if len(cfg.HMACSecret) > 0 {
		a.secret = slices.Clone(cfg.HMACSecret)
	}
	if len(cfg.PublicKeysPEM) > 0 {
		keys, err := parsePublicKeys(cfg.PublicKeysPEM)
		if err != nil {
			return nil, fmt.Errorf("auth: public keys: %w", err)
		}
		a.keys = keys
		for _, k := range keys {
			a.byKid[k.kid] = k
			a.byAlg[k.alg] = append(a.byAlg[k.alg], k.pub)
		}
	}
	a.skew = cmp.Or(cfg.Skew, DefaultSkew)
	a.now = cfg.Now
	if a.now == nil {
		a.now = time.Now
	}
	a.maxAge = cfg.MaxTokenAge
	a.groupsClaim = cmp.Or(cfg.GroupsClaim, DefaultGroupsClaim)
	a.nameClaim = cmp.Or(cfg.NameClaim, DefaultNameClaim)
	a.emailClaim = cmp.Or(cfg.EmailClaim, DefaultEmailClaim)
	opts := []jwt.ParserOption{
		jwt.WithLeeway(a.skew),
		jwt.WithTimeFunc(a.now),
		jwt.WithIssuedAt(),
		// Canonical base64 only, so a signature has one spelling.
		jwt.WithStrictDecoding(),
	}
	if !cfg.AllowMissingExp {
		opts = append(opts, jwt.WithExpirationRequired())
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if len(cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(cfg.Audience...))
	}
	a.parser = jwt.NewParser(opts...)
	if len(cfg.JWKSURLs) > 0 {
		// Last: it starts a refresh goroutine that Close stops.
		ks, err := newKeySet(cfg)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.jwks = ks
	}
	return a, nil
}

// Close stops refreshing the key sets.
func (a *Authenticator) Close() error {
	if a.jwks != nil {
		a.jwks.close()
	}
	return nil
}

// Ready reports why tokens signed by the JWKS keys cannot be verified
// yet: a key set that was never fetched, or holds no usable key.
func (a *Authenticator) Ready(context.Context) error {
	if a.jwks == nil {
		return nil
	}
	return a.jwks.ready()
}

func groupSet(groups []string) map[string]bool {
	set := map[string]bool{}
	for _, g := range groups {
		if g = strings.TrimSpace(g); g != "" {
			set[g] = true
		}
	}
	return set
}

// KeyIDs lists the kids of the configured public keys, for a startup log.
func (a *Authenticator) KeyIDs() []string {
	ids := make([]string, 0, len(a.keys))
	for _, k := range a.keys {
		ids = append(ids, k.kid)
	}
	return ids
}

// Require answers 401 to requests without a valid bearer token and 403 to
// those whose token has none of perm's groups; otherwise it stores the
// caller's Identity for Principal and Author.
func (a *Authenticator) Require(perm Permission) gin.HandlerFunc {
	if a.disabled {
		return func(c *gin.Context) { c.Next() }
	}
	allowed, known := a.groups[perm]
	return func(c *gin.Context) {
		if !known {
			httpapi.Internal(c, fmt.Errorf("auth: route requires unknown %s", perm))
			return
		}
		id, err := a.authenticate(c.Request.Context(), c.Request)
		if err != nil {
			unauthorized(c, err)
			return
		}
		grant := slices.IndexFunc(id.Groups, func(g string) bool { return allowed[g] })
		if grant < 0 {
			httpapi.Logger(c).Debug("auth forbidden", "subject", id.Subject, "permission", perm.String())
			c.Header("WWW-Authenticate", fmt.Sprintf(
				`Bearer realm=%q, error="insufficient_scope", error_description="no group of the token grants %s"`, Realm, perm))
			httpapi.Error(c, http.StatusForbidden, fmt.Sprintf("forbidden: no group of the token grants %s access", perm), nil)
			return
		}
		c.Set(ctxPrincipal, id)
		httpapi.SetCaller(c, httpapi.Caller{Email: id.Email, Group: id.Groups[grant]})
		c.Next()
	}
}

// Principal is the caller Require authenticated, if any.
func Principal(c *gin.Context) (Identity, bool) {
	v, ok := c.Get(ctxPrincipal)
	if !ok {
		return Identity{}, false
	}
	id, ok := v.(Identity)
	return id, ok
}

// Author is the caller as an activity author, if Require authenticated one.
func Author(c *gin.Context) (activity.Author, bool) {
	id, ok := Principal(c)
	if !ok {
		return activity.Author{}, false
	}
	return activity.Author{FullName: id.Name, Email: id.Email}, true
}

// tokenError says why a request is not authenticated. desc is a fixed
// text: it never quotes the token, so it is safe in headers and logs.
type tokenError struct {
	missing bool // no credentials at all: the challenge carries no error
	desc    string
	err     error
}

func (e *tokenError) Error() string { return "invalid bearer token: " + e.desc }
func (e *tokenError) Unwrap() error { return e.err }

func unauthorized(c *gin.Context, err error) {
	var te *tokenError
	if !errors.As(err, &te) {
		te = &tokenError{desc: "invalid token", err: err}
	}
	// Said on the request's access line; never the token itself.
	httpapi.Annotate(c, "authError", te.desc)
	if te.missing {
		c.Header("WWW-Authenticate", fmt.Sprintf("Bearer realm=%q", Realm))
		httpapi.Error(c, http.StatusUnauthorized, "missing bearer token", nil)
		return
	}
	c.Header("WWW-Authenticate", fmt.Sprintf(
		`Bearer realm=%q, error="invalid_token", error_description=%q`, Realm, te.desc))
	httpapi.Error(c, http.StatusUnauthorized, te.Error(), nil)
}

func (a *Authenticator) authenticate(ctx context.Context, r *http.Request) (Identity, error) {
	values := r.Header.Values("Authorization")
	switch {
	case len(values) == 0:
		return Identity{}, &tokenError{missing: true, desc: "missing bearer token"}
	case len(values) > 1:
		return Identity{}, &tokenError{desc: "more than one Authorization header"}
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if scheme == "" {
		return Identity{}, &tokenError{missing: true, desc: "missing bearer token"}
	}
	if !strings.EqualFold(scheme, "Bearer") {
		return Identity{}, &tokenError{desc: "authorization scheme must be Bearer"}
	}
	return a.verifyContext(ctx, strings.TrimSpace(token))
}

// claims are the claims of a minted token; verification reads the
// claims by their configured names instead.
type claims struct {
	Groups []string `json:"groups"`
	Email  string   `json:"email,omitempty"`
	Name   string   `json:"name,omitempty"`
	jwt.RegisteredClaims
}

var (
	errUnknownKey   = errors.New("unknown key")
	errAlgorithm    = errors.New("signing algorithm not accepted")
	errKeyAlgorithm = errors.New("signing algorithm does not match the key")
	errCritical     = errors.New("unsupported critical header")
	errNoIat        = errors.New("token has no iat claim")
	errTooOld       = errors.New("token older than the maximum token age")
)

// claimError names a claim of the wrong type.
type claimError struct{ claim string }

func (e *claimError) Error() string { return "invalid " + e.claim + " claim" }

// verify checks token's signature and times and returns its identity.
func (a *Authenticator) verify(token string) (Identity, error) {
	return a.verifyContext(context.Background(), token)
}

func (a *Authenticator) verifyContext(ctx context.Context, token string) (Identity, error) {
	switch {
	case token == "":
		return Identity{}, &tokenError{desc: "empty bearer token"}
	case len(token) > maxTokenLen:
		return Identity{}, &tokenError{desc: "token too long"}
	}
	now, keys := a.now(), a.keysVersion()
	if id, ok := a.verified.get(token, now, keys); ok {
		return id, nil
	}
	// MapClaims, not a struct: claim names are configured, and a time
	// claim that is not a JSON number (say "exp":"1700000000") is refused
	// rather than read as a number.
	cl := jwt.MapClaims{}
	keyfunc := func(t *jwt.Token) (any, error) { return a.key(ctx, t) }
	if _, err := a.parser.ParseWithClaims(token, cl, keyfunc); err != nil {
		return Identity{}, &tokenError{desc: describe(err), err: err}
	}
	if err := a.checkAge(cl); err != nil {
		return Identity{}, &tokenError{desc: err.Error(), err: err}
	}
	id, err := a.identity(cl)
	if err != nil {
		return Identity{}, &tokenError{desc: err.Error(), err: err}
	}
	from, until := a.window(cl)
	a.verified.put(token, id, from, until, keys)
	return id, nil
}

// checkAge enforces MaxTokenAge.
func (a *Authenticator) checkAge(cl jwt.MapClaims) error {
	if a.maxAge == 0 {
		return nil
	}
	iat, err := cl.GetIssuedAt()
	if err != nil || iat == nil {
		return errNoIat
	}
	if a.now().Sub(iat.Time) > a.maxAge+a.skew {
		return errTooOld
	}
	return nil
}

func (a *Authenticator) identity(cl jwt.MapClaims) (Identity, error) {
	var id Identity
	var err error
	if id.Subject, err = stringClaim(cl, "sub"); err != nil {
		return Identity{}, err
	}
	if id.Name, err = stringClaim(cl, a.nameClaim); err != nil {
		return Identity{}, err
	}
	if id.Email, err = stringClaim(cl, a.emailClaim); err != nil {
		return Identity{}, err
	}
	if id.Groups, err = groupsClaim(cl, a.groupsClaim); err != nil {
		return Identity{}, err
	}
	return id, nil
}

// stringClaim is a string claim, "" when absent or null.
func stringClaim(cl jwt.MapClaims, name string) (string, error) {
	switch v := cl[name].(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	}
	return "", &claimError{claim: name}
}

// groupsClaim reads an array of strings as is, and splits one string on
// ";" and "," (Cognito's custom:groups is "a;b").
func groupsClaim(cl jwt.MapClaims, name string) ([]string, error) {
	switch v := cl[name].(type) {
	case nil:
		return nil, nil
	case string:
		return strings.FieldsFunc(v, func(r rune) bool { return r == ';' || r == ',' }), nil
	case []any:
		groups := make([]string, 0, len(v))
		for _, g := range v {
			s, ok := g.(string)
			if !ok {
				return nil, &claimError{claim: name}
			}
			groups = append(groups, s)
		}
		return groups, nil
	}
	return nil, &claimError{claim: name}
}

// key picks the verification key for t. Each algorithm gets only keys of
// its own kind: the HMAC secret for HS256, never a public key, so a
// public key cannot be abused as an HMAC secret.
func (a *Authenticator) key(ctx context.Context, t *jwt.Token) (any, error) {
	// RFC 7515 4.1.11: extensions listed in crit must be understood, and
	// this service understands none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errCritical
	}
	switch t.Method {
	case jwt.SigningMethodHS256:
		// The shared secret has no kid; a kid on an HS256 token is not
		// looked up among the public keys.
		if a.secret == nil {
			return nil, errAlgorithm
		}
		return a.secret, nil
	case jwt.SigningMethodRS256, jwt.SigningMethodES256:
		alg := t.Method.Alg()
		if raw, ok := t.Header["kid"]; ok {
			kid, _ := raw.(string)
			k, ok := a.byKid[kid]
			if !ok && a.jwks != nil {
				return a.jwks.key(ctx, kid, alg)
			}
			if !ok {
				return nil, errUnknownKey
			}
			if k.alg != alg {
				return nil, errKeyAlgorithm
			}
			return k.pub, nil
		}
		set := a.byAlg[alg]
		if a.jwks != nil {
			set = append(slices.Clip(set), a.jwks.keysFor(ctx, alg)...)
		}
		if len(set) == 0 {
			return nil, errAlgorithm
		}
		return jwt.VerificationKeySet{Keys: set}, nil
	}
	return nil, errAlgorithm
}

// describe turns a parse error into a fixed description for the client.
func describe(err error) string {
	for _, d := range []struct {
		err  error
		desc string
	}{
		{errCritical, errCritical.Error()},
		{errUnknownKey, "unknown key"},
		{errKeyAlgorithm, errKeyAlgorithm.Error()},
		{errAlgorithm, errAlgorithm.Error()},
		{jwt.ErrTokenMalformed, "malformed token"},
		{jwt.ErrTokenSignatureInvalid, "invalid signature"},
		// Left after the keyfunc errors: an absent or unknown alg.
		{jwt.ErrTokenUnverifiable, errAlgorithm.Error()},
		{jwt.ErrTokenRequiredClaimMissing, "token has no exp claim"},
		// Before the time checks: a time claim that is not a number.
		{jwt.ErrInvalidType, "a registered claim has the wrong type (exp, nbf and iat must be numbers)"},
		{jwt.ErrTokenInvalidIssuer, "wrong issuer"},
		{jwt.ErrTokenInvalidAudience, "wrong audience"},
		{jwt.ErrTokenExpired, "token expired"},
		{jwt.ErrTokenNotValidYet, "token not valid yet"},
		{jwt.ErrTokenUsedBeforeIssued, "token issued in the future"},
	} {
		if errors.Is(err, d.err) {
			return d.desc
		}
	}
	return "invalid token"
}
