// Package apidocs holds the service's API contract, its OpenAPI 3 document, and
// serves it with an embedded Swagger UI, so the docs work without internet.
package apidocs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/goccy/go-yaml"

	"github.com/council/activityhistory/httpapi"
)

// The embedded files are fixed at build time; they are read, never written.
var (
	//go:embed openapi.yaml
	specYAML []byte

	//go:embed swagger-ui/index.html swagger-ui/index.css swagger-ui/swagger-initializer.js
	//go:embed swagger-ui/swagger-ui.css swagger-ui/swagger-ui-bundle.js
	//go:embed swagger-ui/favicon-16x16.png swagger-ui/favicon-32x32.png
	uiFiles embed.FS
)

// UIContentSecurityPolicy is the policy of the Swagger UI pages. It replaces the
// API's "default-src 'none'", which would stop the UI from running; scripts
// still come only from this server (the page has no inline script).
const UIContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Content types of what Mount serves. Set explicitly: mime.TypeByExtension
// depends on the host's mime.types files.
const (
	ContentTypeYAML = "application/yaml; charset=utf-8"
	ContentTypeJSON = "application/json; charset=utf-8"
)

func uiContentType(name string) (string, bool) {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".png":
		return "image/png", true
	}
	return "", false
}

// YAML returns the OpenAPI document as written (a copy).
func YAML() []byte { return bytes.Clone(specYAML) }

// JSON returns the OpenAPI document converted to JSON, keys in document order.
// The embedded YAML is part of the build and is checked by this package's
// tests, so a conversion failure is a programming error and panics.
func JSON() []byte {
	b, err := toJSON(specYAML)
	if err != nil {
		panic(fmt.Sprintf("apidocs: embedded openapi.yaml does not convert to JSON: %v", err))
	}
	return b
}

func toJSON(y []byte) ([]byte, error) {
	j, err := yaml.YAMLToJSON(y)
	if err != nil {
		return nil, fmt.Errorf("yaml to json: %w", err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, j); err != nil {
		return nil, fmt.Errorf("compact json: %w", err)
	}
	return out.Bytes(), nil
}

// Mount registers the document and the UI on r:
//
//	GET /openapi.yaml, GET /openapi.json   the document
//	GET /swagger                           redirect to /swagger/
//	GET /swagger/*filepath                 Swagger UI, pointed at ../openapi.json
//
// Everything is read and converted here, once. Links and redirects are
// relative, so the UI also works behind a path prefix.
func Mount(r gin.IRoutes) {
	r.GET("/openapi.yaml", newAsset(specYAML, ContentTypeYAML).handler(""))
	r.GET("/openapi.json", newAsset(JSON(), ContentTypeJSON).handler(""))

	ui := uiAssets()
	r.GET("/swagger", func(c *gin.Context) {
		// Relative on purpose: http.Redirect would make it absolute and drop a proxy's prefix.
		c.Header("Location", "swagger/")
		c.Status(http.StatusMovedPermanently)
	})
	r.GET("/swagger/*filepath", func(c *gin.Context) {
		name := strings.TrimPrefix(c.Param("filepath"), "/")
		if name == "" {
			name = "index.html"
		}
		a, ok := ui[name]
		if !ok {
			httpapi.NotFound(c)
			return
		}
		a.handler(UIContentSecurityPolicy)(c)
	})
}

// uiAssets reads the embedded UI files, keyed by name.
func uiAssets() map[string]asset {
	entries, err := fs.ReadDir(uiFiles, "swagger-ui")
	if err != nil {
		panic(fmt.Sprintf("apidocs: read embedded swagger-ui: %v", err))
	}
	out := make(map[string]asset, len(entries))
	for _, e := range entries {
		b, err := fs.ReadFile(uiFiles, "swagger-ui/"+e.Name())
		if err != nil {
			panic(fmt.Sprintf("apidocs: read embedded %s: %v", e.Name(), err))
		}
		ct, ok := uiContentType(e.Name())
		if !ok {
			panic(fmt.Sprintf("apidocs: no content type for embedded %s", e.Name()))
		}
		out[e.Name()] = newAsset(b, ct)
	}
	return out
}

// asset is one file served from memory, revalidated by ETag.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

func newAsset(body []byte, contentType string) asset {
	sum := sha256.Sum256(body)
	return asset{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// handler serves the asset; csp, when not empty, replaces the API's policy.
func (a asset) handler(csp string) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		if csp != "" {
			h.Set("Content-Security-Policy", csp)
		}
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// The API says no-store; docs may be cached but must be revalidated.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		http.ServeContent(c.Writer, c.Request, "", time.Time{}, bytes.NewReader(a.body))
	}
}
