package projection

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/google/btree"

	"github.com/council/activityhistory/activity"
)

// Memory is the in-process read model of the embedded default: the same
// semantics as Redis, held in one ordered tree per target. It starts empty
// (checkpoint 0), so the projector rebuilds it from the event store at
// start. It is safe for concurrent use.
type Memory struct {
	mu         sync.RWMutex
	targets    map[string]*btree.BTreeG[memEntry]
	docs       map[string][]byte // activity id → document
	checkpoint uint64
}

// memEntry is one activity in a target's tree, ordered by its sort key.
type memEntry struct {
	key string
	doc []byte
	// What filters check, kept so that a scan need not decode doc.
	typ        activity.Type
	targetType activity.TargetType
	domain     string
}

func lessEntry(a, b memEntry) bool { return a.key < b.key }

// NewMemory returns an empty in-memory read model.
func NewMemory() *Memory {
	return &Memory{targets: map[string]*btree.BTreeG[memEntry]{}, docs: map[string][]byte{}}
}

var (
	_ ReadModel = (*Memory)(nil)
	_ Reader    = (*Memory)(nil)
)

// Apply records the batch and moves the checkpoint forward, never back.
func (m *Memory) Apply(_ context.Context, position uint64, acts []activity.Activity) error {
	entries := make([]memEntry, len(acts))
	for i, a := range acts {
		doc, err := a.MarshalJSON() // the bytes of json.Marshal(a), one pass fewer
		if err != nil {
			return fmt.Errorf("apply %s: %w", a.ID, err)
		}
		entries[i] = memEntry{key: a.SortKey(), doc: doc, typ: a.Type, targetType: a.TargetType, domain: a.SourceDomain}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, a := range acts {
		t := m.targets[a.TargetID]
		if t == nil {
			t = btree.NewG(32, lessEntry)
			m.targets[a.TargetID] = t
		}
		t.ReplaceOrInsert(entries[i])
		m.docs[a.ID] = entries[i].doc
	}
	m.checkpoint = max(m.checkpoint, position)
	return nil
}

// Checkpoint returns the position of the last applied batch, 0 when none.
func (m *Memory) Checkpoint(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.checkpoint, nil
}

// Page returns one page of targetID's history, with the semantics of the
// Redis model's script: the documents are copies, as they would be from
// Redis.
func (m *Memory) Page(_ context.Context, targetID string, q activity.PageQuery) (activity.Page, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := activity.Page{Index: "memory"}
	t := m.targets[targetID]
	if t == nil {
		return p, nil
	}
	p.Found = true
	if q.Limit <= 0 {
		return p, nil
	}
	lo, hi := q.Filter.KeyRange()
	if q.Before != "" && (hi == "" || q.Before < hi) {
		hi = q.Before
	}
	f := q.Filter
	checks := entryChecks(f)
	budget := scanBudget(q)
	p.Entries = make([]activity.Entry, 0, min(q.Limit, t.Len()))
	full := false
	visit := func(e memEntry) bool {
		if hi != "" && e.key >= hi {
			return true // strictly below the upper bound
		}
		if e.key < lo {
			return false
		}
		p.Scanned++
		p.ScannedTo = e.key
		if !checks || f.MatchFields(e.typ, e.domain) &&
			(len(f.TargetTypes) == 0 || slices.Contains(f.TargetTypes, e.targetType)) {
			p.Entries = append(p.Entries, activity.Entry{Key: e.key, Doc: bytes.Clone(e.doc)})
		}
		// As the script: stopped by the bound only when the page is short.
		full = len(p.Entries) == q.Limit
		return !full && p.Scanned < budget
	}
	if hi == "" {
		t.Descend(visit)
	} else {
		t.DescendLessOrEqual(memEntry{key: hi}, visit)
	}
	if full || p.Scanned < budget {
		p.ScannedTo = "" // a full page, or the range ran out
	}
	return p, nil
}

// Get returns a copy of the document of one activity.
func (m *Memory) Get(_ context.Context, id string) ([]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	doc, ok := m.docs[id]
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(doc), true, nil
}

// Ping always succeeds: the model is in process.
func (m *Memory) Ping(context.Context) error { return nil }
