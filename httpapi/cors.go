package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// CORS wraps h: it answers preflight requests and marks responses readable
// by the allowed origins ("*" allows any). x-correlation-id is exposed so
// that browser clients can quote it to support. It wraps the whole handler
// rather than sitting in gin, because preflights match no route.
func CORS(origins []string, h http.Handler) http.Handler {
	anyOrigin := slices.Contains(origins, "*")
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	const (
		methods = "GET, POST, OPTIONS"
		headers = "Authorization, Content-Type, x-correlation-id, traceparent"
		expose  = "x-correlation-id, X-Activity-Position, Location, WWW-Authenticate"
	)
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
			hd.Set("Access-Control-Allow-Headers", headers)
			hd.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.ServeHTTP(w, r)
	})
}
