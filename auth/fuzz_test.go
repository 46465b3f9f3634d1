package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzParseToken feeds arbitrary tokens to the verifier: it must not panic,
// must explain every rejection with one of its fixed descriptions, and
// may accept only tokens whose signature an independent check traces to a
// configured key.
func FuzzParseToken(f *testing.F) {
	keys := newTestKeys(f)
	a, err := New(Config{HMACSecret: []byte(testSecret), PublicKeysPEM: keys.pem, Now: testNow})
	if err != nil {
		f.Fatal(err)
	}
	readers := []string{"readers"}
	valid := []string{
		mint(f, "readers"),
		sign(f, jwt.SigningMethodRS256, keys.rsa, "rsa-1", user(readers, nil)),
		sign(f, jwt.SigningMethodRS256, keys.rsa, "", user(readers, nil)),
		sign(f, jwt.SigningMethodES256, keys.ec, keys.ecKid, user(readers, nil)),
		sign(f, jwt.SigningMethodES256, keys.ec, "", user(readers, nil)),
	}
	for _, tok := range valid {
		if _, err := a.verify(tok); err != nil {
			f.Fatalf("seed does not verify: %v", err)
		}
		f.Add(tok)
		head, _, _ := strings.Cut(tok, ".")
		f.Add(tok[:strings.LastIndexByte(tok, '.')] + ".")              // no signature
		f.Add(tok + "A")                                                // longer signature
		f.Add(head + ".e30." + tok[strings.LastIndexByte(tok, '.')+1:]) // other claims
	}
	for _, tok := range []string{
		"", ".", "..", "a.b.c", "not-a-jwt", "e30.e30.", "e30.e30.e30",
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", user(readers, nil)),
		sign(f, jwt.SigningMethodHS256, []byte("another-secret-of-thirty-two-bytes!"), "", user(readers, nil)),
		sign(f, jwt.SigningMethodHS256, keys.pem, "rsa-1", user(readers, nil)),
		sign(f, jwt.SigningMethodRS256, keys.otherRSA, "", user(readers, nil)),
		sign(f, jwt.SigningMethodRS256, keys.rsa, "nope", user(readers, nil)),
		sign(f, jwt.SigningMethodRS256, keys.rsa, keys.ecKid, user(readers, nil)),
		sign(f, jwt.SigningMethodHS256, []byte(testSecret), "", user(readers, func(c *claims) { c.ExpiresAt = nil })),
		sign(f, jwt.SigningMethodHS256, []byte(testSecret), "", jwt.MapClaims{"groups": 7, "exp": "soon"}),
	} {
		f.Add(tok)
	}

	descriptions := map[string]bool{
		"empty bearer token": true, "token too long": true, "unknown key": true, "malformed token": true,
		"invalid signature": true, "signing algorithm not accepted": true, "signing algorithm does not match the key": true,
		"token has no exp claim": true, "token expired": true, "token not valid yet": true,
		"token issued in the future": true, "invalid token": true, "unsupported critical header": true,
		"a registered claim has the wrong type (exp, nbf and iat must be numbers)": true, "invalid groups claim": true,
		"invalid name claim": true, "invalid email claim": true, "invalid sub claim": true,
	}
	f.Fuzz(func(t *testing.T, token string) {
		id, err := a.verify(token)
		if err != nil {
			var te *tokenError
			if !errors.As(err, &te) || !descriptions[te.desc] {
				t.Fatalf("rejection without a fixed description: %v", err)
			}
			return
		}
		if !signedByConfiguredKey(a, token) {
			t.Fatalf("accepted a token no configured key signed: %q (identity %+v)", token, id)
		}
	})
}

// signedByConfiguredKey checks token's signature with the standard library
// alone, against the secret and every public key.
func signedByConfiguredKey(a *Authenticator, token string) bool {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	rawHeader, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	sig, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	var header struct{ Alg string }
	if err1 != nil || err2 != nil || json.Unmarshal(rawHeader, &header) != nil {
		return false
	}
	signed := []byte(parts[0] + "." + parts[1])
	digest := sha256.Sum256(signed)
	switch header.Alg {
	case "HS256":
		mac := hmac.New(sha256.New, a.secret)
		mac.Write(signed)
		return a.secret != nil && hmac.Equal(sig, mac.Sum(nil))
	case "RS256":
		for _, k := range a.keys {
			if pub, ok := k.pub.(*rsa.PublicKey); ok && rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig) == nil {
				return true
			}
		}
	case "ES256":
		if len(sig) != 64 {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		for _, k := range a.keys {
			if pub, ok := k.pub.(*ecdsa.PublicKey); ok && ecdsa.Verify(pub, digest[:], r, s) {
				return true
			}
		}
	}
	return false
}

// The oracle itself must tell signed from unsigned, or the fuzz test
// proves nothing.
func TestSignedByConfiguredKeyOracle(t *testing.T) {
	t.Parallel()
	keys := newTestKeys(t)
	a := newAuth(t, Config{HMACSecret: []byte(testSecret), PublicKeysPEM: keys.pem})
	c := user([]string{"readers"}, func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(testNow().Add(-time.Hour)) })
	for _, tc := range []struct {
		token string
		want  bool
	}{
		{sign(t, jwt.SigningMethodHS256, []byte(testSecret), "", c), true},
		{sign(t, jwt.SigningMethodRS256, keys.rsa, "", c), true},
		{sign(t, jwt.SigningMethodES256, keys.ec, "", c), true},
		{sign(t, jwt.SigningMethodHS256, keys.pem, "", c), false},
		{sign(t, jwt.SigningMethodRS256, keys.otherRSA, "", c), false},
		{sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", c), false},
	} {
		if got := signedByConfiguredKey(a, tc.token); got != tc.want {
			t.Errorf("oracle says %v for a token, want %v", got, tc.want)
		}
	}
}
