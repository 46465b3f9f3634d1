package audit_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
)

// BenchmarkExportPage serves json pages of 1,000 of a 20,000-record store
// through the engine, from the start each time (an ordered consumer is
// created per page), and a replay page of 1,000.
func BenchmarkExportPage(b *testing.B) {
	f := newFixture(b, nil, nil)
	for range 20 {
		record(b, f.store, series(uuid.NewString(), 1000)...)
	}
	target := uuid.NewString()
	record(b, f.store, series(target, 1000)...)
	for _, c := range []struct{ name, path string }{
		{"export1000", exportPath("", "pageSize", "1000")},
		{"exportCSV1000", exportPath("", "pageSize", "1000", "format", "csv")},
		{"exportFiltered", exportPath("", "pageSize", "1000", "type", "end")},
		{"replay1000", "/api/v1/activityHistory/streams/" + target + "/events?pageSize=1000"},
	} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, c.path, nil)
				req.Header.Set("Authorization", "Bearer "+f.tokens["auditor"])
				rec := httptest.NewRecorder()
				f.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
