package projection

import (
	"bytes"
	"context"
	"fmt"
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
		entries[i] = memEntry{key: a.SortKey(), doc: doc}
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

// Page returns up to limit documents of target, newest first, strictly
// below the sort key before ("" = from the newest). The documents are
// copies, as they would be from Redis.
func (m *Memory) Page(_ context.Context, targetID, before string, limit int) ([][]byte, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t := m.targets[targetID]
	if t == nil {
		return nil, false, nil
	}
	if limit <= 0 {
		return [][]byte{}, true, nil
	}
	docs := make([][]byte, 0, min(limit, t.Len()))
	visit := func(e memEntry) bool {
		if e.key == before {
			return true // strictly below the cursor
		}
		docs = append(docs, bytes.Clone(e.doc))
		return len(docs) < limit
	}
	if before == "" {
		t.Descend(visit)
	} else {
		t.DescendLessOrEqual(memEntry{key: before}, visit)
	}
	return docs, true, nil
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
