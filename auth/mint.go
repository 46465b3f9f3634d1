package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// MintClaims are the claims of a minted token.
type MintClaims struct {
	Subject string
	Name    string
	Email   string
	Groups  []string
	TTL     time.Duration
}

// Mint signs an HS256 token valid from now for claims.TTL, shaped like the
// council's user tokens. For development and tests.
func Mint(secret []byte, claims MintClaims, now time.Time) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("mint: HMAC secret is %d bytes, need at least %d", len(secret), MinSecretLen)
	}
	if claims.TTL <= 0 {
		return "", errors.New("mint: TTL must be positive")
	}
	groups := claims.Groups
	if groups == nil {
		groups = []string{}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, tokenClaims(claims, groups, now))
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("mint: %w", err)
	}
	return s, nil
}

func tokenClaims(mc MintClaims, groups []string, now time.Time) claims {
	return claims{
		Groups: groups,
		Email:  mc.Email,
		Name:   mc.Name,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   mc.Subject,
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(mc.TTL)),
		},
	}
}
