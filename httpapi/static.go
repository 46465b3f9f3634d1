package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/gin-gonic/gin"
)

// StaticFile is one file served from memory, revalidated by ETag: the
// pages and assets the service ships in its binary.
type StaticFile struct {
	body        []byte
	contentType string
	etag        string
}

// NewStaticFile serves body with contentType.
func NewStaticFile(body []byte, contentType string) StaticFile {
	sum := sha256.Sum256(body)
	return StaticFile{body: body, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// StaticDir reads every file of dir in fsys, keyed by name, with the content
// type its extension gives. Set explicitly: mime.TypeByExtension depends on
// the host's mime.types files. A file of an unknown type is an error.
func StaticDir(fsys fs.FS, dir string) (map[string]StaticFile, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	out := make(map[string]StaticFile, len(entries))
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", e.Name(), err)
		}
		ct, ok := staticContentType(e.Name())
		if !ok {
			return nil, fmt.Errorf("no content type for %s", e.Name())
		}
		out[e.Name()] = NewStaticFile(b, ct)
	}
	return out, nil
}

func staticContentType(name string) (string, bool) {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8", true
	case ".css":
		return "text/css; charset=utf-8", true
	case ".js":
		return "text/javascript; charset=utf-8", true
	case ".json":
		return "application/json; charset=utf-8", true
	case ".png":
		return "image/png", true
	case ".svg":
		return "image/svg+xml", true
	}
	return "", false
}

// Handler serves the file; csp, when not empty, replaces the API's policy.
func (f StaticFile) Handler(csp string) gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		if csp != "" {
			h.Set("Content-Security-Policy", csp)
		}
		h.Set("Content-Type", f.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		// The API says no-store; static files may be cached but must be revalidated.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(c.Writer, c.Request, "", time.Time{}, bytes.NewReader(f.body))
	}
}
