package projection_test

import (
	"testing"
	"time"

	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	readmodeltest.Run(t, func(t *testing.T, now func() time.Time) readmodeltest.Model {
		m := projection.NewMemory()
		m.Now = now
		return m
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	readmodeltest.Run(t, func(t *testing.T, now func() time.Time) readmodeltest.Model {
		c, prefix := redistest.Client(t)
		r := projection.NewRedis(c, prefix)
		r.Now = now
		return r
	})
}
