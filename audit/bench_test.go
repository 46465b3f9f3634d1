package audit_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/council/activityhistory/audit"
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

// BenchmarkVerify verifies a 1,000-record stream through the engine,
// untouched and with every tenth record erased (its skeleton read in
// place), and erases 100 records of a fresh 1,000-record stream.
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, nil, nil)
	clean, erased := uuid.NewString(), uuid.NewString()
	record(b, f.store, series(clean, 1000)...)
	acts := series(erased, 1000)
	record(b, f.store, acts...)
	var ids []string
	for i := 0; i < len(acts); i += 10 {
		ids = append(ids, acts[i].ID)
	}
	if _, err := f.svc.Erase(b.Context(), audit.EraseRequest{TargetID: erased, IDs: ids, Reason: "bench", By: "bench"}); err != nil {
		b.Fatal(err)
	}
	for name, target := range map[string]string{"verify1000": clean, "verify1000erased100": erased} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/api/v1/activityHistory/streams/"+target+"/verify", nil)
				req.Header.Set("Authorization", "Bearer "+f.tokens["auditor"])
				rec := httptest.NewRecorder()
				f.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"verified":true`) {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
	b.Run("erase100of1000", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			target := uuid.NewString()
			acts := series(target, 1000)
			record(b, f.store, acts...)
			var ids []string
			for i := 0; i < len(acts); i += 10 {
				ids = append(ids, acts[i].ID)
			}
			b.StartTimer()
			if _, err := f.svc.Erase(b.Context(), audit.EraseRequest{TargetID: target, IDs: ids, Reason: "bench", By: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
