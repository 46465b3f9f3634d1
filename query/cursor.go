package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// MinSecretLen is the shortest cursor secret accepted: 256 bits, the
// size of the HMAC-SHA256 key.
const MinSecretLen = 32

const (
	tokenVersion = 1
	macLen       = 16 // truncated HMAC-SHA256: 128 bits is ample for a forgery bound
	// sortKeyTimeLen is the fixed width of the time part of activity.SortKey.
	sortKeyTimeLen = len("2006-01-02T15:04:05.000000000Z")
	maxSortKeyID   = 128
	maxSortKeyLen  = sortKeyTimeLen + 1 + maxSortKeyID
	// maxTokenLen bounds the work done on client input before the MAC check.
	maxTokenLen = (1 + maxSortKeyLen + macLen + 2) * 4 / 3
	// keyLabel separates the cursor key from any other use of the secret.
	keyLabel = "activityhistory/query cursor v1"
)

// sortKeyTime must stay the layout of activity.SortKey.
const sortKeyTime = "2006-01-02T15:04:05.000000000Z"

var tokenEncoding = base64.RawURLEncoding.Strict()

// TokenError says why a pagination token was refused. Clients only ever
// see that it is invalid; the reason is for logs.
type TokenError struct {
	Reason string
}

func (e *TokenError) Error() string { return "invalid pagination token: " + e.Reason }

// Cursors makes and checks pagination tokens. A token carries the sort key
// of the last item of a page and a MAC over it and the target id, so it
// cannot be forged, altered, or replayed against another target.
type Cursors struct {
	key []byte
}

// NewCursors returns Cursors keyed by secret, which must be at least
// MinSecretLen bytes and the same on every query process.
func NewCursors(secret []byte) (*Cursors, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cursor secret is %d bytes; at least %d are required", len(secret), MinSecretLen)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(keyLabel))
	return &Cursors{key: m.Sum(nil)}, nil
}

// Encode returns the token that continues targetID's history below
// sortKey (the activity.SortKey of the last item served).
//
// Token bytes: version | sortKey | mac[:16], base64url without padding.
// The target id is covered by the MAC but not carried.
func (cs *Cursors) Encode(targetID, sortKey string) string {
	raw := make([]byte, 0, 1+len(sortKey)+macLen)
	raw = append(raw, tokenVersion)
	raw = append(raw, sortKey...)
	raw = append(raw, cs.mac(targetID, sortKey)...)
	return tokenEncoding.EncodeToString(raw)
}

// Decode checks token against targetID and returns its sort key. Any
// problem gives a *TokenError.
func (cs *Cursors) Decode(targetID, token string) (string, error) {
	if len(token) > maxTokenLen {
		return "", &TokenError{Reason: fmt.Sprintf("%d characters long", len(token))}
	}
	// The decoder skips \r and \n; refuse them so one token has one spelling.
	if strings.ContainsAny(token, "\r\n") {
		return "", &TokenError{Reason: "contains a line break"}
	}
	raw, err := tokenEncoding.DecodeString(token)
	if err != nil {
		return "", &TokenError{Reason: "not base64url"}
	}
	if len(raw) < 1+macLen+1 {
		return "", &TokenError{Reason: "too short"}
	}
	if raw[0] != tokenVersion {
		return "", &TokenError{Reason: fmt.Sprintf("unknown version %d", raw[0])}
	}
	sortKey := string(raw[1 : len(raw)-macLen])
	if !hmac.Equal(raw[len(raw)-macLen:], cs.mac(targetID, sortKey)) {
		return "", &TokenError{Reason: "bad mac (forged, altered, other target or other secret)"}
	}
	// Only our encoder can get here; checking the shape guards against an
	// encoder bug sending a bad bound to the read model.
	if err := checkSortKey(sortKey); err != nil {
		return "", &TokenError{Reason: err.Error()}
	}
	return sortKey, nil
}

func (cs *Cursors) mac(targetID, sortKey string) []byte {
	m := hmac.New(sha256.New, cs.key)
	var hdr [1 + binary.MaxVarintLen64]byte
	hdr[0] = tokenVersion
	n := binary.PutUvarint(hdr[1:], uint64(len(targetID)))
	// Length-prefixed so that (target, key) pairs cannot run into each other.
	m.Write(hdr[:1+n])
	m.Write([]byte(targetID))
	m.Write([]byte(sortKey))
	return m.Sum(nil)[:macLen]
}

// checkSortKey accepts what activity.Activity.SortKey produces.
func checkSortKey(k string) error {
	if len(k) < sortKeyTimeLen+2 || len(k) > maxSortKeyLen || k[sortKeyTimeLen] != '|' {
		return fmt.Errorf("sort key %q has the wrong shape", k)
	}
	if _, err := time.Parse(sortKeyTime, k[:sortKeyTimeLen]); err != nil {
		return fmt.Errorf("sort key %q has a bad time", k)
	}
	if strings.ContainsFunc(k[sortKeyTimeLen+1:], func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return fmt.Errorf("sort key %q has a bad id", k)
	}
	return nil
}
