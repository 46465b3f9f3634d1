package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
)

// Result is what Record wrote.
type Result struct {
	// Activities are the recorded activities in request order. One that was
	// already recorded is given as stored.
	Activities []activity.Activity
	// AllRecorded is true when every activity was already recorded with the
	// same content, so nothing was written (a retry).
	AllRecorded bool
	// Position is the highest global position among the records.
	Position uint64
	// Docs are the activities' API JSON, in request order: the event data
	// the store holds, so an answer is not encoded a second time.
	Docs [][]byte
}

// ConflictError says that an activity's id is already recorded with other
// content or against another target. It wraps eventstore.ErrDuplicateID.
type ConflictError struct {
	// Index is the item's position in the request; -1 when the store did
	// not say which of a target's activities clashed.
	Index int
	// ID is the clashing activity id; empty when Index is -1.
	ID string
	// TargetID is the target whose append was refused.
	TargetID string
	Err      error
}

func (e *ConflictError) Error() string {
	if e.Index < 0 {
		return fmt.Sprintf("an activity id for target %s is already recorded with different content: %v", e.TargetID, e.Err)
	}
	return fmt.Sprintf("activity %d: id %s is already recorded with different content", e.Index, e.ID)
}

func (e *ConflictError) Unwrap() error { return e.Err }

// group is one target's share of a request: one append.
type group struct {
	target string
	items  []int // indexes into the request, in request order
	events []eventstore.Event
}

// Record appends validated activities (activity.Validator.Decode output),
// each to the stream named by its targetId, in one append per target with
// the targets appended concurrently.
//
// A request is atomic per target, not across targets: when one target's
// append fails after another's succeeded, the caller gets the error while
// the other target's activities stay recorded. Retrying the same request
// with the same ids is safe: what is already recorded is skipped and
// returned as stored, so the retry completes the rest.
func (s *Service) Record(ctx context.Context, acts []activity.Activity) (Result, error) {
	if len(acts) == 0 {
		return Result{}, activity.Invalid("body", "holds no activities")
	}
	groups, encoded, err := groupByTarget(acts)
	if err != nil {
		return Result{}, err
	}
	results, err := s.appendGroups(ctx, groups, acts)
	if err != nil {
		return Result{}, err
	}

	out := Result{Activities: make([]activity.Activity, len(acts)), Docs: encoded, AllRecorded: true}
	for gi, g := range groups {
		res := results[gi]
		if len(res.Records) != len(g.items) {
			return Result{}, fmt.Errorf("append %s: store returned %d records for %d events", g.target, len(res.Records), len(g.items))
		}
		if res.Appended > 0 {
			out.AllRecorded = false
		}
		out.Position = max(out.Position, res.Position())
		for k, i := range g.items {
			rec := res.Records[k]
			if bytes.Equal(rec.Data, encoded[i]) {
				out.Activities[i] = acts[i]
				continue
			}
			// Already recorded: answer with what the store holds.
			stored, err := activity.DecodeEvent(rec.Type, rec.Data)
			if err != nil {
				return Result{}, fmt.Errorf("read back %s revision %d: %w", g.target, rec.Revision, err)
			}
			out.Activities[i] = stored
			if out.Docs[i], err = stored.MarshalJSON(); err != nil {
				return Result{}, fmt.Errorf("read back %s revision %d: %w", g.target, rec.Revision, err)
			}
		}
	}
	return out, nil
}

// groupByTarget splits acts into one group per target, in order of first
// appearance, keeping request order inside each group.
func groupByTarget(acts []activity.Activity) ([]group, [][]byte, error) {
	encoded := make([][]byte, len(acts))
	byTarget := make(map[string]int)
	var groups []group
	for i, a := range acts {
		data, err := activity.EncodeEvent(a)
		if err != nil {
			return nil, nil, err
		}
		encoded[i] = data
		gi, ok := byTarget[a.TargetID]
		if !ok {
			gi = len(groups)
			byTarget[a.TargetID] = gi
			groups = append(groups, group{target: a.TargetID})
		}
		groups[gi].items = append(groups[gi].items, i)
		groups[gi].events = append(groups[gi].events, eventstore.Event{ID: a.ID, Type: activity.EventRecorded, Data: data})
	}
	return groups, encoded, nil
}

// appendGroups appends every group, at most s.concurrency at once. After a
// failure no further group is started; the error of the earliest failed
// group (in request order) is returned so that the answer is deterministic.
func (s *Service) appendGroups(ctx context.Context, groups []group, acts []activity.Activity) ([]eventstore.AppendResult, error) {
	results := make([]eventstore.AppendResult, len(groups))
	errs := make([]error, len(groups))
	if len(groups) == 1 {
		results[0], errs[0] = s.appendGroup(ctx, groups[0], acts)
		return results, errs[0]
	}

	sem := make(chan struct{}, s.concurrency)
	var wg sync.WaitGroup
	var failed atomic.Bool
	started := 0
launch:
	for i := range groups {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break launch
		}
		if failed.Load() {
			<-sem
			break launch
		}
		started++
		wg.Go(func() {
			defer func() { <-sem }()
			results[i], errs[i] = s.appendGroup(ctx, groups[i], acts)
			if errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	if started < len(groups) {
		return nil, fmt.Errorf("append: %w", context.Cause(ctx))
	}
	return results, nil
}

func (s *Service) appendGroup(ctx context.Context, g group, acts []activity.Activity) (eventstore.AppendResult, error) {
	res, err := s.store.Append(ctx, g.target, eventstore.Any, g.events...)
	if errors.Is(err, eventstore.ErrDuplicateID) {
		i := clashingItem(err, g, acts)
		ce := &ConflictError{Index: i, TargetID: g.target, Err: err}
		if i >= 0 {
			ce.ID = acts[i].ID
		}
		return res, ce
	}
	if err != nil {
		return res, fmt.Errorf("record %d activities: %w", len(g.events), err)
	}
	return res, nil
}

// clashingItem finds which of a group's activities the store refused. The
// Store contract gives no structured id, so it is the only one in the group
// or the only one whose id the error names; -1 when that does not tell.
func clashingItem(err error, g group, acts []activity.Activity) int {
	if len(g.items) == 1 {
		return g.items[0]
	}
	msg := err.Error()
	found := -1
	for _, i := range g.items {
		if strings.Contains(msg, acts[i].ID) {
			if found >= 0 {
				return -1
			}
			found = i
		}
	}
	return found
}
