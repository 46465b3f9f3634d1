package query_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/auth"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/query"
)

func TestMain(m *testing.M) {
	// Quiet gin's debug route listing; the engine itself sets no mode.
	gin.SetMode(gin.TestMode)
	os.Exit(m.Run())
}

// BenchmarkHistory serves pages from the in-memory model through the whole
// engine (middleware, logging, JSON assembly), without the network.
func BenchmarkHistory(b *testing.B) {
	mem := projection.NewMemory()
	acts := make([]activity.Activity, 0, 1000)
	for i := range 1000 {
		acts = append(acts, newActivity(targetA, base.Add(time.Duration(i)*time.Minute)))
	}
	if err := mem.Apply(b.Context(), 1, acts); err != nil {
		b.Fatal(err)
	}
	svc, err := query.New(mem, query.Options{CursorSecret: []byte(secret)})
	if err != nil {
		b.Fatal(err)
	}
	e := query.NewEngine(svc, query.EngineDeps{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	for _, size := range []int{10, 100} {
		first := "/api/v1/activityHistory?targetId=" + targetA + "&pageSize=" + strconv.Itoa(size)
		// A later page: the token path (decode, MAC check, bounded read).
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, first, nil))
		var body struct {
			PaginationDetails struct{ NextToken string } `json:"paginationDetails"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.PaginationDetails.NextToken == "" {
			b.Fatalf("first page %s: %v", rec.Body, err)
		}
		next := body.PaginationDetails.NextToken
		for _, tc := range []struct{ name, url string }{
			{"first", first},
			{"next", first + "&paginationToken=" + next},
			{"lowercasePath", "/api/v1/activityhistory?targetId=" + targetA + "&pageSize=" + strconv.Itoa(size)},
		} {
			b.Run("page"+strconv.Itoa(size)+"/"+tc.name, func(b *testing.B) {
				serveLoop(b, e, httptest.NewRequest(http.MethodGet, tc.url, nil))
			})
		}
	}
}

// discardWriter stands in for the server's buffered connection, so the
// benchmark measures the handler rather than a growing recorder buffer.
type discardWriter struct {
	header http.Header
	code   int
	n      int
}

func (w *discardWriter) reset() {
	w.header, w.code, w.n = http.Header{}, 0, 0
}

func (w *discardWriter) Header() http.Header { return w.header }

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

func (w *discardWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	w.n += len(p)
	return len(p), nil
}

// BenchmarkServed serves a head page of 20 as serve wires the read path:
// the page cache in front of the in-memory model, HS256 bearer auth,
// request metrics and JSON logs. What is left per request is the cost
// above the network.
func BenchmarkServed(b *testing.B) {
	mem := projection.NewMemory()
	acts := make([]activity.Activity, 0, 100)
	for i := range 100 {
		acts = append(acts, newActivity(targetA, base.Add(time.Duration(i)*time.Minute)))
	}
	cache := projection.NewPageCache(mem, 1<<20)
	if err := cache.Apply(b.Context(), 1, acts); err != nil {
		b.Fatal(err)
	}
	svc, err := query.New(cache, query.Options{CursorSecret: []byte(secret)})
	if err != nil {
		b.Fatal(err)
	}
	authSecret := []byte("bench-auth-secret-0123456789abcdef")
	authn, err := auth.New(auth.Config{HMACSecret: authSecret, ReadGroups: []string{"readers"}})
	if err != nil {
		b.Fatal(err)
	}
	token, err := auth.Mint(authSecret, auth.MintClaims{Subject: "s", Email: "reader@example.org", Groups: []string{"readers"}, TTL: time.Hour}, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	e := query.NewEngine(svc, query.EngineDeps{
		Logger:     slog.New(slog.NewJSONHandler(io.Discard, nil)),
		Metrics:    httpapi.NewMetrics(prometheus.NewRegistry()),
		Middleware: []gin.HandlerFunc{authn.Require(auth.Read)},
	})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/activityHistory?targetId="+targetA+"&pageSize=20", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	serveLoop(b, e, req)
}

// serveLoop serves req over and over, each answer a full 200 page.
func serveLoop(b *testing.B, h http.Handler, req *http.Request) {
	b.ReportAllocs()
	w := &discardWriter{}
	for b.Loop() {
		w.reset()
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK || w.n == 0 {
			b.Fatalf("status %d, %d bytes", w.code, w.n)
		}
	}
	b.ReportMetric(float64(w.n), "respBytes")
}
