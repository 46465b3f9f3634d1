package ui_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/ui"
)

func engine(opts ui.Options) *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := httpapi.NewEngine("query", slog.New(slog.DiscardHandler), nil)
	ui.Mount(e, opts)
	return e
}

func TestMountServesThePageUnderItsCSP(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	srv := httptest.NewServer(engine(ui.Options{}))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ui/", nil)
	resp, page := chk.Do(t, srv.Client(), req)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /ui/: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
		t.Errorf("CSP %q, want %q", got, ui.ContentSecurityPolicy)
	}
	if strings.Contains(ui.ContentSecurityPolicy, "unsafe") {
		t.Errorf("the page's CSP allows unsafe sources: %s", ui.ContentSecurityPolicy)
	}
	if m := regexp.MustCompile(`(?s)<script[^>]*>\s*[^<\s]`).Find(page); m != nil {
		t.Errorf("inline script in the page: %s", m)
	}
	if m := regexp.MustCompile(`\s(style|on[a-z]+)=`).Find(page); m != nil {
		t.Errorf("inline style or handler attribute in the page: %s", m)
	}

	// Every file the page and its modules reference is served, relatively.
	refs := regexp.MustCompile(`(?:src|href)="([^"#?]+)"|from "\./([^"]+)"`)
	seen := map[string]bool{}
	queue := []string{"index.html"}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		resp, body := get(t, srv.URL+"/ui/"+name)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /ui/%s: %d", name, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Security-Policy"); got != ui.ContentSecurityPolicy {
			t.Errorf("/ui/%s CSP %q", name, got)
		}
		if resp.Header.Get("ETag") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("/ui/%s headers: %v", name, resp.Header)
		}
		for _, m := range refs.FindAllStringSubmatch(string(body), -1) {
			ref := m[1] + m[2]
			if strings.HasPrefix(ref, "/") || strings.Contains(ref, "//") {
				t.Errorf("%s references %q: not relative, it breaks behind a prefix", name, ref)
				continue
			}
			if !seen[ref] {
				seen[ref] = true
				queue = append(queue, ref)
			}
		}
	}
	for _, want := range []string{"app.js", "style.css", "api.js", "diff.js", "timeline.js", "histogram.js", "dom.js", "icon.svg"} {
		if !seen[want] {
			t.Errorf("%s is never referenced", want)
		}
	}

	resp, _ = get(t, srv.URL+"/ui/nothing.js")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown file: %d", resp.StatusCode)
	}
	noRedirect := *srv.Client()
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := noRedirect.Get(srv.URL + "/ui")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "ui/" {
		t.Errorf("GET /ui: %d to %q, want 301 to ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestConfigHandsTheDevelopmentTokenOnlyToLocalSameOriginPages(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	exp := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	dev := ui.Options{Auth: ui.AuthDev, DevToken: func() (string, time.Time, error) { return "dev-token", exp, nil }}
	cases := []struct {
		name      string
		opts      ui.Options
		host      string
		header    map[string]string
		wantAuth  ui.AuthMode
		wantToken string
	}{
		{name: "bearer", opts: ui.Options{}, wantAuth: ui.AuthBearer},
		{name: "disabled", opts: ui.Options{Auth: ui.AuthDisabled}, wantAuth: ui.AuthDisabled},
		{name: "dev, same origin", opts: dev, header: map[string]string{"Sec-Fetch-Site": "same-origin"}, wantAuth: ui.AuthDev, wantToken: "dev-token"},
		{name: "dev, localhost", opts: dev, host: "localhost:8080", wantAuth: ui.AuthDev, wantToken: "dev-token"},
		{name: "dev, another site's script", opts: dev, header: map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, wantAuth: ui.AuthDev},
		{name: "dev, another origin", opts: dev, header: map[string]string{"Origin": "http://127.0.0.1:9999"}, wantAuth: ui.AuthDev},
		{name: "dev, a name rebound to this machine", opts: dev, host: "evil.example:8080", wantAuth: ui.AuthDev},
	}
	h := func(opts ui.Options) http.Handler { return engine(opts) }
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/ui/config.json", nil)
			req.RemoteAddr = "127.0.0.1:50000"
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, body := chk.Serve(t, h(tc.opts), req)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control %q: a token must not be cached", cc)
			}
			var c ui.Config
			if err := json.Unmarshal(body, &c); err != nil {
				t.Fatal(err)
			}
			if c.Auth != tc.wantAuth || c.Token != tc.wantToken {
				t.Errorf("got %+v, want auth %q token %q", c, tc.wantAuth, tc.wantToken)
			}
		})
	}
	t.Run("dev, from another machine", func(t *testing.T) {
		t.Parallel()
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:8080/ui/config.json", nil)
		req.RemoteAddr = "192.0.2.7:50000"
		_, body := chk.Serve(t, h(dev), req)
		if strings.Contains(string(body), "dev-token") {
			t.Errorf("token handed to a remote client: %s", body)
		}
	})
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}
