package projection_test

import (
	"testing"

	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Model {
		return projection.NewMemory()
	})
}

func TestRedis(t *testing.T) {
	t.Parallel()
	readmodeltest.Run(t, func(t *testing.T) readmodeltest.Model {
		c, prefix := redistest.Client(t)
		return projection.NewRedis(c, prefix)
	})
}
