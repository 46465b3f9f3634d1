package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/command/ingest"
	"github.com/council/activityhistory/eventstore/natsjs"
)

// BenchmarkIngest measures events/s from a backlog of entity events on the
// embedded server (the default deployment: one process, the consumer on
// the event store's own connection) to recorded activities, over 1,000
// entities.
func BenchmarkIngest(b *testing.B) {
	store, err := natsjs.Open(context.Background(), natsjs.Config{DataDir: filepath.Join(b.TempDir(), "es")})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	js, err := jetstream.New(store.Conn())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: ingest.DefaultStream, Subjects: []string{ingest.DefaultSubjects}}); err != nil {
		b.Fatal(err)
	}
	entities := make([]string, 1000)
	for i := range entities {
		entities[i] = uuid.NewString()
	}
	for i := range b.N {
		data, _ := json.Marshal(event("PersonUpdatedEvent", entities[i%len(entities)], i))
		if _, err := js.PublishAsync("entityevents.person", data); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()

	v, _ := activity.NewValidator(activity.Rules{})
	m, _ := ingest.LoadMapping("", activity.DefaultTargetTypes)
	reg := prometheus.NewRegistry()
	proc := ingest.NewProcessor(ingest.NewTranslator(m, v), command.NewService(store, v, command.Options{}))
	c, err := ingest.NewConsumer(store.Conn(), proc, ingest.Config{Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	p := &process{reg: reg}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- c.Run(rctx) }()
	for p.count(ingest.Recorded) < b.N {
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
	if n := p.count(ingest.Recorded); n != b.N {
		b.Fatal(fmt.Sprintf("recorded %d of %d", n, b.N))
	}
}
