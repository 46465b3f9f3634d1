package auth

import (
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestThumbprintRFC7638(t *testing.T) {
	t.Parallel()
	// The example key of RFC 7638 section 3.1 and its thumbprint.
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	got, err := Thumbprint(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; got != want {
		t.Errorf("thumbprint %s, want %s", got, want)
	}
}

func selfSigned(t *testing.T, key any, pub any) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    testNow().Add(-time.Hour),
		NotAfter:     testNow().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestPEMFileWithCertificatesAndText(t *testing.T) {
	t.Parallel()
	ec := newEC(t, elliptic.P256())
	rsaKey := newRSA(t, 2048)
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Headers: map[string]string{"kid": "legacy"},
		Bytes: x509.MarshalPKCS1PublicKey(&rsaKey.PublicKey)})
	data := slices.Concat(
		[]byte("issuer signing certificate, as printed by openssl\n"),
		selfSigned(t, ec, &ec.PublicKey),
		[]byte("\n# older key\n"),
		pkcs1,
	)
	a := newAuth(t, Config{PublicKeysPEM: data})
	ecKid, err := Thumbprint(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if got := a.KeyIDs(); !slices.Equal(got, []string{ecKid, "legacy"}) {
		t.Errorf("kids %v, want [%s legacy]", got, ecKid)
	}
	for _, tok := range []string{
		sign(t, jwt.SigningMethodES256, ec, ecKid, user([]string{"readers"}, nil)),
		sign(t, jwt.SigningMethodES256, ec, "", user([]string{"readers"}, nil)),
		sign(t, jwt.SigningMethodRS256, rsaKey, "legacy", user([]string{"readers"}, nil)),
	} {
		if _, err := a.verify(tok); err != nil {
			t.Errorf("token from a configured key: %v", err)
		}
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	good := newTestKeys(t)
	weak := newRSA(t, 1024)
	p384 := newEC(t, elliptic.P384())
	privDER, err := x509.MarshalPKCS8PrivateKey(good.ec)
	if err != nil {
		t.Fatal(err)
	}
	private := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER})
	truncated := good.pem[:len(good.pem)-40]
	dup := slices.Concat(pemKey(t, &good.ec.PublicKey, map[string]string{"kid": "k"}),
		pemKey(t, &good.rsa.PublicKey, map[string]string{"kid": "k"}))
	corrupt := strings.Replace(string(pemKey(t, &good.ec.PublicKey, nil)), "A", "*", 3)

	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"nothing configured", Config{}, "no HMAC secret, no public keys and no JWKS URL"},
		{"groups only", Config{ReadGroups: []string{"r"}}, "no HMAC secret, no public keys and no JWKS URL"},
		{"short secret", Config{HMACSecret: []byte("too-short")}, "HMAC secret is 9 bytes, need at least 32"},
		{"negative skew", Config{HMACSecret: []byte(testSecret), Skew: -time.Second}, "negative clock skew"},
		{"not PEM", Config{PublicKeysPEM: []byte("hello")}, "no PEM block found"},
		{"garbage in a block", Config{PublicKeysPEM: []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")},
			"PEM block 1 (PUBLIC KEY)"},
		{"corrupt base64", Config{PublicKeysPEM: []byte(corrupt)}, "1 of 1 PEM blocks do not parse"},
		{"truncated second block", Config{PublicKeysPEM: truncated}, "1 of 2 PEM blocks do not parse"},
		{"private key", Config{PublicKeysPEM: private}, "not a public key or certificate"},
		{"weak RSA", Config{PublicKeysPEM: pemKey(t, &weak.PublicKey, nil)}, "RSA key of 1024 bits"},
		{"P-384", Config{PublicKeysPEM: pemKey(t, &p384.PublicKey, nil)}, "only P-256"},
		{"duplicate kid", Config{PublicKeysPEM: dup}, `duplicate kid "k"`},
		{"negative max age", Config{HMACSecret: []byte(testSecret), MaxTokenAge: -time.Second}, "negative maximum token age"},
		{"JWKS URL not http", Config{JWKSURLs: []string{"file:///etc/passwd"}}, "want https://"},
		{"bad PEM next to a good secret", Config{HMACSecret: []byte(testSecret), PublicKeysPEM: []byte("x")}, "no PEM block found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, err := New(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, %v; want an error containing %q", a, err, tc.want)
			}
		})
	}
}

func TestNewAccepts(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{
		{Disabled: true},
		{Disabled: true, HMACSecret: []byte("short")},
		{HMACSecret: []byte(testSecret)},
		{HMACSecret: make([]byte, MinSecretLen)},
	} {
		if _, err := New(cfg); err != nil {
			t.Errorf("New(%+v): %v", cfg, err)
		}
	}
}

// The secret is copied: changing the caller's slice changes nothing.
func TestSecretCopied(t *testing.T) {
	t.Parallel()
	secret := []byte(testSecret)
	a := newAuth(t, Config{HMACSecret: secret})
	tok := mint(t, "readers")
	secret[0] ^= 1
	if _, err := a.verify(tok); err != nil {
		t.Errorf("after changing the caller's slice: %v", err)
	}
}
