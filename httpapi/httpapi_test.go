package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

// LogAttrs writes the line the request's logger would.
func TestLogAttrsAsRequestLogger(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.TestMode)
	var buf bytes.Buffer
	e := NewEngine("test", slog.New(slog.NewJSONHandler(&buf, nil)), nil)
	e.GET("/", func(c *gin.Context) {
		LogAttrs(c, slog.LevelWarn, "line", slog.String("a", "b"), slog.Int("n", 1))
		Logger(c).LogAttrs(c.Request.Context(), slog.LevelWarn, "line", slog.String("a", "b"), slog.Int("n", 1))
		c.Status(http.StatusNoContent)
	})
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(CorrelationHeader, "corr-1")
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	if rec.Header().Get(CorrelationHeader) != "corr-1" {
		t.Errorf("correlation header %q", rec.Header().Get(CorrelationHeader))
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != 3 { // two lines and the access line
		t.Fatalf("%d lines: %s", len(lines), buf.Bytes())
	}
	var ours, theirs map[string]any
	if json.Unmarshal(lines[0], &ours) != nil || json.Unmarshal(lines[1], &theirs) != nil {
		t.Fatalf("lines %s", buf.Bytes())
	}
	delete(ours, "time")
	delete(theirs, "time")
	if len(ours) != 6 || ours["correlationId"] != "corr-1" || ours["traceId"] == "" {
		t.Errorf("line %v", ours)
	}
	for k, v := range theirs {
		if ours[k] != v {
			t.Errorf("%s: LogAttrs wrote %v, the request's logger %v", k, ours[k], v)
		}
	}
	// The same fields in the same order: what was a With is the first attrs.
	strip := func(l []byte) []byte { return l[bytes.Index(l, []byte(`"level"`)):] }
	if !bytes.Equal(strip(lines[0]), strip(lines[1])) {
		t.Errorf("lines differ:\n%s\n%s", lines[0], lines[1])
	}
}
