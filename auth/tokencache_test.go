package auth

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// A token that verified once is not trusted past the window its time
// claims allow: the same token sent again is judged at the new time.
func TestVerifiedTokensAreJudgedAgainstTheClock(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64
	now := func() time.Time { return testNow().Add(time.Duration(offset.Load())) }
	a := newAuth(t, Config{HMACSecret: []byte(testSecret), Skew: time.Minute, MaxTokenAge: 2 * time.Hour, Now: now})
	tok := sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", user([]string{"readers"}, func(c *claims) {
		c.NotBefore = jwt.NewNumericDate(testNow().Add(-10 * time.Second))
		c.IssuedAt = jwt.NewNumericDate(testNow().Add(-10 * time.Second))
		c.ExpiresAt = jwt.NewNumericDate(testNow().Add(time.Hour))
	}))
	at := func(d time.Duration, wantErr string) {
		t.Helper()
		offset.Store(int64(d))
		for range 2 { // the second answer may come from the cache
			_, err := a.verify(tok)
			switch {
			case wantErr == "" && err != nil:
				t.Fatalf("at %s: %v", d, err)
			case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
				t.Fatalf("at %s: %v, want %q", d, err, wantErr)
			}
		}
	}
	at(0, "")
	at(time.Hour+59*time.Second, "")
	at(time.Hour+time.Minute+time.Second, "token expired")
	at(0, "")
	at(-71*time.Second, "token not valid yet")
	at(0, "")

	// MaxTokenAge, sooner than exp here.
	b := newAuth(t, Config{HMACSecret: []byte(testSecret), MaxTokenAge: 30 * time.Minute, Skew: time.Minute, Now: now})
	offset.Store(0)
	if _, err := b.verify(tok); err != nil {
		t.Fatal(err)
	}
	offset.Store(int64(32 * time.Minute))
	if _, err := b.verify(tok); err == nil || !strings.Contains(err.Error(), "older than the maximum token age") {
		t.Fatalf("past MaxTokenAge: %v", err)
	}
}

func TestTokenCacheIsBounded(t *testing.T) {
	t.Parallel()
	var tc tokenCache
	for i := range maxCachedTokens + 10 {
		tc.put(strings.Repeat("x", i), Identity{}, time.Time{}, time.Time{}, 0)
	}
	if n := len(tc.entries); n > maxCachedTokens {
		t.Fatalf("%d tokens kept; want at most %d", n, maxCachedTokens)
	}
	if _, ok := tc.get(strings.Repeat("x", maxCachedTokens+9), testNow(), 1); ok {
		t.Fatal("a token verified with other keys was taken from the cache")
	}
}
