// Package authtest is the auth package's test kit: a real JWKS endpoint
// whose keys a test can rotate, and whose host a test can take down.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/MicahParks/jwkset"
)

// JWKS serves RSA public keys by kid as a JWK Set over HTTP, as Cognito
// publishes its signing keys.
type JWKS struct {
	*httptest.Server
	mu      sync.Mutex
	keys    map[string]*rsa.PrivateKey
	down    atomic.Bool
	fetches atomic.Int64
}

// NewJWKS serves keys until the test ends.
func NewJWKS(tb testing.TB, keys map[string]*rsa.PrivateKey) *JWKS {
	tb.Helper()
	j := &JWKS{keys: keys}
	j.Server = httptest.NewServer(http.HandlerFunc(j.serve))
	tb.Cleanup(j.Close)
	return j
}

func (j *JWKS) serve(w http.ResponseWriter, _ *http.Request) {
	j.fetches.Add(1)
	if j.down.Load() {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for kid, k := range j.keys {
		jwk, err := jwkset.NewJWKFromKey(&k.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{
			KID: kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(set)
}

// Rotate replaces the published keys.
func (j *JWKS) Rotate(keys map[string]*rsa.PrivateKey) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.keys = keys
}

// SetDown makes the endpoint answer 503 (down) or the keys again.
func (j *JWKS) SetDown(down bool) { j.down.Store(down) }

// Fetches counts the requests the endpoint has had.
func (j *JWKS) Fetches() int64 { return j.fetches.Load() }

// RSAKey is a new 2048-bit signing key.
func RSAKey(tb testing.TB) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}
