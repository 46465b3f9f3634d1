package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

const sweptMetric = "activityhistory_retention_swept_total"

// The projector's sweeper removes what expired, a bounded batch at a
// time, and counts it; the rest stays.
func TestSweeperRemovesExpired(t *testing.T) {
	t.Parallel()
	for name, newModel := range map[string]func(t *testing.T, now func() time.Time) readmodeltest.Model{
		"memory": func(_ *testing.T, now func() time.Time) readmodeltest.Model {
			m := projection.NewMemory()
			m.Now = now
			return m
		},
		"redis": func(t *testing.T, now func() time.Time) readmodeltest.Model {
			c, prefix := redistest.Client(t)
			r := projection.NewRedis(c, prefix)
			r.Now = now
			return r
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			base := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
			clock := readmodeltest.NewClock(base)
			model := newModel(t, clock.Now)
			store, reg := openStore(t), prometheus.NewRegistry()
			acts := readmodeltest.Series("swept", 0, 30)
			var kept []activity.Activity
			for i := range acts {
				if i%2 == 0 {
					acts[i].TimeToLiveForRecord = 1
				} else {
					kept = append(kept, acts[i])
				}
			}
			acts = append(acts, readmodeltest.Series("swept-other", 100, 3)...)
			acts[len(acts)-1].TimeToLiveForRecord = 1
			kept = append(kept, acts[len(acts)-3:len(acts)-1]...)
			p := projection.NewProjector(store, model, projection.ProjectorOptions{Registerer: reg,
				Sweep: projection.SweepOptions{Interval: 5 * time.Millisecond, Batch: 4, Now: clock.Now}})
			start(t, p)
			waitFor(t, p, record(t, store, acts))
			if got := len(pages(t, model, "swept")); got != 30 {
				t.Fatalf("before expiry: %d documents, want 30", got)
			}
			clock.Set(base.AddDate(0, 0, 2))
			checkForT(t, waitTimeout, func() error {
				if n := metric(t, reg, sweptMetric); n != 16 {
					return fmt.Errorf("swept %v, want 16", n)
				}
				return nil
			})
			if ex, err := model.Expired(context.Background(), clock.Now(), 100); err != nil || len(ex) != 0 {
				t.Fatalf("expired after the sweep: %v, %v", ex, err)
			}
			// Back before expiry, reads would show what is still stored:
			// only the activities without a TTL are.
			clock.Set(base)
			got := append(pages(t, model, "swept"), pages(t, model, "swept-other")...)
			if len(got) != len(kept) {
				t.Fatalf("%d documents stored after the sweep, want %d", len(got), len(kept))
			}
			for _, a := range acts {
				_, found, err := model.Get(context.Background(), a.ID)
				if err != nil || found != (a.TimeToLiveForRecord == 0) {
					t.Fatalf("get %s (ttl %d) after the sweep: found=%v, %v", a.ID, a.TimeToLiveForRecord, found, err)
				}
			}
		})
	}
}

// With a lease, only the holder sweeps.
func TestSweeperOnlyLeaseHolder(t *testing.T) {
	t.Parallel()
	base := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := readmodeltest.NewClock(base.AddDate(0, 0, 2))
	c, prefix := redistest.Client(t)
	store := openStore(t)
	acts := readmodeltest.Series("lease-swept", 0, 40)
	for i := range acts {
		acts[i].TimeToLiveForRecord = 1
	}
	end := record(t, store, acts)
	regs := []*prometheus.Registry{prometheus.NewRegistry(), prometheus.NewRegistry()}
	// A lease long enough that a loaded machine does not move it mid-test.
	for i, reg := range regs {
		r := projection.NewRedis(c, prefix)
		r.Now = clock.Now
		p := projection.NewProjector(store, r, projection.ProjectorOptions{Registerer: reg,
			Lease: projection.NewRedisLease(r, 10*time.Second, fmt.Sprintf("sweeper-%d", i), nil),
			Sweep: projection.SweepOptions{Interval: 5 * time.Millisecond, Batch: 7, Now: clock.Now}})
		start(t, p)
	}
	model := projection.NewRedis(c, prefix)
	checkForT(t, waitTimeout, func() error {
		cp, err := model.Checkpoint(context.Background())
		if err != nil || cp < end {
			return fmt.Errorf("checkpoint %d of %d (%v)", cp, end, err)
		}
		ex, err := model.Expired(context.Background(), clock.Now(), 100)
		if err != nil || len(ex) != 0 {
			return fmt.Errorf("still expired: %v (%v)", ex, err)
		}
		return nil
	})
	a, b := metric(t, regs[0], sweptMetric), metric(t, regs[1], sweptMetric)
	held := metric(t, regs[0], "activityhistory_projector_lease_held")
	if a+b != 40 || (held == 1) != (a == 40) {
		t.Fatalf("swept %v and %v (first holds the lease: %v); want 40 by the holder alone", a, b, held == 1)
	}
}

// A rebuilt generation holds the expiry of its activities too.
func TestRebuildKeepsExpiry(t *testing.T) {
	t.Parallel()
	base := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	clock := readmodeltest.NewClock(base)
	c, prefix := redistest.Client(t)
	store := openStore(t)
	acts := readmodeltest.Series("rebuilt", 0, 10)
	for i := range acts[:6] {
		acts[i].TimeToLiveForRecord = 1
	}
	record(t, store, acts)
	r := projection.NewRedis(c, prefix)
	r.Now = clock.Now
	head, ok := store.(projection.HeadReader)
	if !ok {
		t.Fatal("the store cannot tell its last position")
	}
	gen, err := r.Rebuild(context.Background(), store, projection.RebuildOptions{Head: head, Grace: time.Millisecond})
	if err != nil || gen == "" {
		t.Fatalf("rebuild: %q, %v", gen, err)
	}
	if got := len(pages(t, r, "rebuilt")); got != 10 {
		t.Fatalf("before expiry: %d documents, want 10", got)
	}
	clock.Set(base.AddDate(0, 0, 2))
	if got := len(pages(t, r, "rebuilt")); got != 4 {
		t.Fatalf("after expiry: %d documents, want 4", got)
	}
	ex, err := r.Expired(context.Background(), clock.Now(), 100)
	if err != nil || len(ex) != 1 || len(ex[0].IDs) != 6 {
		t.Fatalf("expired in the rebuilt generation: %v, %v; want 6", ex, err)
	}
}
