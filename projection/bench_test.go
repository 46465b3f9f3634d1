package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

func benchModels() map[string]func(b *testing.B) readmodeltest.Model {
	return map[string]func(b *testing.B) readmodeltest.Model{
		"memory": func(*testing.B) readmodeltest.Model { return projection.NewMemory() },
		"redis": func(b *testing.B) readmodeltest.Model {
			c, prefix := redistest.Client(b)
			return projection.NewRedis(c, prefix)
		},
	}
}

// BenchmarkPage reads pages of a 100k-activity target at its head and
// deep down (a cursor 90k items from the newest).
func BenchmarkPage(b *testing.B) {
	const n, target = 100_000, "0f8fad5b-d9cb-469f-a165-70867728950e"
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	acts := make([]activity.Activity, n)
	for i := range acts {
		acts[i] = readmodeltest.Activity(target, i, base.Add(time.Duration(i)*time.Minute))
	}
	deep := acts[n-90_000].SortKey()
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			m := benchModels()[name](b)
			ctx := context.Background()
			for i := 0; i < n; i += 500 {
				if err := m.Apply(ctx, uint64(i+500), acts[i:i+500]); err != nil {
					b.Fatal(err)
				}
			}
			for _, at := range []struct{ name, before string }{{"head", ""}, {"deep", deep}} {
				for _, size := range []int{10, 100} {
					b.Run(fmt.Sprintf("%s/%d", at.name, size), func(b *testing.B) {
						b.ReportAllocs()
						for b.Loop() {
							p, err := m.Page(ctx, target, activity.PageQuery{Before: at.before, Limit: size})
							if err != nil || !p.Found || len(p.Entries) != size {
								b.Fatalf("%d entries, found=%v, err=%v", len(p.Entries), p.Found, err)
							}
						}
					})
				}
			}
		})
	}
}

// BenchmarkApply applies batches of 500 new activities over 50 targets.
func BenchmarkApply(b *testing.B) {
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, name := range []string{"memory", "redis"} {
		b.Run(name+"/500", func(b *testing.B) {
			m := benchModels()[name](b)
			ctx := context.Background()
			var pos uint64
			batch := make([]activity.Activity, 500)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for i := range batch {
					n := int(pos) + i
					batch[i] = readmodeltest.Activity(fmt.Sprintf("target-%d", n%50), n, base.Add(time.Duration(n)*time.Second))
				}
				pos += uint64(len(batch))
				b.StartTimer()
				if err := m.Apply(ctx, pos, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(batch))/b.Elapsed().Seconds(), "activities/s")
		})
	}
}

// BenchmarkFilteredPage reads pages of 20 of a 20k-activity target under
// each kind of filter: a date range (a key range), a type that one
// activity in 4 has, one in 100, and one in 1,000 (sparse: many entries
// examined per page).
func BenchmarkFilteredPage(b *testing.B) {
	const n, target = 20_000, "0f8fad5b-d9cb-469f-a165-70867728950e"
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	acts := make([]activity.Activity, n)
	for i := range acts {
		a := readmodeltest.Activity(target, i, base.Add(time.Duration(i)*time.Minute))
		switch {
		case i%1000 == 0:
			a.Type = activity.TypeEnd
		case i%100 == 0:
			a.Type = activity.TypeMigrate
		case i%4 == 0:
			a.Type = activity.TypeCreate
		}
		acts[i] = a
	}
	filters := []struct {
		name string
		f    activity.Filter
	}{
		{"none", activity.Filter{}},
		{"dateRange", activity.Filter{From: acts[5000].CreatedAt, To: acts[6000].CreatedAt}},
		{"type1in4", activity.Filter{Types: []activity.Type{activity.TypeCreate}}},
		{"type1in100", activity.Filter{Types: []activity.Type{activity.TypeMigrate}}},
		{"type1in1000", activity.Filter{Types: []activity.Type{activity.TypeEnd}}},
	}
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			m := benchModels()[name](b)
			ctx := context.Background()
			for i := 0; i < n; i += 500 {
				if err := m.Apply(ctx, uint64(i+500), acts[i:i+500]); err != nil {
					b.Fatal(err)
				}
			}
			for _, f := range filters {
				b.Run(f.name, func(b *testing.B) {
					b.ReportAllocs()
					scanned := 0
					for b.Loop() {
						p, err := m.Page(ctx, target, activity.PageQuery{Limit: 20, Filter: f.f})
						if err != nil || !p.Found || len(p.Entries) == 0 {
							b.Fatalf("%d entries, found=%v, err=%v", len(p.Entries), p.Found, err)
						}
						scanned = p.Scanned
					}
					b.ReportMetric(float64(scanned), "scanned/page")
				})
			}
		})
	}
}
