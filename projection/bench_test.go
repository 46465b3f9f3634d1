package projection_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
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

// BenchmarkCatchUp projects a store of 50,000 recorded activities into an
// empty Redis read model and reports events/s: one op is one catch-up.
// "subscribe" is the store's own delivery rate (a handler that does
// nothing), beside "redis", the projector end to end.
func BenchmarkCatchUp(b *testing.B) {
	const n = 50_000
	store, err := natsjs.Open(context.Background(), natsjs.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	var end uint64
	for i := 0; i < n; i += eventstore.MaxEventsPerAppend {
		evs := make([]eventstore.Event, 0, eventstore.MaxEventsPerAppend)
		target := fmt.Sprintf("target-%d", i/eventstore.MaxEventsPerAppend%50)
		for k := i; k < i+eventstore.MaxEventsPerAppend; k++ {
			a := readmodeltest.Activity(target, k, base.Add(time.Duration(k)*time.Second))
			data, _ := activity.EncodeEvent(a)
			evs = append(evs, eventstore.Event{ID: a.ID, Type: activity.EventRecorded, Data: data})
		}
		res, err := store.Append(context.Background(), target, eventstore.Any, evs...)
		if err != nil {
			b.Fatal(err)
		}
		end = res.Position()
	}
	b.Run("subscribe", func(b *testing.B) {
		for b.Loop() {
			ctx, cancel := context.WithCancel(context.Background())
			_ = store.Subscribe(ctx, 0, func(_ context.Context, recs []eventstore.Record) error {
				if recs[len(recs)-1].Position >= end {
					cancel()
				}
				return nil
			})
			cancel()
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("redis", func(b *testing.B) { benchCatchUp(b, store, n, end) })
}

func benchCatchUp(b *testing.B, store eventstore.Store, n int, end uint64) {
	for b.Loop() {
		b.StopTimer()
		c, prefix := redistest.Client(b)
		model := projection.NewRedis(c, prefix)
		p := projection.NewProjector(store, model, projection.ProjectorOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		go func() { defer close(done); _ = p.Run(ctx) }()
		if err := p.WaitFor(context.Background(), end); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cancel()
		<-done
		b.StartTimer()
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkLag writes single activities at a steady 5,000/s for 5 s and
// reports the lag from an append's return to the read model (as a reader
// sharing the Redis learns it) having applied it: p50 and p99.
func BenchmarkLag(b *testing.B) {
	const rate, dur = 5000, 5 * time.Second
	store, err := natsjs.Open(context.Background(), natsjs.Config{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	c, prefix := redistest.Client(b)
	model := projection.NewRedis(c, prefix)
	reader := projection.NewRedis(c, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := projection.NewProjector(store, model, projection.ProjectorOptions{Lease: projection.NewRedisLease(model, 0, "", nil)})
	go func() { _ = p.Run(ctx) }()
	go func() { _ = reader.Follow(ctx) }()
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		var mu sync.Mutex
		var lags []time.Duration
		var wg sync.WaitGroup
		tick := time.NewTicker(time.Second / rate * 16)
		stop := time.After(dur)
		k := 0
	loop:
		for {
			select {
			case <-stop:
				break loop
			case <-tick.C:
			}
			for range 16 { // 16 writers' worth per tick
				k++
				n := k
				wg.Go(func() {
					a := readmodeltest.Activity(fmt.Sprintf("lag-%d", n%1000), n, base.Add(time.Duration(n)*time.Millisecond))
					data, _ := activity.EncodeEvent(a)
					res, err := store.Append(ctx, a.TargetID, eventstore.Any, eventstore.Event{ID: a.ID, Type: activity.EventRecorded, Data: data})
					if err != nil {
						b.Error(err)
						return
					}
					start := time.Now()
					if err := reader.WaitFor(ctx, res.Position()); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					lags = append(lags, time.Since(start))
					mu.Unlock()
				})
			}
		}
		tick.Stop()
		wg.Wait()
		slices.Sort(lags)
		b.ReportMetric(float64(len(lags))/dur.Seconds(), "writes/s")
		b.ReportMetric(float64(lags[len(lags)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lags[len(lags)*99/100].Microseconds())/1000, "p99-ms")
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

// BenchmarkPageRetention is the cost of the retention filter on a head
// page of 20 over a 10,000-activity target: "plain" has no TTLs (no
// per-entry expiry check), "ttl" has a TTL on every activity but none
// expired (every entry checked, none skipped), "half-expired" has every
// other activity expired (40 examined for 20), "head-expired" has its
// newest 200 expired and not yet swept (220 examined).
func BenchmarkPageRetention(b *testing.B) {
	const n, size = 10_000, 20
	base := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	now := base.Add(n*time.Minute).AddDate(0, 0, 2)
	shapes := []struct {
		name string
		ttl  func(i int) int
	}{
		{"plain", func(int) int { return 0 }},
		{"ttl", func(int) int { return activity.MaxTimeToLiveDays }},
		{"half-expired", func(i int) int { return 1 - i%2 }},
		{"head-expired", func(i int) int {
			if i >= n-200 {
				return 1
			}
			return 0
		}},
	}
	for _, name := range []string{"memory", "redis"} {
		b.Run(name, func(b *testing.B) {
			m := benchModels()[name](b)
			switch m := m.(type) {
			case *projection.Memory:
				m.Now = func() time.Time { return now }
			case *projection.Redis:
				m.Now = func() time.Time { return now }
			}
			ctx := context.Background()
			for k, s := range shapes {
				acts := make([]activity.Activity, n)
				for i := range acts {
					acts[i] = readmodeltest.Activity(s.name, k*n+i, base.Add(time.Duration(i)*time.Minute))
					acts[i].TimeToLiveForRecord = s.ttl(i)
				}
				for i := 0; i < n; i += 500 {
					if err := m.Apply(ctx, uint64(k*n+i+500), acts[i:i+500]); err != nil {
						b.Fatal(err)
					}
				}
			}
			for _, s := range shapes {
				b.Run(s.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						p, err := m.Page(ctx, s.name, activity.PageQuery{Limit: size})
						if err != nil || !p.Found || len(p.Entries) != size {
							b.Fatalf("%d entries, found=%v, err=%v", len(p.Entries), p.Found, err)
						}
					}
				})
			}
		})
	}
}
