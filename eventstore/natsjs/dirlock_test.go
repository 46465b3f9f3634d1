//go:build unix

package natsjs_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
)

// One embedded server per data dir: a second Open refuses at once, naming
// the dir and the holder, and succeeds once the first is closed.
func TestDataDirLock(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := open(t, natsjs.Config{DataDir: dir})
	rec, err := first.Append(t.Context(), "s1", eventstore.Any, eventstore.Event{ID: "0190f3e4-5b7c-7a8e-9c1d-2f3a4b5c6d7e", Type: "t", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	began := time.Now()
	second, err := natsjs.Open(ctx, natsjs.Config{DataDir: dir})
	if err == nil {
		second.Close()
		t.Fatal("a second server opened a locked data dir")
	}
	if !errors.Is(err, natsjs.ErrDirLocked) || !strings.Contains(err.Error(), dir) ||
		!strings.Contains(err.Error(), "process "+strconv.Itoa(os.Getpid())) {
		t.Errorf("error %q: want ErrDirLocked naming %s and pid %d", err, dir, os.Getpid())
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("refusing took %v", d)
	}

	first.Close()
	again := open(t, natsjs.Config{DataDir: dir})
	recs, err := again.Read(t.Context(), "s1", 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Hash != rec.Records[0].Hash {
		t.Errorf("after reopening: %v %+v", err, recs)
	}
}
