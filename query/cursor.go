package query

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/council/activityhistory/activity"
)

// MinSecretLen is the shortest cursor secret accepted: 256 bits, the
// size of the HMAC-SHA256 key.
const MinSecretLen = 32

const (
	tokenVersion = 1
	macLen       = 16 // truncated HMAC-SHA256: 128 bits is ample for a forgery bound
	// sortKeyTimeLen is the fixed width of the time part of activity.SortKey.
	sortKeyTimeLen = len(activity.SortKeyTime)
	maxSortKeyID   = 128
	maxSortKeyLen  = sortKeyTimeLen + 1 + maxSortKeyID
	// maxTokenLen bounds the work done on client input before the MAC check.
	maxTokenLen = (1 + maxSortKeyLen + macLen + 2) * 4 / 3
	// keyLabel separates the cursor key from any other use of the secret.
	keyLabel = "activityhistory/query cursor v1"
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// TokenError says why a pagination token was refused. Clients only ever
// see that it is invalid; the reason is for logs.
type TokenError struct {
	Reason string
}

func (e *TokenError) Error() string { return "invalid pagination token: " + e.Reason }

// Token kinds: the first byte of a token and of its MAC input, so that a
// token of one kind is never accepted as another.
const (
	kindHistory         = tokenVersion // a history page, unfiltered
	kindFilteredHistory = 2            // a history page, bound to its filter too
	kindPosition        = 3            // a position in a scope (export, replay)
)

// Cursors makes and checks pagination tokens. A history token carries the
// sort key of the last item of a page and a MAC over it, the target id and
// the filter, so it cannot be forged, altered, or replayed against another
// target or other filters. Position tokens do the same for a number within
// a scope named by their user.
type Cursors struct {
	key  []byte
	macs sync.Pool // of keyed HMAC-SHA256 hashes, reset between uses
	// Recent history tokens, made or checked: a hot target's page is asked
	// for again and again, each time wanting the same token made or read.
	sealed, opened tokenMemo
}

// tokenMemo remembers recent history tokens in a fixed table indexed by a
// hash of the lookup key: a slot holds the last one that hashed to it, so
// the memo is bounded and a lookup takes no lock.
type tokenMemo struct {
	seed  maphash.Seed
	slots [256]atomic.Pointer[memoToken]
}

// memoToken is a history token and what it stands for.
type memoToken struct {
	targetID, filter, sortKey, token string
}

// slot is where the token of key is kept; key is its sort key in sealed,
// the token in opened.
func (m *tokenMemo) slot(targetID, filter, key string) *atomic.Pointer[memoToken] {
	var h maphash.Hash
	h.SetSeed(m.seed)
	h.WriteString(targetID)
	h.WriteByte(0)
	h.WriteString(filter)
	h.WriteByte(0)
	h.WriteString(key)
	return &m.slots[h.Sum64()%uint64(len(m.slots))]
}

// NewCursors returns Cursors keyed by secret, which must be at least
// MinSecretLen bytes and the same on every query process.
func NewCursors(secret []byte) (*Cursors, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cursor secret is %d bytes; at least %d are required", len(secret), MinSecretLen)
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(keyLabel))
	cs := &Cursors{key: m.Sum(nil), sealed: tokenMemo{seed: maphash.MakeSeed()}, opened: tokenMemo{seed: maphash.MakeSeed()}}
	cs.macs.New = func() any { return hmac.New(sha256.New, cs.key) }
	return cs, nil
}

// Encode returns the token that continues targetID's unfiltered history
// below sortKey (the activity.SortKey of the last item served).
//
// Token bytes: kind | sortKey | mac[:16], base64url without padding.
// The target id (and filter) are covered by the MAC but not carried.
func (cs *Cursors) Encode(targetID, sortKey string) string {
	return cs.EncodeIn(targetID, "", sortKey)
}

// Decode checks an unfiltered history token against targetID and returns
// its sort key. Any problem gives a *TokenError.
func (cs *Cursors) Decode(targetID, token string) (string, error) {
	return cs.DecodeIn(targetID, "", token)
}

// EncodeIn is Encode for the history of targetID under a filter, given in
// its canonical form (activity.Filter.String; "" for none).
func (cs *Cursors) EncodeIn(targetID, filter, sortKey string) string {
	slot := cs.sealed.slot(targetID, filter, sortKey)
	if t := slot.Load(); t != nil && t.sortKey == sortKey && t.targetID == targetID && t.filter == filter {
		return t.token
	}
	kind, scope := historyScope(targetID, filter)
	token := cs.seal(kind, scope, sortKey)
	slot.Store(&memoToken{targetID: targetID, filter: filter, sortKey: sortKey, token: token})
	return token
}

// DecodeIn is Decode for a token issued by EncodeIn with the same filter.
func (cs *Cursors) DecodeIn(targetID, filter, token string) (string, error) {
	slot := cs.opened.slot(targetID, filter, token)
	if t := slot.Load(); t != nil && t.token == token && t.targetID == targetID && t.filter == filter {
		return t.sortKey, nil // checked before, for this target and filter
	}
	sortKey, err := cs.decodeIn(targetID, filter, token)
	if err == nil {
		slot.Store(&memoToken{targetID: targetID, filter: filter, sortKey: sortKey, token: token})
	}
	return sortKey, err
}

func (cs *Cursors) decodeIn(targetID, filter, token string) (string, error) {
	kind, scope := historyScope(targetID, filter)
	sortKey, err := cs.open(kind, scope, token, maxTokenLen)
	if err != nil {
		return "", err
	}
	// Only our encoder can get here; checking the shape guards against an
	// encoder bug sending a bad bound to the read model.
	if err := checkSortKey(sortKey); err != nil {
		return "", &TokenError{Reason: err.Error()}
	}
	return sortKey, nil
}

func historyScope(targetID, filter string) (byte, []string) {
	if filter == "" {
		return kindHistory, []string{targetID}
	}
	return kindFilteredHistory, []string{targetID, filter}
}

// EncodePosition returns a token carrying pos, bound to scope (a string
// naming what the position is in, and under which filters).
func (cs *Cursors) EncodePosition(scope string, pos uint64) string {
	return cs.seal(kindPosition, []string{scope}, strconv.FormatUint(pos, 10))
}

// DecodePosition checks a token of EncodePosition against scope.
func (cs *Cursors) DecodePosition(scope, token string) (uint64, error) {
	s, err := cs.open(kindPosition, []string{scope}, token, maxPositionTokenLen)
	if err != nil {
		return 0, err
	}
	pos, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, &TokenError{Reason: "bad position"}
	}
	return pos, nil
}

// maxPositionTokenLen bounds a position token: 20 digits.
const maxPositionTokenLen = (1 + 20 + macLen + 2) * 4 / 3

func (cs *Cursors) seal(kind byte, scope []string, payload string) string {
	raw := make([]byte, 0, 1+len(payload)+macLen)
	raw = append(raw, kind)
	raw = append(raw, payload...)
	raw = append(raw, cs.mac(kind, scope, payload)...)
	return tokenEncoding.EncodeToString(raw)
}

func (cs *Cursors) open(kind byte, scope []string, token string, maxLen int) (string, error) {
	if len(token) > maxLen {
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
	if raw[0] != kind {
		return "", &TokenError{Reason: fmt.Sprintf("kind %d, want %d (another endpoint, or other filters)", raw[0], kind)}
	}
	payload := string(raw[1 : len(raw)-macLen])
	if !hmac.Equal(raw[len(raw)-macLen:], cs.mac(kind, scope, payload)) {
		return "", &TokenError{Reason: "bad mac (forged, altered, other target, other filters or other secret)"}
	}
	return payload, nil
}

// mac covers the kind, each scope part length-prefixed (so that parts
// cannot run into each other) and the payload. For an unfiltered history
// token this is the input of the first token version, which stays valid.
func (cs *Cursors) mac(kind byte, scope []string, payload string) []byte {
	m := cs.macs.Get().(hash.Hash)
	defer func() { m.Reset(); cs.macs.Put(m) }()
	m.Write([]byte{kind})
	var n [binary.MaxVarintLen64]byte
	for _, p := range scope {
		m.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		io.WriteString(m, p)
	}
	io.WriteString(m, payload)
	var sum [sha256.Size]byte
	return m.Sum(sum[:0])[:macLen]
}

// checkSortKey accepts what activity.Activity.SortKey produces.
func checkSortKey(k string) error {
	if len(k) < sortKeyTimeLen+2 || len(k) > maxSortKeyLen || k[sortKeyTimeLen] != '|' {
		return fmt.Errorf("sort key %q has the wrong shape", k)
	}
	if _, err := time.Parse(activity.SortKeyTime, k[:sortKeyTimeLen]); err != nil {
		return fmt.Errorf("sort key %q has a bad time", k)
	}
	if strings.ContainsFunc(k[sortKeyTimeLen+1:], func(r rune) bool { return r < 0x21 || r > 0x7e }) {
		return fmt.Errorf("sort key %q has a bad id", k)
	}
	return nil
}
