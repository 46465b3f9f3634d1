// Package apidocs holds the service's API contract, its OpenAPI 3 document, and
// serves it with an embedded Swagger UI, so the docs work without internet.
package apidocs

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

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
	r.GET("/openapi.yaml", httpapi.NewStaticFile(specYAML, ContentTypeYAML).Handler(""))
	r.GET("/openapi.json", httpapi.NewStaticFile(JSON(), ContentTypeJSON).Handler(""))

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
		a.Handler(UIContentSecurityPolicy)(c)
	})
}

// uiAssets reads the embedded UI files, keyed by name.
func uiAssets() map[string]httpapi.StaticFile {
	files, err := httpapi.StaticDir(uiFiles, "swagger-ui")
	if err != nil {
		panic(fmt.Sprintf("apidocs: embedded swagger-ui: %v", err))
	}
	return files
}
