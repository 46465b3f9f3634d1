package httpapi

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"
)

// FoldedEngine is a gin engine that routes the way the pilot did: every
// route matches whatever the case of its literal segments, with or without
// one trailing slash (the pilot's frontend calls /api/v1/activityhistory,
// its health check is spelt /api/v1/HealthCheck/Ping), and HEAD wherever
// GET is routed. gin matches paths exactly and can only fix them by
// redirecting, which costs API clients a round trip and may lose the method
// or body; rewriting before routing keeps one set of routes, so metrics and
// logs see the canonical route.
type FoldedEngine struct {
	*gin.Engine

	once   sync.Once
	routes [][]string      // the engine's paths split on "/", literal first
	exact  map[string]bool // the paths without parameters, spelled as registered
}

// Fold wraps e. Add routes to e before serving the first request: the
// spellings are learnt then.
func Fold(e *gin.Engine) *FoldedEngine { return &FoldedEngine{Engine: e} }

// ServeHTTP routes r after spelling its path canonically.
func (e *FoldedEngine) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.once.Do(e.learnRoutes)
	r = e.canonical(r)
	if r.Method == http.MethodHead {
		r, w = asGet(r, w)
	}
	e.Engine.ServeHTTP(w, r)
}

// Handler returns e itself, so code asking gin for its handler keeps the
// folding.
func (e *FoldedEngine) Handler() http.Handler { return e }

func (e *FoldedEngine) learnRoutes() {
	seen := map[string]bool{}
	e.exact = map[string]bool{}
	for _, ri := range e.Routes() {
		if !strings.ContainsAny(ri.Path, ":*") {
			e.exact[ri.Path] = true
		}
		if !seen[ri.Path] {
			seen[ri.Path] = true
			e.routes = append(e.routes, strings.Split(ri.Path, "/"))
		}
	}
}

// canonical returns r with its path spelt as a route of the engine when it
// matches one only by case or by a trailing slash; otherwise r.
func (e *FoldedEngine) canonical(r *http.Request) *http.Request {
	p := r.URL.Path
	if e.exact[p] {
		return r // already the spelling gin routes: the common case, at no cost
	}
	full := strings.Split(p, "/")
	segs := full
	// The path as sent first (a catch-all takes a trailing slash as part
	// of its value), then without one trailing slash.
	best := e.bestRoute(segs)
	if best == nil && len(p) > 1 && strings.HasSuffix(p, "/") {
		segs = full[:len(full)-1]
		best = e.bestRoute(segs)
	}
	if best == nil {
		return r
	}
	canon := spell(segs, best)
	if canon == p {
		return r
	}
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = canon, ""
	if raw := r.URL.RawPath; raw != "" {
		// Keep the escapes of parameters.
		rawSegs := strings.Split(raw, "/")
		if len(rawSegs) == len(full) {
			u.RawPath = spell(rawSegs[:len(segs)], best)
		}
	}
	r2.URL = &u
	return r2
}

// bestRoute is the route segs match with the most literal segments, or nil.
func (e *FoldedEngine) bestRoute(segs []string) []string {
	var best []string
	bestLiteral := -1
	for _, route := range e.routes {
		if n, ok := matchRoute(route, segs); ok && n > bestLiteral {
			best, bestLiteral = route, n
		}
	}
	return best
}

// spell joins segs with the literal segments of route in its spelling.
func spell(segs, route []string) string {
	out := make([]string, len(segs))
	for i, seg := range segs {
		out[i] = seg
		if i < len(route) && isLiteral(route[i]) {
			out[i] = route[i]
		}
	}
	return strings.Join(out, "/")
}

// matchRoute reports whether segs match route, literal segments in any
// ASCII case (Unicode folding would let "ſ" stand for "s"), and how many
// literal segments matched: the most literal route wins, as in gin.
func matchRoute(route, segs []string) (literal int, ok bool) {
	for i, rs := range route {
		if strings.HasPrefix(rs, "*") {
			return literal, true // a catch-all takes the rest
		}
		if i >= len(segs) {
			return 0, false
		}
		if !isLiteral(rs) {
			if segs[i] == "" {
				return 0, false
			}
			continue
		}
		if !EqualFoldASCII(rs, segs[i]) {
			return 0, false
		}
		literal++
	}
	return literal, len(route) == len(segs)
}

func isLiteral(seg string) bool { return !strings.HasPrefix(seg, ":") && !strings.HasPrefix(seg, "*") }

type headKey struct{}

// asGet routes a HEAD request as the GET it mirrors; the body written is
// dropped (net/http drops it anyway; this also holds for test recorders).
func asGet(r *http.Request, w http.ResponseWriter) (*http.Request, http.ResponseWriter) {
	r2 := r.WithContext(context.WithValue(r.Context(), headKey{}, true))
	r2.Method = http.MethodGet
	return r2, headWriter{w}
}

// Method is the request's method as the client sent it: HEAD for a HEAD
// request routed as GET.
func Method(c *gin.Context) string {
	if head, _ := c.Request.Context().Value(headKey{}).(bool); head {
		return http.MethodHead
	}
	return c.Request.Method
}

type headWriter struct{ http.ResponseWriter }

func (w headWriter) Write(b []byte) (int, error) { return len(b), nil }

func (w headWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// EqualFoldASCII reports whether a and b are equal ignoring ASCII case.
func EqualFoldASCII(a, b string) bool {
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
