// Package ui serves the history timeline: a browser page, embedded in the
// binary, that finds a target, scrolls its history, shows what each
// activity changed and lets auditors verify a stream. It is plain HTML,
// CSS and JavaScript modules calling the query API; nothing is built.
package ui

import (
	"embed"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/httpapi"
)

// The page's files are fixed at build time; they are read, never written.
//
//go:embed static
var files embed.FS

// ContentSecurityPolicy is the policy of the page and its files: scripts and
// styles only from this server, no inline script or style attribute, calls
// only to this server.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// AuthMode says how the page gets its bearer token.
type AuthMode string

// The modes.
const (
	// AuthBearer: the user pastes a token, or a gateway injects the header.
	AuthBearer AuthMode = "bearer"
	// AuthDev: development auth; the page is handed a token (see Options.DevToken).
	AuthDev AuthMode = "dev"
	// AuthDisabled: the API asks for no token.
	AuthDisabled AuthMode = "disabled"
)

// Options configure the page.
type Options struct {
	// Auth is how the page gets its token; empty means AuthBearer.
	Auth AuthMode
	// DevToken mints a token for the page in AuthDev mode, with its expiry.
	DevToken func() (token string, expires time.Time, err error)
}

// Config is what GET /ui/config.json tells the page.
type Config struct {
	Auth AuthMode `json:"auth"`
	// Token and Expires are set in development auth mode only, and only for
	// a same-origin request from this machine.
	Token   string     `json:"token,omitempty"`
	Expires *time.Time `json:"expires,omitempty"`
}

// Mount registers the page on r:
//
//	GET /ui                 redirect to /ui/
//	GET /ui/                the page; its state is in the query string
//	GET /ui/config.json     how the page authenticates
//	GET /ui/{file}          the page's scripts, styles and icon
//
// Links and redirects are relative, so the page also works behind a path
// prefix, and it calls the API at ../api/v1/activityHistory.
func Mount(r gin.IRoutes, opts Options) {
	if opts.Auth == "" {
		opts.Auth = AuthBearer
	}
	static, err := httpapi.StaticDir(files, "static")
	if err != nil {
		panic(fmt.Sprintf("ui: embedded files: %v", err))
	}
	r.GET("/ui", func(c *gin.Context) {
		// Relative on purpose: an absolute one would drop a proxy's prefix.
		c.Header("Location", "ui/")
		c.Status(http.StatusMovedPermanently)
	})
	r.GET("/ui/*filepath", func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("filepath"), "/")
		switch name {
		case "":
			name = "index.html"
		case "config.json":
			config(c, opts)
			return
		}
		f, ok := static[name]
		if !ok {
			httpapi.NotFound(c)
			return
		}
		f.Handler(ContentSecurityPolicy)(c)
	})
}

// config answers GET /ui/config.json. It carries the API's no-store.
func config(c *gin.Context, opts Options) {
	out := Config{Auth: opts.Auth}
	if opts.Auth == AuthDev && opts.DevToken != nil && localSameOrigin(c.Request) {
		tok, exp, err := opts.DevToken()
		if err != nil {
			httpapi.Internal(c, fmt.Errorf("mint development token: %w", err))
			return
		}
		out.Token, out.Expires = tok, &exp
	}
	c.JSON(http.StatusOK, out)
}

// localSameOrigin reports whether r comes from a page of this server opened
// on this machine. The development token is handed only to such a page:
// not over the network, nor to another site's script (the API allows any
// origin by default), nor through a DNS name rebound to 127.0.0.1.
func localSameOrigin(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil || !loopback(host) {
		return false
	}
	if !loopback(hostname(r.Host)) {
		return false
	}
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return false
		}
	}
	return true
}

func hostname(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.Trim(hostport, "[]")
}

func loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
