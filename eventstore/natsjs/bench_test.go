package natsjs_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
)

// BenchmarkAppend measures single-event appends (512-byte payload, Any) to
// an embedded store: to one stream or spread over 1000, from 1 or 64
// concurrent writers, with and without fsync before ack.
func BenchmarkAppend(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		for _, streams := range []int{1, 1000} {
			for _, writers := range []int{1, 64} {
				b.Run(fmt.Sprintf("sync=%v/streams=%d/writers=%d", syncAlways, streams, writers), func(b *testing.B) {
					benchAppend(b, syncAlways, streams, writers)
				})
			}
		}
	}
}

// BenchmarkAppendCluster is BenchmarkAppend on a three-node cluster on
// loopback with an R3 stream (each node's own fsync setting: the default).
func BenchmarkAppendCluster(b *testing.B) {
	s := openCluster(b, startCluster(b)) // shared: starting a cluster takes seconds
	for _, streams := range []int{1, 1000} {
		for _, writers := range []int{1, 64} {
			b.Run(fmt.Sprintf("streams=%d/writers=%d", streams, writers), func(b *testing.B) {
				runAppends(b, s, streams, writers)
			})
		}
	}
}

func benchAppend(b *testing.B, syncAlways bool, streams, writers int) {
	runAppends(b, open(b, natsjs.Config{DataDir: b.TempDir(), SyncAlways: syncAlways}), streams, writers)
}

func runAppends(b *testing.B, s *natsjs.Store, streams, writers int) {
	data := make([]byte, 512)
	ctx := context.Background()
	run := rand.Text()[:8] // the store may have seen other runs' ids
	parallel(b, writers, func(i int64) error {
		ev := eventstore.Event{ID: fmt.Sprintf("ev-%s-%d", run, i), Type: "Bench", Data: data}
		_, err := s.Append(ctx, fmt.Sprintf("stream-%s-%d", run, i%int64(streams)), eventstore.Any, ev)
		return err
	})
}

// parallel runs op for 1..b.N from writers goroutines and reports the
// rate and the CPU time per op.
func parallel(b *testing.B, writers int, op func(i int64) error) {
	var next atomic.Int64
	b.ResetTimer()
	cpu0 := cpuTime()
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	reportRate(b, cpu0)
}

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRate reports appends/s and, steadier on a shared machine, the
// process's CPU time per append (the server's included when embedded).
func reportRate(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/append")
}

// BenchmarkServerBaseline shows what the server charges for the two ways
// of writing a message pair, without this package: two plain publishes
// (no atomicity) and one atomic batch of two, both to an R1 file stream.
func BenchmarkServerBaseline(b *testing.B) {
	ns := startServer(b)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASE", Subjects: []string{"base.>"}, AllowAtomicPublish: true}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 512)
	b.Run("plain-publish-x2", func(b *testing.B) {
		for i := range b.N {
			for _, subj := range []string{"base.ev", fmt.Sprintf("base.id.%d", i)} {
				if _, err := js.Publish(ctx, subj, data); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("atomic-batch-of-2", func(b *testing.B) {
		for i := range b.N {
			msgs := []*nats.Msg{{Subject: "base.ev", Data: data, Header: nats.Header{}}, {Subject: fmt.Sprintf("base.id.b%d", i), Data: data, Header: nats.Header{}}}
			if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkParallel measures what the service does per single-activity
// POST, beside the raw part underneath in the same run: 64 writers of one
// 512-byte event each, spread over 1000 streams or into one, through the
// store, and as bare JetStream publishes on an embedded server (sync: one
// publish and its ack per writer at a time, as a store append would be).
func BenchmarkParallel(b *testing.B) {
	for _, syncAlways := range []bool{false, true} {
		for _, streams := range []int{1000, 1} {
			b.Run(fmt.Sprintf("store/sync=%v/streams=%d", syncAlways, streams), func(b *testing.B) {
				benchAppend(b, syncAlways, streams, 64)
			})
		}
		b.Run(fmt.Sprintf("raw-publish/sync=%v", syncAlways), func(b *testing.B) {
			benchRawPublish(b, syncAlways, 64)
		})
	}
}

func benchRawPublish(b *testing.B, syncAlways bool, writers int) {
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: b.TempDir(), DontListen: true, SyncAlways: syncAlways, NoSigs: true, NoLog: true})
	if err != nil {
		b.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		b.Fatal("not ready")
	}
	defer ns.Shutdown()
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}}); err != nil {
		b.Fatal(err)
	}
	data := make([]byte, 512)
	parallel(b, writers, func(i int64) error {
		_, err := js.Publish(ctx, fmt.Sprintf("raw.%d", i%1000), data)
		return err
	})
}
