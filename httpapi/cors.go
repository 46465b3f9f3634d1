package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// CORS wraps h: it answers preflight requests and marks responses readable
// by the allowed origins ("*" allows any). A preflight may ask for any
// request header, as the pilot allowed (its clients send x-api-key and
// x-amz-* headers), unless headers lists the allowed ones; "*" or nothing
// allows any. x-correlation-id is exposed so that browser clients can quote
// it to support. It wraps the whole handler rather than sitting in gin,
// because preflights match no route.
func CORS(origins, headers []string, h http.Handler) http.Handler {
	anyOrigin := slices.Contains(origins, "*")
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	anyHeader := len(headers) == 0 || slices.Contains(headers, "*")
	const (
		methods = "GET, HEAD, POST, OPTIONS"
		expose  = "x-correlation-id, X-Activity-Position, Location, WWW-Authenticate, Retry-After"
	)
	// Always allowed: what the API itself reads.
	base := "Authorization, Content-Type, x-correlation-id, traceparent"
	if !anyHeader {
		base = strings.Join(slices.Concat([]string{"Authorization", "Content-Type", "x-correlation-id", "traceparent"}, headers), ", ")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			h.ServeHTTP(w, r)
			return
		}
		hd := w.Header()
		hd.Add("Vary", "Origin")
		if !anyOrigin && !allowed[origin] {
			h.ServeHTTP(w, r)
			return
		}
		if anyOrigin {
			hd.Set("Access-Control-Allow-Origin", "*")
		} else {
			hd.Set("Access-Control-Allow-Origin", origin)
		}
		hd.Set("Access-Control-Expose-Headers", expose)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			hd.Set("Access-Control-Allow-Methods", methods)
			allow := base
			if asked := r.Header.Get("Access-Control-Request-Headers"); anyHeader && headerList(asked) {
				// "*" would not cover Authorization (Fetch standard):
				// name what was asked for.
				hd.Add("Vary", "Access-Control-Request-Headers")
				allow = asked
			}
			hd.Set("Access-Control-Allow-Headers", allow)
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// headerList reports whether s is a non-empty comma list of header names,
// safe to echo.
func headerList(s string) bool {
	if strings.TrimSpace(s) == "" || len(s) > 2048 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~, ", c) >= 0:
		default:
			return false
		}
	}
	return true
}
