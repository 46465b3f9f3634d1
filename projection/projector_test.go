package projection_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/projection/redistest"
)

// waitTimeout bounds every wait for the projector; it is a deadline for a
// failure, not a timing assertion.
const waitTimeout = 20 * time.Second

func openStore(t *testing.T) eventstore.Store {
	t.Helper()
	s, err := natsjs.Open(context.Background(), natsjs.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// record appends acts, one append per target, and returns the highest
// position written.
func record(t *testing.T, s eventstore.Store, acts []activity.Activity) uint64 {
	t.Helper()
	byTarget := map[string][]eventstore.Event{}
	var order []string
	for _, a := range acts {
		data, err := activity.EncodeEvent(a)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := byTarget[a.TargetID]; !ok {
			order = append(order, a.TargetID)
		}
		byTarget[a.TargetID] = append(byTarget[a.TargetID], eventstore.Event{ID: a.ID, Type: activity.EventRecorded, Data: data})
	}
	var pos uint64
	for _, target := range order {
		evs := byTarget[target]
		for len(evs) > 0 {
			n := min(len(evs), eventstore.MaxEventsPerAppend)
			res, err := s.Append(context.Background(), target, eventstore.Any, evs[:n]...)
			if err != nil {
				t.Fatalf("append %s: %v", target, err)
			}
			pos = max(pos, res.Position())
			evs = evs[n:]
		}
	}
	return pos
}

// start runs p until the test ends and checks that Run then returns nil.
// stop ends it earlier and waits for Run to return.
func start(t *testing.T, p *projection.Projector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, p *projection.Projector, pos uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := p.WaitFor(ctx, pos); err != nil {
		t.Fatalf("projector at %d: %v", p.Position(), err)
	}
}

// recordingModel wraps a real read model and records what it is given;
// it fails the first failures calls to Apply.
type recordingModel struct {
	projection.ReadModel
	mu       sync.Mutex
	calls    []applyCall
	failures int
}

type applyCall struct {
	pos uint64
	ids []string
}

func (m *recordingModel) Apply(ctx context.Context, pos uint64, acts []activity.Activity) error {
	m.mu.Lock()
	if m.failures > 0 {
		m.failures--
		m.mu.Unlock()
		return errors.New("read model unavailable (test)")
	}
	ids := make([]string, len(acts))
	for i, a := range acts {
		ids[i] = a.ID
	}
	m.calls = append(m.calls, applyCall{pos: pos, ids: ids})
	m.mu.Unlock()
	return m.ReadModel.Apply(ctx, pos, acts)
}

func (m *recordingModel) applied() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ids []string
	for _, c := range m.calls {
		ids = append(ids, c.ids...)
	}
	return ids
}

// syncBuffer is a log sink safe for the projector's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// pages reads a whole target through the Reader, 7 at a time.
func pages(t *testing.T, r projection.Reader, target string) [][]byte {
	t.Helper()
	var out [][]byte
	before := ""
	for range 1000 {
		p, err := r.Page(context.Background(), target, activity.PageQuery{Before: before, Limit: 7})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range p.Entries {
			out = append(out, e.Doc)
		}
		if len(p.Entries) < 7 {
			return out
		}
		before = p.Entries[6].Key
	}
	t.Fatalf("paging %s did not end", target)
	return nil
}

func ids(t *testing.T, docs [][]byte) []string {
	t.Helper()
	out := make([]string, len(docs))
	for i, d := range docs {
		var a activity.Activity
		if err := json.Unmarshal(d, &a); err != nil {
			t.Fatal(err)
		}
		out[i] = a.ID
	}
	return out
}

func reversedIDs(acts []activity.Activity) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[len(acts)-1-i] = a.ID
	}
	return out
}

// bothModels makes each read model, Redis under the test's own prefix.
func bothModels() map[string]func(t *testing.T) readmodeltest.Model {
	return map[string]func(t *testing.T) readmodeltest.Model{
		"memory": func(*testing.T) readmodeltest.Model { return projection.NewMemory() },
		"redis": func(t *testing.T) readmodeltest.Model {
			c, prefix := redistest.Client(t)
			return projection.NewRedis(c, prefix)
		},
	}
}

func TestProjectorAppliesRecordedActivities(t *testing.T) {
	t.Parallel()
	for name, newModel := range bothModels() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, model := openStore(t), newModel(t)
			a, b := readmodeltest.Series("target-a", 0, 30), readmodeltest.Series("target-b", 100, 5)
			// Recorded before the projector starts: caught up from the store.
			pos := record(t, store, append(slices.Clone(a[:20]), b...))
			p := projection.NewProjector(store, model, projection.ProjectorOptions{})
			start(t, p)
			waitFor(t, p, pos)
			// Recorded while it runs: followed live.
			pos = record(t, store, a[20:])
			waitFor(t, p, pos)

			if got, want := ids(t, pages(t, model, "target-a")), reversedIDs(a); !slices.Equal(got, want) {
				t.Fatalf("target-a pages %v, want %v", got, want)
			}
			if got, want := ids(t, pages(t, model, "target-b")), reversedIDs(b); !slices.Equal(got, want) {
				t.Fatalf("target-b pages %v, want %v", got, want)
			}
			doc, found, err := model.Get(context.Background(), b[2].ID)
			want, _ := json.Marshal(b[2])
			if err != nil || !found || !bytes.Equal(doc, want) {
				t.Fatalf("get %s: %s, %v, %v", b[2].ID, doc, found, err)
			}
			if cp, err := model.Checkpoint(context.Background()); err != nil || cp < pos {
				t.Fatalf("checkpoint %d, %v; want ≥ %d", cp, err, pos)
			}
			if p.Position() < pos {
				t.Fatalf("position %d after WaitFor(%d)", p.Position(), pos)
			}
		})
	}
}

func TestProjectorResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	c, prefix := redistest.Client(t)
	targets := []string{"resume-a", "resume-b", "resume-c"}
	var first, second []activity.Activity
	for i, target := range targets {
		first = append(first, readmodeltest.Series(target, i*100, 20)...)
		second = append(second, readmodeltest.Series(target, i*100+20, 3)...)
	}

	one := &recordingModel{ReadModel: projection.NewRedis(c, prefix)}
	p1 := projection.NewProjector(store, one, projection.ProjectorOptions{})
	stop := start(t, p1)
	pos := record(t, store, first)
	waitFor(t, p1, pos)
	stop()
	if got := len(one.applied()); got != len(first) {
		t.Fatalf("first projector applied %d, want %d", got, len(first))
	}

	// A new projector on the same Redis prefix: it resumes at the
	// checkpoint and applies only what was recorded after it.
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	two := &recordingModel{ReadModel: projection.NewRedis(c, prefix)}
	p2 := projection.NewProjector(store, two, projection.ProjectorOptions{
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
		Registerer: reg,
	})
	start(t, p2)
	waitFor(t, p2, pos)
	pos = record(t, store, second)
	waitFor(t, p2, pos)
	wantIDs := make([]string, len(second))
	for i, a := range second {
		wantIDs[i] = a.ID
	}
	if got := two.applied(); !slices.Equal(got, wantIDs) {
		t.Fatalf("second projector applied %v, want only %v", got, wantIDs)
	}
	if got := metric(t, reg, "activityhistory_projector_events_applied_total"); got != float64(len(second)) {
		t.Fatalf("events applied metric = %v, want %d", got, len(second))
	}
	if got := metric(t, reg, "activityhistory_projector_position"); got != float64(p2.Position()) {
		t.Fatalf("position metric = %v, want %d", got, p2.Position())
	}
	if !strings.Contains(logs.String(), `"msg":"projector resuming","position":`) {
		t.Fatalf("no resume log line in:\n%s", logs)
	}

	// Rebuilding the in-memory model from position 0 gives the same pages.
	mem := projection.NewMemory()
	p3 := projection.NewProjector(store, mem, projection.ProjectorOptions{BatchSize: 16})
	start(t, p3)
	waitFor(t, p3, pos)
	redis := projection.NewRedis(c, prefix)
	for _, target := range targets {
		fromRedis, fromMemory := pages(t, redis, target), pages(t, mem, target)
		if len(fromRedis) != 23 || len(fromMemory) != 23 {
			t.Fatalf("%s: %d documents in redis, %d in memory; want 23", target, len(fromRedis), len(fromMemory))
		}
		for i := range fromRedis {
			if !bytes.Equal(fromRedis[i], fromMemory[i]) {
				t.Fatalf("%s document %d:\nredis  %s\nmemory %s", target, i, fromRedis[i], fromMemory[i])
			}
		}
	}
}

// metric is the value of a counter or gauge of reg with the given
// label value (none for unlabelled metrics); 0 when it was never set.
func metric(t *testing.T, reg *prometheus.Registry, name string, labelValue ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var values []string
			for _, l := range m.GetLabel() {
				values = append(values, l.GetValue())
			}
			if slices.Equal(values, labelValue) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func TestProjectorSkipsEventsItCannotUse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := openStore(t)
	model := projection.NewMemory()
	reg := prometheus.NewRegistry()
	p := projection.NewProjector(store, model, projection.ProjectorOptions{Registerer: reg})
	start(t, p)

	// Only unusable events: the checkpoint still moves past them.
	res, err := store.Append(ctx, "odd", eventstore.Any,
		eventstore.Event{ID: "e1", Type: "TenureRenamed", Data: []byte(`{}`)},
		eventstore.Event{ID: "e2", Type: activity.EventRecorded, Data: []byte(`{"createdAt":"yesterday"}`)},
	)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, p, res.Position())
	if cp, _ := model.Checkpoint(ctx); cp != res.Position() {
		t.Fatalf("checkpoint %d, want %d", cp, res.Position())
	}
	// Then a good one: applied, the projector did not stop.
	good := readmodeltest.Series("odd", 0, 1)
	waitFor(t, p, record(t, store, good))
	if got := ids(t, pages(t, model, "odd")); !slices.Equal(got, []string{good[0].ID}) {
		t.Fatalf("pages %v, want only %s", got, good[0].ID)
	}
	for _, reason := range []string{"unknown_type", "undecodable"} {
		if got := metric(t, reg, "activityhistory_projector_events_skipped_total", reason); got != 1 {
			t.Errorf("skipped %s = %v, want 1", reason, got)
		}
	}
}

func TestProjectorRetriesFailedApply(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	model := &recordingModel{ReadModel: projection.NewMemory(), failures: 2}
	reg := prometheus.NewRegistry()
	logs := &syncBuffer{}
	p := projection.NewProjector(store, model, projection.ProjectorOptions{
		Registerer: reg, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
	})
	start(t, p)
	acts := readmodeltest.Series("flaky", 0, 4)
	waitFor(t, p, record(t, store, acts))
	if got := model.applied(); len(got) != 4 {
		t.Fatalf("applied %v, want the 4 activities once", got)
	}
	if got := metric(t, reg, "activityhistory_projector_errors_total", "apply"); got != 2 {
		t.Fatalf("apply errors metric = %v, want 2", got)
	}
	if n := strings.Count(logs.String(), "projector apply failed, retrying"); n != 2 {
		t.Fatalf("%d retry log lines, want 2:\n%s", n, logs)
	}
}

func TestProjectorBatchSize(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	// Recorded first, so that the projector reads them in large batches.
	acts := readmodeltest.Series("batched", 0, 50)
	pos := record(t, store, acts)
	model := &recordingModel{ReadModel: projection.NewMemory()}
	p := projection.NewProjector(store, model, projection.ProjectorOptions{BatchSize: 7})
	start(t, p)
	waitFor(t, p, pos)
	model.mu.Lock()
	calls := slices.Clone(model.calls)
	model.mu.Unlock()
	var last uint64
	for _, c := range calls {
		if len(c.ids) > 7 || len(c.ids) == 0 {
			t.Fatalf("apply of %d activities with BatchSize 7", len(c.ids))
		}
		if c.pos <= last {
			t.Fatalf("apply positions not increasing: %d after %d", c.pos, last)
		}
		last = c.pos
	}
	if last != pos || len(model.applied()) != 50 {
		t.Fatalf("last apply at %d with %d activities; want %d with 50", last, len(model.applied()), pos)
	}
}

func TestProjectorWaitFor(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	p := projection.NewProjector(store, projection.NewMemory(), projection.ProjectorOptions{})
	if err := p.WaitFor(context.Background(), 0); err != nil {
		t.Fatalf("wait for 0: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.WaitFor(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait with ended ctx: %v", err)
	}
	// Waiters that start before anything is recorded all wake on the
	// append that reaches their position.
	start(t, p)
	waiters := make(chan error, 5)
	for range 5 {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			waiters <- p.WaitFor(ctx, 1)
		}()
	}
	record(t, store, readmodeltest.Series("waited", 0, 1))
	for range 5 {
		if err := <-waiters; err != nil {
			t.Fatal(err)
		}
	}
}

// flakyStore is the real store whose first subscription fails after one
// batch, as a dropped connection would.
type flakyStore struct {
	eventstore.Store
	mu     sync.Mutex
	failed bool
}

func (s *flakyStore) Subscribe(ctx context.Context, after uint64, h eventstore.Handler) error {
	s.mu.Lock()
	fail := !s.failed
	s.failed = true
	s.mu.Unlock()
	if !fail {
		return s.Store.Subscribe(ctx, after, h)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := s.Store.Subscribe(sctx, after, func(ctx context.Context, batch []eventstore.Record) error {
		if err := h(ctx, batch); err != nil {
			return err
		}
		return fmt.Errorf("connection lost (test): %w", eventstore.ErrUnavailable)
	})
	return err
}

func TestProjectorResubscribesAfterFailure(t *testing.T) {
	t.Parallel()
	inner := openStore(t)
	store := &flakyStore{Store: inner}
	first := readmodeltest.Series("resub", 0, 5)
	record(t, inner, first)
	model := &recordingModel{ReadModel: projection.NewMemory()}
	reg := prometheus.NewRegistry()
	p := projection.NewProjector(store, model, projection.ProjectorOptions{Registerer: reg})
	start(t, p)
	second := readmodeltest.Series("resub", 5, 5)
	waitFor(t, p, record(t, inner, second))
	if got := ids(t, pages(t, projectionReader(model), "resub")); !slices.Equal(got, reversedIDs(append(first, second...))) {
		t.Fatalf("pages %v", got)
	}
	if got := len(model.applied()); got != 10 {
		t.Fatalf("applied %d activities, want each of the 10 once", got)
	}
	// The failed subscription is counted after its batch was applied, so
	// the count may trail the position a little.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metric(t, reg, "activityhistory_projector_errors_total", "subscribe")
		if got == 1 {
			break
		}
		if got > 1 || time.Now().After(deadline) {
			t.Fatalf("subscribe errors metric = %v, want 1", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func projectionReader(m *recordingModel) projection.Reader {
	return m.ReadModel.(projection.Reader)
}

// An erasure record reaches the model in order, as Forget of the
// activities it names; activities before and after it are applied.
func TestProjectorForgetsErasedActivities(t *testing.T) {
	t.Parallel()
	for name, newModel := range bothModels() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store, model := openStore(t), newModel(t)
			a := readmodeltest.Series("target-a", 0, 6)
			record(t, store, a[:4])
			e, _ := json.Marshal(eventstore.Erasure{By: "auditor", Reason: "request",
				Records: []eventstore.ErasedRecord{{Revision: 1, ID: a[1].ID}, {Revision: 3, ID: a[3].ID}}})
			if _, err := store.Append(context.Background(), "target-a", eventstore.Any, eventstore.Event{ID: "erasure-1", Type: eventstore.ErasureType, Data: e}); err != nil {
				t.Fatal(err)
			}
			pos := record(t, store, a[4:])
			p := projection.NewProjector(store, model, projection.ProjectorOptions{})
			start(t, p)
			waitFor(t, p, pos)
			want := reversedIDs([]activity.Activity{a[0], a[2], a[4], a[5]})
			if got := ids(t, pages(t, model, "target-a")); !slices.Equal(got, want) {
				t.Fatalf("pages %v, want %v", got, want)
			}
			if _, found, err := model.Get(context.Background(), a[3].ID); found || err != nil {
				t.Fatalf("get erased %s: found %v, %v", a[3].ID, found, err)
			}
		})
	}
}
