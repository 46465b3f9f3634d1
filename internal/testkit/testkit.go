// Package testkit holds the helpers tests of every package share.
package testkit

import (
	"testing"
	"time"
)

// CheckFor polls f until it succeeds, failing the test with f's last error
// once d has passed.
func CheckFor(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
