package ingest

import (
	"slices"
	"testing"
)

// Redeliveries come in the order they fell due; sequence passes them on in
// stream order, with new messages that arrive meanwhile behind them.
func TestSequenceOrdersRedeliveries(t *testing.T) {
	t.Parallel()
	in := make(chan job, 16)
	for _, j := range []job{
		{seq: 1}, // new, nothing held: passed on at once
		{seq: 9, redelivered: true}, {seq: 4, redelivered: true}, {seq: 7, redelivered: true},
		{seq: 12}, // new while redeliveries are held: waits behind them
		{seq: 5, redelivered: true},
	} {
		in <- j
	}
	close(in)
	var got []uint64
	sequence(in, func(j job) { got = append(got, j.seq) }, 100)
	if want := []uint64{1, 4, 5, 7, 9, 12}; !slices.Equal(got, want) {
		t.Errorf("passed on %v, want %v", got, want)
	}
}
