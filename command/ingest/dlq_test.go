package ingest_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/command/ingest"
)

// Events that can never be activities are dead-lettered with why and
// where they came from, then acknowledged; a replay through a mapping that
// knows the type records it and removes it, and leaves the rest.
func TestDeadLettersAndReplay(t *testing.T) {
	t.Parallel()
	ns, nc, p := setup(t)

	entity := uuid.NewString()
	charge := event("ChargeRaisedEvent", entity, 1)
	noEntity := event("PersonCreatedEvent", "", 2)
	publish(t, nc, "entityevents.finance", charge)
	publish(t, nc, "entityevents.person", []byte(`{"id":"x",`))
	publish(t, nc, "entityevents.person", noEntity)
	checkFor(t, 10*time.Second, func() error {
		if n := p.count(ingest.DeadLettered); n != 3 {
			return fmt.Errorf("dead-lettered %d", n)
		}
		return nil
	})

	q, err := ingest.NewDLQ(nc, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	letters, err := q.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		reason, subject string
		seq             uint64
	}{
		{ingest.ReasonUnknownType, "entityevents.finance", 1},
		{ingest.ReasonMalformed, "entityevents.person", 2},
		{ingest.ReasonMissingField, "entityevents.person", 3},
	}
	if len(letters) != len(want) {
		t.Fatalf("%d dead letters, want %d: %+v", len(letters), len(want), letters)
	}
	// Events of different entities are handled in parallel: dead letters
	// need not be in the order of the original stream.
	slices.SortFunc(letters, func(a, b ingest.DeadLetter) int { return cmp.Compare(a.StreamSequence, b.StreamSequence) })
	for i, w := range want {
		dl := letters[i]
		if dl.Reason != w.reason || dl.OriginalSubject != w.subject || dl.StreamSequence != w.seq ||
			dl.DeliveryCount != 1 || dl.OriginalStream != ingest.DefaultStream || dl.Detail == "" || dl.At.IsZero() {
			t.Errorf("dead letter %d: %+v, want %+v", i, dl, w)
		}
	}
	if only, err := q.List(ctx, ingest.ReasonUnknownType); err != nil || len(only) != 1 || only[0].Seq != letters[0].Seq {
		t.Errorf("list by reason: %+v, %v", only, err)
	}

	// The operator maps the type and replays everything.
	v, _ := activity.NewValidator(activity.Rules{})
	m, err := ingest.LoadMapping(writeFile(t, "ChargeRaisedEvent create account\n"), activity.DefaultTargetTypes)
	if err != nil {
		t.Fatal(err)
	}
	store := openStore(t, ns.ClientURL())
	proc := ingest.NewProcessor(ingest.NewTranslator(m, v), command.NewService(store, v, command.Options{}))
	results := map[uint64]ingest.Result{}
	if err := q.Replay(ctx, proc, letters, func(dl ingest.DeadLetter, out ingest.Outcome) { results[dl.Seq] = out.Result }); err != nil {
		t.Fatal(err)
	}
	if results[letters[0].Seq] != ingest.Recorded || results[letters[1].Seq] != ingest.DeadLettered || results[letters[2].Seq] != ingest.DeadLettered {
		t.Errorf("replay results %v", results)
	}
	if err := equalIDs(recorded(t, store, entity), []string{charge["id"].(string)}); err != nil {
		t.Fatal(err)
	}
	left, err := q.List(ctx, "")
	if err != nil || len(left) != 2 || left[0].Reason == ingest.ReasonUnknownType || left[1].Reason == ingest.ReasonUnknownType {
		t.Errorf("left after replay: %+v, %v", left, err)
	}
	// Replaying one again (a retried replay) records nothing new.
	if err := q.Replay(ctx, proc, letters[:1], nil); err != nil {
		t.Fatal(err)
	}
	if err := equalIDs(recorded(t, store, entity), []string{charge["id"].(string)}); err != nil {
		t.Fatal(err)
	}
}
