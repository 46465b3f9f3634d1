package projection

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/btree"

	"github.com/council/activityhistory/activity"
)

// Memory is the in-process read model of the embedded default: the same
// semantics as Redis, held in one ordered tree per target. It starts empty
// (checkpoint 0), so the projector rebuilds it from the event store at
// start. It is safe for concurrent use.
type Memory struct {
	// Now is the clock expiry is judged by (nil: time.Now); set it before
	// use.
	Now func() time.Time

	mu       sync.RWMutex
	targets  map[string]*memTarget
	ids      map[string]memID // activity id → its entry
	expiring *btree.BTreeG[memExpiry]
	// checkpoint is the position of the last applied batch.
	checkpoint uint64
}

// memTarget is one target's history.
type memTarget struct {
	tree     *btree.BTreeG[memEntry]
	expiring int // entries with a TTL: pages then skip expired ones
}

// memEntry is one activity in a target's tree, ordered by its sort key.
type memEntry struct {
	key     string
	doc     []byte
	expires int64
	// What filters check, kept so that a scan need not decode doc.
	typ        activity.Type
	targetType activity.TargetType
	domain     string
}

// memID is where an activity id lives.
type memID struct {
	target  string
	key     string
	doc     []byte
	expires int64
}

// memExpiry orders the entries with a TTL by expiry, for the sweeper.
type memExpiry struct {
	expires    int64
	target, id string
}

func lessEntry(a, b memEntry) bool { return a.key < b.key }

func lessExpiry(a, b memExpiry) bool {
	return cmp.Or(cmp.Compare(a.expires, b.expires), cmp.Compare(a.target, b.target), cmp.Compare(a.id, b.id)) < 0
}

// NewMemory returns an empty in-memory read model.
func NewMemory() *Memory {
	return &Memory{targets: map[string]*memTarget{}, ids: map[string]memID{}, expiring: btree.NewG(32, lessExpiry)}
}

var (
	_ ReadModel = (*Memory)(nil)
	_ Reader    = (*Memory)(nil)
)

func (m *Memory) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// Apply records the batch and moves the checkpoint forward, never back.
func (m *Memory) Apply(_ context.Context, position uint64, acts []activity.Activity) error {
	entries := make([]memEntry, len(acts))
	for i, a := range acts {
		doc, err := a.MarshalJSON() // the bytes of json.Marshal(a), one pass fewer
		if err != nil {
			return fmt.Errorf("apply %s: %w", a.ID, err)
		}
		entries[i] = memEntry{key: a.SortKey(), doc: doc, expires: a.Expires(), typ: a.Type, targetType: a.TargetType, domain: a.SourceDomain}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, a := range acts {
		t := m.targets[a.TargetID]
		if t == nil {
			t = &memTarget{tree: btree.NewG(32, lessEntry)}
			m.targets[a.TargetID] = t
		}
		e := entries[i]
		if _, again := t.tree.ReplaceOrInsert(e); !again && e.expires != 0 {
			t.expiring++
			m.expiring.ReplaceOrInsert(memExpiry{expires: e.expires, target: a.TargetID, id: a.ID})
		}
		m.ids[a.ID] = memID{target: a.TargetID, key: e.key, doc: e.doc, expires: e.expires}
	}
	m.checkpoint = max(m.checkpoint, position)
	return nil
}

// Forget removes the activities of targetID among ids and moves the
// checkpoint forward, never back.
func (m *Memory) Forget(_ context.Context, position uint64, targetID string, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		r, ok := m.ids[id]
		if !ok || r.target != targetID {
			continue
		}
		t := m.targets[targetID]
		t.tree.Delete(memEntry{key: r.key})
		delete(m.ids, id)
		if r.expires != 0 {
			t.expiring--
			m.expiring.Delete(memExpiry{expires: r.expires, target: targetID, id: id})
		}
		if t.tree.Len() == 0 {
			delete(m.targets, targetID)
		}
	}
	m.checkpoint = max(m.checkpoint, position)
	return nil
}

// Expired lists up to limit entries expired at now, soonest expired first.
func (m *Memory) Expired(_ context.Context, now time.Time, limit int) ([]Expired, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var g expiredGroups
	n := 0
	m.expiring.Ascend(func(e memExpiry) bool {
		if n >= limit || !activity.Expired(e.expires, now) {
			return false
		}
		g.add(e.target, e.id)
		n++
		return true
	})
	return g.out, nil
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
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	p := activity.Page{Index: "memory"}
	tt := m.targets[targetID]
	if tt == nil {
		return p, nil
	}
	t := tt.tree
	p.Found = true
	if q.Limit <= 0 {
		p.Found = tt.expiring == 0 || tt.live(now)
		return p, nil
	}
	lo, hi := q.Filter.KeyRange()
	if q.Before != "" && (hi == "" || q.Before < hi) {
		hi = q.Before
	}
	f := q.Filter
	checks := entryChecks(f)
	budget := scanBudget(q, tt.expiring > 0)
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
		if !activity.Expired(e.expires, now) && (!checks || f.MatchFields(e.typ, e.domain) &&
			(len(f.TargetTypes) == 0 || slices.Contains(f.TargetTypes, e.targetType))) {
			p.Entries = append(p.Entries, activity.Entry{Key: e.key, Doc: bytes.Clone(e.doc), Expires: e.expires})
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
	if len(p.Entries) == 0 && tt.expiring > 0 {
		p.Found = tt.live(now)
	}
	return p, nil
}

// live reports whether the target has an entry not expired at now: a
// target whose every entry expired has no history, as after the sweep.
func (t *memTarget) live(now time.Time) bool {
	found := false
	t.tree.Descend(func(e memEntry) bool {
		found = !activity.Expired(e.expires, now)
		return !found
	})
	return found
}

// Get returns a copy of the document of one activity, unless expired.
func (m *Memory) Get(_ context.Context, id string) ([]byte, bool, error) {
	now := m.now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	r, ok := m.ids[id]
	if !ok || activity.Expired(r.expires, now) {
		return nil, false, nil
	}
	return bytes.Clone(r.doc), true, nil
}

// Ping always succeeds: the model is in process.
func (m *Memory) Ping(context.Context) error { return nil }
