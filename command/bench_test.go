package command_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/command"
)

// BenchmarkPost measures POST through the gin handler against embedded
// JetStream (file storage, no fsync per write). Ids are left out so every
// iteration records new activities.
func BenchmarkPost(b *testing.B) {
	for _, bc := range []struct {
		name             string
		activities, tgts int
	}{
		{"1", 1, 1},
		{"100_across_10_targets", 100, 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			store := openStore(b)
			svc := command.NewService(store, newValidator(b, time.Now), command.Options{})
			engine := command.NewEngine(svc, command.EngineDeps{Logger: slog.New(slog.DiscardHandler)})

			targets := make([]string, bc.tgts)
			for i := range targets {
				targets[i] = uuid.NewString()
			}
			items := make([]map[string]any, bc.activities)
			for i := range items {
				items[i] = input(targets[i%len(targets)])
				delete(items[i], "id")
			}
			body := marshal(b, items)
			if bc.activities == 1 {
				body = marshal(b, items[0])
			}

			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, command.APIPath, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				w := httptest.NewRecorder()
				engine.ServeHTTP(w, req)
				if w.Code != http.StatusCreated {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
			b.ReportMetric(float64(bc.activities*b.N)/b.Elapsed().Seconds(), "activities/s")
		})
	}
}
