package eventstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Backend is the storage under an Engine: what an adapter implements. The
// Engine does everything else of an append (validation, de-duplication,
// per-stream order, sealing, retries, idempotent retries, group commit).
type Backend interface {
	// Find answers queries in one go: each stream's last record when
	// asked, and the record of every asked id that is recorded, in
	// whatever stream. A backend may also report as recorded an id it
	// finds recorded in the stream's tail but not yet indexed.
	Find(ctx context.Context, qs []Query) ([]Found, error)
	// Commit writes the batches, each all or nothing and each expecting
	// its stream's last record to be Prev, and sets Position and
	// RecordedAt of what it wrote. It returns one error per batch: nil,
	// one wrapping ErrConflict (the stream is not at Prev, or the backend
	// is busy: the Engine looks again), a *TakenError, one wrapping
	// ErrUnavailable (the Engine tries again: an attempt that went in is
	// found by its ids), or a final error.
	Commit(ctx context.Context, batches []*Batch) []error
	Read(ctx context.Context, stream string, from uint64, limit int) ([]Record, error)
	Subscribe(ctx context.Context, after uint64, h Handler) error
}

// Query asks Find about one stream.
type Query struct {
	Stream string
	Tail   bool     // the stream's last record is wanted
	IDs    []string // ids whose records are wanted
}

// Found answers one Query.
type Found struct {
	Tail     *Record           // nil: the stream has no records (or not asked)
	Recorded map[string]Record // id → its record, for recorded ids
}

// Batch is new records of one stream committed together.
type Batch struct {
	Stream  string
	Prev    *Head // the stream's last record; nil: the stream has none
	Records []Record
}

// TakenError is a commit refused because an id of the batch is recorded
// already. Record is that record when the backend knows it.
type TakenError struct {
	ID     string
	Record *Record
}

func (e *TakenError) Error() string { return fmt.Sprintf("event id %q is recorded already", e.ID) }

// EngineConfig tunes an Engine; zero values take the defaults.
type EngineConfig struct {
	// MaxBatchEvents bounds the events of one stream in one batch
	// (default 1000); MaxGroupEvents and MaxGroupBytes bound a group
	// (default 4000 events, 8 MiB).
	MaxBatchEvents, MaxGroupEvents, MaxGroupBytes int
	// Workers is how many groups are in flight at once (default 2).
	Workers int
	// AttemptTimeout bounds one commit (default 5s); AppendTimeout an
	// Append whose context has no deadline (default 30s).
	AttemptTimeout, AppendTimeout time.Duration
	// Optimistic skips the id look-up on an append's first attempt: the
	// backend's Commit refuses recorded ids with a *TakenError by itself.
	Optimistic bool
}

// maxAttempts bounds retries after a lost race or a busy backend.
const maxAttempts = 50

// errAgain is an attempt to be made again at once (a shared batch
// failed); errRetry one refused because the stream moved or the backend
// was busy, to be made again after a pause.
var errAgain, errRetry = errors.New("try again"), errors.New("retry")

// errClosed answers appends to a closed Engine; it is not retried.
var errClosed = fmt.Errorf("%w: store closed", ErrUnavailable)

// Engine appends through a Backend. Appends that arrive while a group is
// being committed wait and are committed together as the next group: one
// Find, one Commit, one head update per stream. A lone append waits for
// nothing.
type Engine struct {
	b     Backend
	cfg   EngineConfig
	mu    sync.Mutex
	cond  *sync.Cond
	queue []*pending
	busy  map[string]bool // streams of groups in flight
	heads Cache[Head]     // last known head per stream
	stop  bool
	wg    sync.WaitGroup
}

// pending is one append waiting for its group.
type pending struct {
	ctx      context.Context
	stream   string
	expected ExpectedRevision
	events   []Event
	bytes    int
	lookup   bool              // look the ids up, optimistic or not
	alone    bool              // in a batch of its own
	known    map[string]Record // ids found recorded by an earlier attempt
	done     chan attemptResult
}

type attemptResult struct {
	recs     []Record
	appended int
	err      error
}

// NewEngine starts an Engine on b; Close stops it.
func NewEngine(b Backend, cfg EngineConfig) *Engine {
	cfg.MaxBatchEvents = cmp.Or(cfg.MaxBatchEvents, 1000)
	cfg.MaxGroupEvents = cmp.Or(cfg.MaxGroupEvents, 4000)
	cfg.MaxGroupBytes = cmp.Or(cfg.MaxGroupBytes, 8<<20)
	cfg.Workers = cmp.Or(cfg.Workers, 2)
	cfg.AttemptTimeout = cmp.Or(cfg.AttemptTimeout, 5*time.Second)
	cfg.AppendTimeout = cmp.Or(cfg.AppendTimeout, 30*time.Second)
	e := &Engine{b: b, cfg: cfg, busy: map[string]bool{}, heads: Cache[Head]{Max: 100_000}}
	e.cond = sync.NewCond(&e.mu)
	for range cfg.Workers {
		e.wg.Go(e.work)
	}
	return e
}

// Close stops the Engine; appends waiting or made later fail with
// ErrUnavailable.
func (e *Engine) Close() {
	e.mu.Lock()
	e.stop = true
	q := e.queue
	e.queue = nil
	e.cond.Broadcast()
	e.mu.Unlock()
	for _, p := range q {
		p.done <- attemptResult{err: errClosed}
	}
	e.wg.Wait()
}

// Read returns up to limit records of stream from revision from.
func (e *Engine) Read(ctx context.Context, stream string, from uint64, limit int) ([]Record, error) {
	if err := CheckStream(stream); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if limit <= 0 {
		return nil, fmt.Errorf("read %s: limit %d: %w", stream, limit, ErrInvalid)
	}
	return e.b.Read(ctx, stream, from, limit)
}

// Subscribe follows every record after position after (see Store).
func (e *Engine) Subscribe(ctx context.Context, after uint64, h Handler) error {
	return e.b.Subscribe(ctx, after, h)
}

// Append is Store.Append.
func (e *Engine) Append(ctx context.Context, stream string, expected ExpectedRevision, events ...Event) (AppendResult, error) {
	if err := CheckAppend(stream, expected, events); err != nil {
		return AppendResult{}, fmt.Errorf("append %s: %w", stream, err)
	}
	// An id repeated within the call with the same content is one event.
	var uniq []Event
	first := make(map[string]int, len(events)) // id → its event in uniq
	size := 0
	for _, ev := range events {
		if j, ok := first[ev.ID]; ok {
			if !sameContent(uniq[j], ev) {
				return AppendResult{}, fmt.Errorf("append %s: event %s given twice with different content: %w", stream, ev.ID, ErrDuplicateID)
			}
			continue
		}
		first[ev.ID] = len(uniq)
		uniq = append(uniq, ev)
		size += len(ev.Data) + len(ev.ID) + len(ev.Type) + 256
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.cfg.AppendTimeout)
		defer cancel()
	}
	p := &pending{ctx: ctx, stream: stream, expected: expected, events: uniq, bytes: size,
		known: map[string]Record{}, done: make(chan attemptResult, 1)}
	for attempt, waits := 1, 0; ; {
		r := e.attempt(p)
		if r.err == nil {
			out := AppendResult{Records: make([]Record, len(events)), Appended: r.appended}
			for i, ev := range events {
				out.Records[i] = r.recs[first[ev.ID]]
			}
			return out, nil
		}
		var wait time.Duration
		var taken *TakenError
		switch {
		case errors.Is(r.err, errAgain):
			p.alone = true
			continue
		case errors.As(r.err, &taken) || errors.Is(r.err, errRetry):
			if taken != nil && taken.Record != nil {
				p.known[taken.ID] = *taken.Record
			}
			p.lookup = p.lookup || taken != nil
			if attempt == maxAttempts {
				return AppendResult{}, fmt.Errorf("append %s: still contended after %d attempts: %w: %w", stream, attempt, ErrConflict, r.err)
			}
			wait = ConflictBackoff(attempt)
			attempt++
		case errors.Is(r.err, ErrUnavailable) && ctx.Err() == nil && !errors.Is(r.err, errClosed):
			// An election or a reconnect, over in seconds. Safe whatever
			// expected is: an attempt that went in after all is found by
			// its ids and its records returned.
			waits++
			wait = UnavailableBackoff(waits)
		default:
			return AppendResult{}, fmt.Errorf("append %s: %w", stream, r.err)
		}
		if err := Sleep(ctx, wait); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				err = r.err
			}
			return AppendResult{}, fmt.Errorf("append %s: %w", stream, ctxErr(ctx, err))
		}
	}
}

// ctxErr keeps the caller's cancellation itself and makes a deadline an
// unavailable store.
func ctxErr(ctx context.Context, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// attempt queues p and waits for its group's answer.
func (e *Engine) attempt(p *pending) attemptResult {
	e.mu.Lock()
	if e.stop {
		e.mu.Unlock()
		return attemptResult{err: errClosed}
	}
	e.queue = append(e.queue, p)
	e.cond.Signal()
	e.mu.Unlock()
	select {
	case r := <-p.done:
		return r
	case <-p.ctx.Done():
		// Unknown whether it went in; a retry with the same ids finds out.
		return attemptResult{err: ctxErr(p.ctx, p.ctx.Err())}
	}
}

// work commits groups until Close.
func (e *Engine) work() {
	for {
		g := e.take()
		if g == nil {
			return
		}
		e.commit(g)
		e.mu.Lock()
		for _, w := range g {
			delete(e.busy, w.batch.Stream)
		}
		if len(e.queue) > 0 {
			e.cond.Signal()
		}
		e.mu.Unlock()
	}
}

// work is one stream's part of a group.
type work struct {
	parts []*pending
	n     int // their events
	batch Batch
	slots []slot // of the parts that write
}

// slot is where a part's new records are: from batch.Records[from] on,
// they fill recs at freshAt.
type slot struct {
	p       *pending
	recs    []Record
	freshAt []int
	from    int
}

// take waits for queued appends and takes those that can go together:
// per stream one batch, of appends in arrival order, none of a stream
// that another group is committing, no id twice.
func (e *Engine) take() []*work {
	e.mu.Lock()
	defer e.mu.Unlock()
	for {
		if e.stop {
			return nil
		}
		if g := e.group(); len(g) > 0 {
			return g
		}
		e.cond.Wait()
	}
}

func (e *Engine) group() []*work {
	var g []*work
	byStream := map[string]*work{}
	ids := map[string]bool{}
	n, size := 0, 0
	rest := e.queue[:0]
	for i, p := range e.queue {
		if p.ctx.Err() != nil {
			p.done <- attemptResult{err: ctxErr(p.ctx, p.ctx.Err())}
			continue
		}
		w := byStream[p.stream]
		fits := n+len(p.events) <= e.cfg.MaxGroupEvents && (size+p.bytes <= e.cfg.MaxGroupBytes || n == 0)
		if w != nil {
			fits = fits && !p.alone && !w.parts[0].alone && w.n+len(p.events) <= e.cfg.MaxBatchEvents
		}
		for _, ev := range p.events {
			fits = fits && !ids[ev.ID]
		}
		if !fits || e.busy[p.stream] {
			rest = append(rest, p)
			if n >= e.cfg.MaxGroupEvents {
				rest = append(rest, e.queue[i+1:]...)
				break
			}
			continue
		}
		if w == nil {
			w = &work{batch: Batch{Stream: p.stream}}
			byStream[p.stream] = w
			g = append(g, w)
		}
		w.parts, w.n = append(w.parts, p), w.n+len(p.events)
		for _, ev := range p.events {
			ids[ev.ID] = true
		}
		n, size = n+len(p.events), size+p.bytes
	}
	clear(e.queue[len(rest):])
	e.queue = rest
	for _, w := range g {
		e.busy[w.batch.Stream] = true
	}
	return g
}

// commit runs one group: one Find, sealing, one Commit, answers.
func (e *Engine) commit(g []*work) {
	qs := make([]Query, len(g))
	for i, w := range g {
		q := Query{Stream: w.batch.Stream}
		head, cached := e.heads.Get(w.batch.Stream)
		for _, p := range w.parts {
			if p.lookup || !e.cfg.Optimistic {
				for _, ev := range p.events {
					q.IDs = append(q.IDs, ev.ID)
				}
			}
			// A conflict must come from the backend, not from a cache
			// that may be behind.
			cached = cached && holds(p.expected, &head)
		}
		q.Tail = !cached
		if cached {
			w.batch.Prev = &head
		}
		qs[i] = q
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.AttemptTimeout)
	defer cancel()
	found := make([]Found, len(g))
	if slices.ContainsFunc(qs, func(q Query) bool { return q.Tail || len(q.IDs) > 0 }) {
		var err error
		if found, err = e.b.Find(ctx, qs); err != nil {
			e.fail(g, err)
			return
		}
	}
	var batches []*Batch
	var live []*work
	for i, w := range g {
		if t := found[i].Tail; qs[i].Tail && t != nil {
			w.batch.Prev = &Head{Stream: t.Stream, Revision: t.Revision, Hash: t.Hash, Position: t.Position}
			e.heads.Put(w.batch.Stream, *w.batch.Prev)
		}
		if e.seal(w, found[i]) {
			batches = append(batches, &w.batch)
			live = append(live, w)
		}
	}
	if len(batches) == 0 {
		return
	}
	errs := e.b.Commit(ctx, batches)
	for i, w := range live {
		e.answer(w, errs[i])
	}
}

// seal resolves each part's ids, checks its expectation and seals its new
// events after the batch's head. Parts that need no write are answered.
// It reports whether the batch has records to commit.
func (e *Engine) seal(w *work, f Found) bool {
	head := w.batch.Prev
	for _, p := range w.parts {
		recs := make([]Record, len(p.events))
		var fresh []Event
		var freshAt []int
		var err error
		for i, ev := range p.events {
			orig, ok := p.known[ev.ID]
			if !ok {
				orig, ok = f.Recorded[ev.ID]
			}
			if !ok && f.Tail != nil && f.Tail.ID == ev.ID {
				orig, ok = *f.Tail, true
			}
			switch {
			case !ok:
				fresh = append(fresh, ev)
				freshAt = append(freshAt, i)
			case orig.Stream != p.stream:
				err = fmt.Errorf("event %s is recorded in stream %q revision %d: %w", ev.ID, orig.Stream, orig.Revision, ErrDuplicateID)
			case orig.Erased:
				err = fmt.Errorf("event %s was recorded at revision %d and its payload erased: %w", ev.ID, orig.Revision, ErrDuplicateID)
			case !sameContent(Event{Type: orig.Type, Data: orig.Data}, ev):
				err = fmt.Errorf("event %s is recorded at revision %d with other type or data: %w", ev.ID, orig.Revision, ErrDuplicateID)
			default:
				recs[i] = orig
			}
			if err != nil {
				break
			}
		}
		switch {
		case err != nil:
		case len(fresh) == 0:
			// A retry: nothing to write, and expected is not checked.
			p.done <- attemptResult{recs: recs}
			continue
		case !holds(p.expected, head):
			err = fmt.Errorf("at %s, expected %s: %w", describeHead(head), describeExpected(p.expected), ErrConflict)
		}
		var sealed []Record
		if err == nil {
			sealed, err = Seal(head, p.stream, fresh)
		}
		if err != nil {
			p.done <- attemptResult{err: err}
			continue
		}
		now := time.Now().UTC().Round(0)
		for k := range sealed {
			sealed[k].RecordedAt = now
		}
		last := sealed[len(sealed)-1]
		head = &Head{Stream: p.stream, Revision: last.Revision, Hash: last.Hash}
		from := len(w.batch.Records)
		w.batch.Records = append(w.batch.Records, sealed...)
		w.slots = append(w.slots, slot{p: p, recs: recs, freshAt: freshAt, from: from})
	}
	return len(w.slots) > 0
}

// answer tells the parts of a committed batch how it went.
func (e *Engine) answer(w *work, err error) {
	if err == nil {
		last := w.batch.Records[len(w.batch.Records)-1]
		e.heads.Put(w.batch.Stream, Head{Stream: w.batch.Stream, Revision: last.Revision, Hash: last.Hash, Position: last.Position})
		for _, s := range w.slots {
			for k, i := range s.freshAt {
				s.recs[i] = w.batch.Records[s.from+k]
			}
			s.p.done <- attemptResult{recs: s.recs, appended: len(s.freshAt)}
		}
		return
	}
	e.heads.Drop(w.batch.Stream)
	taken, _ := errors.AsType[*TakenError](err)
	if errors.Is(err, ErrConflict) {
		err = fmt.Errorf("%w: %w", errRetry, err)
	}
	for _, s := range w.slots {
		// Of a refused shared batch, the append that holds the taken id
		// gets the answer, and every other is made again on its own.
		mine := taken != nil && slices.ContainsFunc(s.p.events, func(ev Event) bool { return ev.ID == taken.ID })
		if len(w.slots) == 1 || mine || errors.Is(err, ErrUnavailable) || errors.Is(err, errRetry) {
			s.p.done <- attemptResult{err: err}
		} else {
			s.p.done <- attemptResult{err: errAgain}
		}
	}
}

// fail answers every part of a group with err.
func (e *Engine) fail(g []*work, err error) {
	if errors.Is(err, ErrConflict) {
		err = fmt.Errorf("%w: %w", errRetry, err)
	}
	for _, w := range g {
		e.heads.Drop(w.batch.Stream)
		for _, p := range w.parts {
			p.done <- attemptResult{err: err}
		}
	}
}

// Cache is a map of at most Max entries (when full, an arbitrary entry
// goes), safe for concurrent use.
type Cache[V any] struct {
	Max int
	mu  sync.Mutex
	m   map[string]V
}

func (c *Cache[V]) Get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *Cache[V]) Put(k string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]V{}
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= c.Max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = v
}

func (c *Cache[V]) Drop(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}

func sameContent(a, b Event) bool { return a.Type == b.Type && bytes.Equal(a.Data, b.Data) }

func holds(expected ExpectedRevision, head *Head) bool {
	switch expected {
	case Any:
		return true
	case NoStream:
		return head == nil
	}
	return head != nil && head.Revision == uint64(expected)
}

func describeHead(h *Head) string {
	if h == nil {
		return "no stream"
	}
	return "revision " + strconv.FormatUint(h.Revision, 10)
}

func describeExpected(e ExpectedRevision) string {
	switch e {
	case Any:
		return "any"
	case NoStream:
		return "no stream"
	}
	return "revision " + strconv.FormatInt(int64(e), 10)
}

// CheckStream refuses a stream name no adapter takes.
func CheckStream(stream string) error {
	if len(stream) == 0 || len(stream) > MaxStreamNameLen || !utf8.ValidString(stream) {
		return fmt.Errorf("stream name %q: want 1..%d bytes of UTF-8: %w", stream, MaxStreamNameLen, ErrInvalid)
	}
	return nil
}

// CheckAppend refuses what the contract's limits or some backend cannot
// take: ids and types travel in headers (no control characters, no
// surrounding spaces) and "$" types are EventStoreDB's own.
func CheckAppend(stream string, expected ExpectedRevision, events []Event) error {
	if err := CheckStream(stream); err != nil {
		return err
	}
	switch {
	case expected < Any:
		return fmt.Errorf("expected revision %d: %w", expected, ErrInvalid)
	case len(events) == 0:
		return fmt.Errorf("no events: %w", ErrInvalid)
	case len(events) > MaxEventsPerAppend:
		return fmt.Errorf("%d events > %d: %w", len(events), MaxEventsPerAppend, ErrTooLarge)
	}
	for _, ev := range events {
		switch {
		case len(ev.ID) == 0 || len(ev.ID) > MaxEventIDLen || !headerSafe(ev.ID):
			return fmt.Errorf("event id %q: want 1..%d bytes of UTF-8 without control characters or surrounding spaces: %w", ev.ID, MaxEventIDLen, ErrInvalid)
		case len(ev.Type) == 0 || len(ev.Type) > MaxEventTypeLen || !headerSafe(ev.Type) || strings.HasPrefix(ev.Type, "$"):
			return fmt.Errorf("event %s: type %q: want 1..%d bytes without control characters, not starting with $: %w", ev.ID, ev.Type, MaxEventTypeLen, ErrInvalid)
		case len(ev.Data) > MaxEventBytes:
			return fmt.Errorf("event %s: %d bytes > %d: %w", ev.ID, len(ev.Data), MaxEventBytes, ErrTooLarge)
		}
	}
	return nil
}

// headerSafe reports whether v survives a header unchanged.
func headerSafe(v string) bool {
	return utf8.ValidString(v) && strings.TrimSpace(v) == v && !strings.ContainsFunc(v, unicode.IsControl)
}
