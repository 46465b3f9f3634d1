package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
)

func TestFoldedEngineRoutes(t *testing.T) {
	t.Parallel()
	gin.SetMode(gin.TestMode)
	e := NewEngine("test", slog.New(slog.DiscardHandler), nil)
	e.RedirectTrailingSlash = false
	for _, p := range []string{"/api/v1/activityHistory", "/api/v1/activityHistory/:id", "/api/v1/activityHistory/export", "/swagger", "/swagger/*any", "/healthz"} {
		e.GET(p, func(c *gin.Context) { c.String(http.StatusOK, c.FullPath()+" "+c.Param("id")+c.Param("any")) })
	}
	f := Fold(e)
	for _, tc := range []struct{ method, path, want string }{
		{"GET", "/api/v1/activityHistory", "/api/v1/activityHistory "},
		{"GET", "/API/V1/ACTIVITYHISTORY/", "/api/v1/activityHistory "},
		{"GET", "/api/v1/activityhistory/AbC-1/", "/api/v1/activityHistory/:id AbC-1"},
		{"GET", "/api/v1/activityhistory/EXPORT", "/api/v1/activityHistory/export "},
		{"GET", "/Swagger/", "/swagger/*any /"},
		{"GET", "/swagger/", "/swagger/*any /"},
		{"GET", "/SWAGGER", "/swagger "},
		{"GET", "/swagger/index.HTML", "/swagger/*any /index.HTML"},
		{"GET", "/HealthZ/", "/healthz "},
		{"HEAD", "/healthz", ""},
		{"GET", "/api/v1/activityHistory//", "404"},
		{"GET", "/api/v1/activityHi%C5%BFtory", "404"},
		{"GET", "/healthzz", "404"},
	} {
		rec := httptest.NewRecorder()
		f.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		got := rec.Body.String()
		if rec.Code == http.StatusNotFound {
			got = "404"
		}
		if got != tc.want || (tc.method == "HEAD" && rec.Code != http.StatusOK) {
			t.Errorf("%s %s: %d %q, want %q", tc.method, tc.path, rec.Code, got, tc.want)
		}
	}
}
