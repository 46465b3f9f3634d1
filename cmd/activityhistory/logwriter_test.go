package main

import (
	"strings"
	"testing"
	"time"
)

func TestLogWriterFlushesOnTimeAndClose(t *testing.T) {
	t.Parallel()
	out := &syncBuffer{}
	w := newLogWriter(out, 10*time.Millisecond)
	if _, err := w.Write([]byte("first\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "first") {
		if time.Now().After(deadline) {
			t.Fatal("a buffered line was not written out by the timer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	slow := newLogWriter(out, time.Hour)
	if _, err := slow.Write([]byte("last\n")); err != nil {
		t.Fatal(err)
	}
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "first\nlast\n" {
		t.Fatalf("written %q", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
