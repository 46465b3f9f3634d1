package auth

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

const (
	// DefaultJWKSRefresh is how often key sets are fetched again.
	DefaultJWKSRefresh = time.Hour
	// DefaultJWKSMinRefresh bounds the fetches an unknown kid causes, so
	// that tokens with made-up kids cannot hammer the key set's host.
	DefaultJWKSMinRefresh = 30 * time.Second
	// jwksTimeout bounds one fetch, also the first one at start.
	jwksTimeout = 5 * time.Second
)

// keySet is the keys published at the JWKS URLs, cached by jwkset.
type keySet struct {
	client jwkset.Storage
	status []*fetchStatus
	cancel context.CancelFunc
	// version moves at every fetch stored: tokens verified before are
	// verified again (a key may have gone).
	version atomic.Uint64
}

// fetchStatus is what is known of one URL's last fetch, for readiness.
type fetchStatus struct {
	url    string
	mu     sync.Mutex
	loaded bool // a fetch succeeded
	keys   int  // usable keys in the last good fetch
	err    error
}

func (s *fetchStatus) succeeded(keys int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loaded, s.keys, s.err = true, keys, nil
}

func (s *fetchStatus) failed(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// problem says why the URL's keys cannot verify tokens, or nil.
func (s *fetchStatus) problem() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !s.loaded && s.err != nil:
		return fmt.Errorf("JWKS %s not fetched yet: %w", s.url, s.err)
	case !s.loaded:
		return fmt.Errorf("JWKS %s not fetched yet", s.url)
	case s.keys == 0:
		return fmt.Errorf("JWKS %s holds no usable RS256/ES256 key", s.url)
	}
	return nil
}

// statusStorage tells its fetchStatus of every key set jwkset stores: a
// successful fetch replaces all keys.
type statusStorage struct {
	jwkset.Storage
	status  *fetchStatus
	version *atomic.Uint64
}

func (s statusStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	defer s.version.Add(1)
	if err := s.Storage.KeyReplaceAll(ctx, given); err != nil {
		return err
	}
	usable := 0
	for _, k := range given {
		if _, err := jwkPublicKey(k); err == nil {
			usable++
		}
	}
	s.status.succeeded(usable)
	return nil
}

func newKeySet(cfg Config) (*keySet, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ks := &keySet{cancel: cancel}
	client := cfg.JWKSClient
	if client == nil {
		client = &http.Client{Timeout: jwksTimeout}
	}
	urls := map[string]jwkset.Storage{}
	for _, u := range cfg.JWKSURLs {
		if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
			cancel()
			return nil, fmt.Errorf("JWKS URL %q: want https://", u)
		}
		st := &fetchStatus{url: u}
		ks.status = append(ks.status, st)
		// The service starts while the host is unreachable: tokens are
		// 401 and readiness says why until a fetch succeeds.
		s, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
			Client:                    client,
			Ctx:                       ctx,
			HTTPTimeout:               jwksTimeout,
			NoErrorReturnFirstHTTPReq: true,
			RefreshErrorHandler:       func(_ context.Context, err error) { st.failed(err) },
			RefreshInterval:           cmp.Or(cfg.JWKSRefresh, DefaultJWKSRefresh),
			Storage:                   statusStorage{Storage: jwkset.NewMemoryStorage(), status: st, version: &ks.version},
		})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("JWKS URL %q: %w", u, err)
		}
		urls[u] = s
	}
	c, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs: urls,
		// A request never waits long for its turn to refresh: if the
		// limiter has no refresh to give within this, the kid is unknown.
		RateLimitWaitMax:  jwksTimeout,
		RefreshUnknownKID: rate.NewLimiter(rate.Every(cmp.Or(cfg.JWKSMinRefresh, DefaultJWKSMinRefresh)), 1),
	})
	if err != nil {
		cancel()
		return nil, err
	}
	ks.client = c
	return ks, nil
}

func (ks *keySet) close() { ks.cancel() }

func (ks *keySet) ready() error {
	var errs []error
	for _, s := range ks.status {
		if err := s.problem(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// key is the public key kid names for alg, fetching the key sets again
// (rate-limited) when kid is unknown: the issuer may have rotated.
func (ks *keySet) key(ctx context.Context, kid, alg string) (crypto.PublicKey, error) {
	k, err := ks.client.KeyRead(ctx, kid)
	if err != nil {
		return nil, errUnknownKey
	}
	if m := k.Marshal(); (m.USE != "" && m.USE != jwkset.UseSig) || (m.ALG != "" && string(m.ALG) != alg) {
		return nil, errKeyAlgorithm
	}
	pub, err := jwkPublicKey(k)
	if err != nil || keyAlg(pub) != alg {
		return nil, errKeyAlgorithm
	}
	return pub, nil
}

// keysFor lists the keys that verify alg, for tokens without a kid.
func (ks *keySet) keysFor(ctx context.Context, alg string) []jwt.VerificationKey {
	all, err := ks.client.KeyReadAll(ctx)
	if err != nil {
		return nil
	}
	var out []jwt.VerificationKey
	for _, k := range all {
		m := k.Marshal()
		if (m.USE != "" && m.USE != jwkset.UseSig) || (m.ALG != "" && string(m.ALG) != alg) {
			continue
		}
		if pub, err := jwkPublicKey(k); err == nil && keyAlg(pub) == alg {
			out = append(out, pub)
		}
	}
	return out
}

// jwkPublicKey is the public half of a JWK the service can verify with:
// RSA of minRSABits or more, or EC P-256.
func jwkPublicKey(k jwkset.JWK) (crypto.PublicKey, error) {
	var pub crypto.PublicKey
	switch key := k.Key().(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey:
		pub = key
	case *rsa.PrivateKey:
		pub = &key.PublicKey
	case *ecdsa.PrivateKey:
		pub = &key.PublicKey
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if keyAlg(pub) == "" {
		return nil, errors.New("weak RSA key or EC curve other than P-256")
	}
	return pub, nil
}

// keyAlg is the one algorithm pub verifies, "" when none.
func keyAlg(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() >= minRSABits {
			return jwt.SigningMethodRS256.Alg()
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return jwt.SigningMethodES256.Alg()
		}
	}
	return ""
}
