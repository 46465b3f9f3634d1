package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// FoldedEngine is a gin engine whose requests under Prefix are matched
// case-insensitively (the pilot's frontend calls /api/v1/activityhistory).
// gin matches paths case-sensitively and can only fix them by redirecting,
// which costs API clients a round trip and may lose the method or body;
// rewriting before routing keeps one set of routes, so metrics and logs
// see the canonical route.
type FoldedEngine struct {
	*gin.Engine
	Prefix string
}

// ServeHTTP routes r after spelling a case-variant of Prefix canonically.
func (e *FoldedEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.Engine.ServeHTTP(w, FoldPath(r, e.Prefix))
}

// Handler returns e itself, so code asking gin for its handler keeps the
// folding.
func (e *FoldedEngine) Handler() http.Handler { return e }

// FoldPath returns r with a path starting with prefix in any ASCII case
// (at a segment boundary) rewritten to start with prefix exactly.
func FoldPath(r *http.Request, prefix string) *http.Request {
	p, ok := foldPrefix(r.URL.Path, prefix)
	if !ok {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path = p
	u.RawPath = ""
	if raw, ok := foldPrefix(r.URL.RawPath, prefix); ok {
		u.RawPath = raw
	}
	r2.URL = &u
	return r2
}

// foldPrefix reports whether p starts with a case-variant of prefix that is
// not already spelled canonically. Only ASCII letters fold: Unicode folding
// would let "ſ" stand for "s".
func foldPrefix(p, prefix string) (string, bool) {
	n := len(prefix)
	if len(p) < n || (len(p) > n && p[n] != '/') || p[:n] == prefix || !asciiEqualFold(p[:n], prefix) {
		return p, false
	}
	return prefix + p[n:], true
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}
