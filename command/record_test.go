package command_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/eventstore"
)

// countingAppender passes appends to the real store and notes how they
// were made.
type countingAppender struct {
	store eventstore.Store

	mu          sync.Mutex
	calls       map[string][]int // stream → events per call
	inflight    int
	maxInflight int
}

func (c *countingAppender) Append(ctx context.Context, stream string, expected eventstore.ExpectedRevision, events ...eventstore.Event) (eventstore.AppendResult, error) {
	c.mu.Lock()
	if c.calls == nil {
		c.calls = map[string][]int{}
	}
	c.calls[stream] = append(c.calls[stream], len(events))
	c.inflight++
	c.maxInflight = max(c.maxInflight, c.inflight)
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.inflight--
		c.mu.Unlock()
	}()
	if expected != eventstore.Any {
		return eventstore.AppendResult{}, errors.New("command must append with eventstore.Any")
	}
	return c.store.Append(ctx, stream, expected, events...)
}

func (c *countingAppender) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = nil
	c.maxInflight = 0
}

func activities(t *testing.T, v *activity.Validator, targets []string, n int) []activity.Activity {
	t.Helper()
	ins := make([]map[string]any, n)
	for i := range ins {
		ins[i] = input(targets[i%len(targets)])
	}
	acts, _, err := v.Decode(marshal(t, ins))
	if err != nil {
		t.Fatal(err)
	}
	return acts
}

func TestRecordOneAppendPerTarget(t *testing.T) {
	t.Parallel()
	const concurrency = 4
	counter := &countingAppender{store: openStore(t)}
	v := newValidator(t, fixedNow)
	svc := command.NewService(counter, v, command.Options{Concurrency: concurrency})

	targets := make([]string, 10)
	for i := range targets {
		targets[i] = uuid.NewString()
	}
	acts := activities(t, v, targets, 100) // interleaved: target i%10

	res, err := svc.Record(t.Context(), acts)
	if err != nil {
		t.Fatal(err)
	}
	if res.AllRecorded {
		t.Error("AllRecorded on a first write")
	}
	if len(counter.calls) != len(targets) {
		t.Errorf("appended to %d streams, want %d", len(counter.calls), len(targets))
	}
	for stream, calls := range counter.calls {
		if len(calls) != 1 || calls[0] != 10 {
			t.Errorf("stream %s: appends of %v events, want one of 10", stream, calls)
		}
	}
	if counter.maxInflight > concurrency {
		t.Errorf("%d appends in flight, limit %d", counter.maxInflight, concurrency)
	}

	var maxPos uint64
	for i, target := range targets {
		recs := mustRead(t, counter.store, target)
		if len(recs) != 10 {
			t.Fatalf("stream %d holds %d records", i, len(recs))
		}
		for k, rec := range recs {
			if want := acts[i+10*k].ID; rec.ID != want {
				t.Errorf("stream %d revision %d is %s, want %s (request order)", i, k, rec.ID, want)
			}
			maxPos = max(maxPos, rec.Position)
		}
	}
	if res.Position != maxPos {
		t.Errorf("Position = %d, want %d", res.Position, maxPos)
	}
	for i, a := range res.Activities {
		if !a.Equal(acts[i]) {
			t.Fatalf("result %d = %s, want %s", i, a.ID, acts[i].ID)
		}
	}

	// The retry writes nothing and answers the same.
	counter.reset()
	again, err := svc.Record(t.Context(), acts)
	if err != nil {
		t.Fatal(err)
	}
	if !again.AllRecorded || again.Position != res.Position || len(counter.calls) != len(targets) {
		t.Errorf("retry: AllRecorded %v, position %d (want %d), %d streams", again.AllRecorded, again.Position, res.Position, len(counter.calls))
	}
}

// A request is atomic per target only; the retry with the same ids
// completes it without duplicates.
func TestRecordPartialFailureRetry(t *testing.T) {
	t.Parallel()
	store := openStore(t)
	v := newValidator(t, fixedNow)
	// One append at a time, in request order, so that the first target is
	// written before the second fails.
	svc := command.NewService(store, v, command.Options{Concurrency: 1})
	tA, tB, tC := uuid.NewString(), uuid.NewString(), uuid.NewString()

	earlier := activities(t, v, []string{tC}, 1)[0]
	if _, err := svc.Record(t.Context(), []activity.Activity{earlier}); err != nil {
		t.Fatal(err)
	}
	acts := activities(t, v, []string{tA, tB}, 4) // A, B, A, B
	acts[3].ID = earlier.ID                       // recorded against C already

	_, err := svc.Record(t.Context(), acts)
	var ce *command.ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, eventstore.ErrDuplicateID) {
		t.Fatalf("err = %v, want a ConflictError", err)
	}
	if ce.Index != 3 || ce.ID != earlier.ID || ce.TargetID != tB {
		t.Errorf("conflict names item %d id %s target %s; want 3 %s %s", ce.Index, ce.ID, ce.TargetID, earlier.ID, tB)
	}
	if n := len(mustRead(t, store, tA)); n != 2 {
		t.Errorf("target A holds %d records, want 2 (its append succeeded)", n)
	}
	wantNoStream(t, store, tB)

	// The client fixes the clashing id and retries: A is not duplicated.
	acts[3].ID = uuid.NewString()
	res, err := svc.Record(t.Context(), acts)
	if err != nil {
		t.Fatal(err)
	}
	if res.AllRecorded {
		t.Error("AllRecorded although B was new")
	}
	if nA, nB := len(mustRead(t, store, tA)), len(mustRead(t, store, tB)); nA != 2 || nB != 2 {
		t.Errorf("targets hold %d and %d records, want 2 and 2", nA, nB)
	}
}

func TestRecordNothing(t *testing.T) {
	t.Parallel()
	svc := command.NewService(&countingAppender{}, newValidator(t, time.Now), command.Options{})
	_, err := svc.Record(t.Context(), nil)
	var ve *activity.ValidationError
	if !errors.As(err, &ve) {
		t.Errorf("err = %v, want a ValidationError", err)
	}
}
