package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// minRSABits refuses keys too weak to trust for signatures.
const minRSABits = 2048

// publicKey is one configured verification key.
type publicKey struct {
	kid string
	alg string // the one algorithm it verifies
	pub crypto.PublicKey
}

// parsePublicKeys reads every PEM block of data. Text around blocks is
// allowed (openssl prints some); a block that does not decode is an error,
// not something to skip.
func parsePublicKeys(data []byte) ([]publicKey, error) {
	begins := bytes.Count(data, []byte("-----BEGIN "))
	var keys []publicKey
	seen := map[string]bool{}
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		n := len(keys) + 1
		pub, err := blockKey(block)
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", n, block.Type, err)
		}
		k := publicKey{pub: pub}
		switch pk := pub.(type) {
		case *rsa.PublicKey:
			if pk.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("PEM block %d: RSA key of %d bits, need at least %d", n, pk.N.BitLen(), minRSABits)
			}
			k.alg = jwt.SigningMethodRS256.Alg()
		case *ecdsa.PublicKey:
			if pk.Curve != elliptic.P256() {
				return nil, fmt.Errorf("PEM block %d: EC key on %s, only P-256 (ES256) is supported", n, pk.Curve.Params().Name)
			}
			k.alg = jwt.SigningMethodES256.Alg()
		default:
			return nil, fmt.Errorf("PEM block %d: unsupported key type %T, want RSA or EC P-256", n, pub)
		}
		k.kid = block.Headers["kid"]
		if k.kid == "" {
			if k.kid, err = Thumbprint(pub); err != nil {
				return nil, fmt.Errorf("PEM block %d: %w", n, err)
			}
		}
		if seen[k.kid] {
			return nil, fmt.Errorf("PEM block %d: duplicate kid %q", n, k.kid)
		}
		seen[k.kid] = true
		keys = append(keys, k)
	}
	if begins > len(keys) {
		return nil, fmt.Errorf("%d of %d PEM blocks do not parse", begins-len(keys), begins)
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM block found")
	}
	return keys, nil
}

func blockKey(b *pem.Block) (crypto.PublicKey, error) {
	switch b.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(b.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(b.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	}
	// Private keys land here too: they do not belong in this file.
	return nil, errors.New("not a public key or certificate")
}

// Thumbprint is the RFC 7638 JWK SHA-256 thumbprint of an RSA or EC public
// key, base64url without padding: the kid of a PEM key without a kid header.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := base64.RawURLEncoding.EncodeToString
	var jwk string
	// Members in lexicographic order, no whitespace, as RFC 7638 requires.
	switch k := pub.(type) {
	case *rsa.PublicKey:
		e := big.NewInt(int64(k.E)).Bytes()
		jwk = fmt.Sprintf(`{"e":"%s","kty":"RSA","n":"%s"}`, b64(e), b64(k.N.Bytes()))
	case *ecdsa.PublicKey:
		point, err := k.Bytes()
		if err != nil {
			return "", fmt.Errorf("thumbprint: %w", err)
		}
		size := (len(point) - 1) / 2
		jwk = fmt.Sprintf(`{"crv":"%s","kty":"EC","x":"%s","y":"%s"}`,
			k.Curve.Params().Name, b64(point[1:1+size]), b64(point[1+size:]))
	default:
		return "", fmt.Errorf("thumbprint: unsupported key type %T", pub)
	}
	sum := sha256.Sum256([]byte(jwk))
	return b64(sum[:]), nil
}
