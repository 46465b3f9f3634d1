package projection_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

// The read model on a three-master Redis Cluster: the conformance suite,
// then a projector with its lease, whose checkpoint never covers data that
// is not there.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c, _ := redistest.Cluster(t)
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("t%d:", n.Add(1)) }
	t.Run("Conformance", func(t *testing.T) {
		readmodeltest.Run(t, func(_ *testing.T, now func() time.Time) readmodeltest.Model {
			r := projection.NewRedis(c, prefix())
			r.Now = now
			return r
		})
	})
	t.Run("ProjectorWithLease", func(t *testing.T) {
		store := openStore(t)
		model := projection.NewRedis(c, prefix())
		p := projection.NewProjector(store, model, projection.ProjectorOptions{
			Lease: projection.NewRedisLease(model, 2*time.Second, "", nil),
		})
		start(t, p)
		acts := load(t, store, 0, 2000, 37)
		end := record(t, store, readmodeltest.Series("last", 5000, 1))
		acts = append(acts, readmodeltest.Series("last", 5000, 1)...)
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// The reader learns the position from the cluster, not in process.
		if err := model.WaitFor(ctx, end); err != nil {
			t.Fatal(err)
		}
		for _, a := range acts {
			if _, found, err := model.Get(ctx, a.ID); err != nil || !found {
				t.Fatalf("checkpoint %d covers %s, which is not readable (%v)", end, a.ID, err)
			}
		}
	})
}
