package auth

import (
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// maxCachedTokens bounds the verified tokens kept; past it the cache
// starts again empty (clients reuse a token for many requests, so the
// ones in use come back at once).
const maxCachedTokens = 4096

// tokenCache keeps the identities of tokens that verified, so that a
// token sent again is not parsed and its signature not checked again.
// The answer for a token depends only on the keys and the clock: an entry
// is used only inside the window the token's time claims (exp, nbf, iat,
// MaxTokenAge, with the skew) accept, and only while the keys are those it
// was verified with. Failures are not kept.
type tokenCache struct {
	mu      sync.RWMutex
	entries map[string]cachedToken
}

type cachedToken struct {
	id       Identity
	from     time.Time // accepted at or after
	until    time.Time // accepted before; zero = no bound
	keysSeen uint64    // the key sets' version it was verified with
}

// get returns the identity of token if it verified before and would
// verify now, with the keys at version keys.
func (tc *tokenCache) get(token string, now time.Time, keys uint64) (Identity, bool) {
	tc.mu.RLock()
	e, ok := tc.entries[token]
	tc.mu.RUnlock()
	if !ok || e.keysSeen != keys || now.Before(e.from) || (!e.until.IsZero() && !now.Before(e.until)) {
		return Identity{}, false
	}
	return e.id, true
}

// put keeps what verifying token with the keys at version keys gave.
func (tc *tokenCache) put(token string, id Identity, from, until time.Time, keys uint64) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.entries == nil || len(tc.entries) >= maxCachedTokens {
		tc.entries = make(map[string]cachedToken, 64)
	}
	tc.entries[token] = cachedToken{id: id, from: from, until: until, keysSeen: keys}
}

// window is when a token with these claims verifies, as the parser and
// checkAge judge it: from max(nbf, iat) - skew, until the sooner of
// exp + skew and iat + MaxTokenAge + skew (exclusive).
func (a *Authenticator) window(cl jwt.MapClaims) (from, until time.Time) {
	// The claims parsed already: these cannot fail now.
	if nbf, _ := cl.GetNotBefore(); nbf != nil {
		from = nbf.Add(-a.skew)
	}
	iat, _ := cl.GetIssuedAt()
	if iat != nil && iat.Add(-a.skew).After(from) {
		from = iat.Add(-a.skew)
	}
	if exp, _ := cl.GetExpirationTime(); exp != nil {
		until = exp.Add(a.skew)
	}
	if a.maxAge > 0 && iat != nil {
		// checkAge refuses once now - iat > maxAge + skew; stop just before.
		if u := iat.Add(a.maxAge + a.skew); until.IsZero() || u.Before(until) {
			until = u
		}
	}
	return from, until
}

// keysVersion moves whenever the verification keys may have changed.
func (a *Authenticator) keysVersion() uint64 {
	if a.jwks == nil {
		return 0 // the secret and PEM keys are fixed at New
	}
	return a.jwks.version.Load()
}
