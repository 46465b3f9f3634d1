package apidocs_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/apidocs"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
)

// server serves Mount on an engine with the API's middleware, under prefix
// ("" for the root) as a reverse proxy stripping it would present it.
func server(t *testing.T, prefix string) *httptest.Server {
	t.Helper()
	e := httpapi.NewEngine("docs", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if prefix == "" {
		apidocs.Mount(e)
	} else {
		apidocs.Mount(e.Group(prefix))
	}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, client *http.Client, u string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func mediaType(resp *http.Response) string {
	mt, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return strings.TrimSpace(mt)
}

func TestMountServesTheDocument(t *testing.T) {
	t.Parallel()
	srv := server(t, "")
	chk := apitest.New(t)
	for _, tc := range []struct {
		path, mediaType string
		want            []byte
	}{
		{"/openapi.yaml", "application/yaml", apidocs.YAML()},
		{"/openapi.json", "application/json", apidocs.JSON()},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tc.path, nil)
			resp, body := chk.Do(t, srv.Client(), req) // the documentation documents itself
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := mediaType(resp); got != tc.mediaType {
				t.Errorf("Content-Type %q, want %s", got, tc.mediaType)
			}
			if !bytes.Equal(body, tc.want) {
				t.Error("body is not the document")
			}
			etag := resp.Header.Get("ETag")
			if etag == "" {
				t.Fatal("no ETag")
			}
			again, _ := get(t, srv.Client(), srv.URL+tc.path, "If-None-Match", etag)
			if again.StatusCode != http.StatusNotModified {
				t.Errorf("revalidation with the ETag gave %d, want 304", again.StatusCode)
			}
		})
	}
}

// The UI page and every asset it references are served with the right
// content types, under the UI's own CSP, at the root and behind a prefix.
func TestMountServesSwaggerUI(t *testing.T) {
	t.Parallel()
	htmlRefs := regexp.MustCompile(`(?:src|href)="([^"]+)"`)
	inlineScripts := regexp.MustCompile(`(?s)<script[^>]*>(.*?)</script>`)
	initializerJS := regexp.MustCompile(`"([^"]*openapi\.json)"`)
	for _, prefix := range []string{"", "/docs"} {
		t.Run("prefix="+prefix, func(t *testing.T) {
			t.Parallel()
			srv := server(t, prefix)
			client := srv.Client()
			pageURL := srv.URL + prefix + "/swagger/"

			if prefix == "" {
				req, _ := http.NewRequest(http.MethodGet, pageURL, nil)
				apitest.New(t).Do(t, client, req)
			}
			resp, page := get(t, client, pageURL)
			if resp.StatusCode != http.StatusOK || mediaType(resp) != "text/html" {
				t.Fatalf("GET %s: %d %q", pageURL, resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			if got := resp.Header.Get("Content-Security-Policy"); got != apidocs.UIContentSecurityPolicy {
				t.Errorf("page CSP %q, want the UI's own", got)
			}
			for _, m := range inlineScripts.FindAllStringSubmatch(string(page), -1) {
				if strings.TrimSpace(m[1]) != "" {
					t.Errorf("inline script in index.html: the CSP forbids it: %q", m[1])
				}
			}

			base, _ := url.Parse(pageURL)
			refs := htmlRefs.FindAllStringSubmatch(string(page), -1)
			if len(refs) < 4 {
				t.Fatalf("index.html references only %d assets", len(refs))
			}
			wantType := map[string]string{".css": "text/css", ".js": "text/javascript", ".png": "image/png"}
			var initializer []byte
			for _, m := range refs {
				if strings.HasPrefix(m[1], "/") || strings.Contains(m[1], "//") {
					t.Errorf("asset %q is not relative: it breaks behind a prefix and may leave the server", m[1])
				}
				u, _ := base.Parse(m[1])
				resp, body := get(t, client, u.String())
				if resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s: %d", u, resp.StatusCode)
					continue
				}
				if want := wantType[path.Ext(u.Path)]; mediaType(resp) != want {
					t.Errorf("GET %s: Content-Type %q, want %s", u, resp.Header.Get("Content-Type"), want)
				}
				if len(body) == 0 {
					t.Errorf("GET %s: empty", u)
				}
				if strings.HasSuffix(u.Path, "swagger-initializer.js") {
					initializer = body
				}
			}
			if initializer == nil {
				t.Fatal("index.html does not load swagger-initializer.js")
			}
			m := initializerJS.FindSubmatch(initializer)
			if m == nil {
				t.Fatal("the initializer does not point at openapi.json")
			}
			docURL, _ := base.Parse(string(m[1]))
			resp, body := get(t, client, docURL.String())
			if resp.StatusCode != http.StatusOK || mediaType(resp) != "application/json" || !bytes.Equal(body, apidocs.JSON()) {
				t.Errorf("the document the UI loads, %s: %d %q", docURL, resp.StatusCode, resp.Header.Get("Content-Type"))
			}

			noFollow := *client
			noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, _ = get(t, &noFollow, srv.URL+prefix+"/swagger")
			if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "swagger/" {
				t.Errorf("GET /swagger: %d Location %q, want 301 to swagger/", resp.StatusCode, resp.Header.Get("Location"))
			}
			resp, _ = get(t, client, srv.URL+prefix+"/swagger") // followed
			if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != prefix+"/swagger/" {
				t.Errorf("following /swagger ends at %s with %d", resp.Request.URL.Path, resp.StatusCode)
			}
		})
	}
}

func TestMountUnknownUIFileIs404Envelope(t *testing.T) {
	t.Parallel()
	srv := server(t, "")
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/swagger/nope.js", nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	apitest.New(t).CheckNoRoute(t, req, resp, body)
}

// The API's restrictive policy stays on everything but the UI.
func TestAPICSPKeptOutsideTheUI(t *testing.T) {
	t.Parallel()
	e := gin.New()
	e.Use(httpapi.SecurityHeaders())
	apidocs.Mount(e)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	resp, _ := get(t, srv.Client(), srv.URL+"/openapi.json")
	if got := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'none'") || got == apidocs.UIContentSecurityPolicy {
		t.Errorf("openapi.json CSP %q, want the API's", got)
	}
	resp, _ = get(t, srv.Client(), srv.URL+"/swagger/swagger-ui-bundle.js")
	if got := resp.Header.Get("Content-Security-Policy"); got != apidocs.UIContentSecurityPolicy {
		t.Errorf("UI asset CSP %q, want the UI's", got)
	}
}
