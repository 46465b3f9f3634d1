package command_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/command"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/httpapi"
)

// fixedNow is the clock of every test: createdAt defaults to it and
// "future" is measured from it.
func fixedNow() time.Time { return time.Date(2025, 3, 4, 10, 30, 0, 0, time.UTC) }

// env is one test's engine over its own store. Every exchange with it is
// checked against the OpenAPI document by chk, one Checker per top-level test.
type env struct {
	url   string
	store *natsjs.Store
	http  *http.Client
	chk   *apitest.Checker
}

func openStore(t testing.TB) *natsjs.Store {
	t.Helper()
	store, err := natsjs.Open(t.Context(), natsjs.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("open embedded event store: %v", err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("close event store: %v", err)
		}
	})
	return store
}

func newValidator(t testing.TB, now func() time.Time) *activity.Validator {
	t.Helper()
	v, err := activity.NewValidator(activity.Rules{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func newEnv(t *testing.T, deps command.EngineDeps) *env {
	t.Helper()
	store := openStore(t)
	svc := command.NewService(store, newValidator(t, fixedNow), command.Options{})
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := httptest.NewServer(command.NewEngine(svc, deps))
	t.Cleanup(srv.Close)
	client := srv.Client()
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 32
	return &env{url: srv.URL, store: store, http: client, chk: apitest.New(t)}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) post(t *testing.T, path, contentType string, body io.Reader) reply {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return e.do(t, req)
}

// do sends req and checks the answer against the OpenAPI document.
func (e *env) do(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, b := e.chk.Do(t, e.http, req)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// noRoute sends req, which the document deliberately does not describe, and
// checks that the answer is the 404 or 405 error envelope.
func (e *env) noRoute(t *testing.T, req *http.Request) reply {
	t.Helper()
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	e.chk.CheckNoRoute(t, req, resp, b)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (e *env) postJSON(t *testing.T, v any) reply {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return e.post(t, command.APIPath, "application/json", bytes.NewReader(b))
}

func (r reply) envelope(t *testing.T) httpapi.ErrorBody {
	t.Helper()
	var eb httpapi.ErrorBody
	if err := json.Unmarshal(r.body, &eb); err != nil {
		t.Fatalf("error body is not the envelope: %v: %s", err, r.body)
	}
	if eb.StatusCode != r.status || eb.Message == "" || eb.CorrelationID == "" {
		t.Fatalf("bad envelope for status %d: %s", r.status, r.body)
	}
	return eb
}

func (r reply) wantStatus(t *testing.T, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("status = %d, want %d; body: %.500s", r.status, want, r.body)
	}
}

// input is an activity as a client sends it.
func input(target string) map[string]any {
	return map[string]any{
		"id":                  uuid.NewString(),
		"targetId":            target,
		"type":                "update",
		"targetType":          "person",
		"createdAt":           "2025-03-01T09:00:00.123Z",
		"timetoLiveForRecord": 0,
		"oldData":             map[string]any{"firstName": "Ann"},
		"newData":             map[string]any{"firstName": "Anne"},
		"authorDetails":       map[string]any{"fullName": "Jo Bloggs", "email": "jo.bloggs@example.org"},
		"sourceDomain":        "person-api",
	}
}

func readAll(t *testing.T, s eventstore.Store, stream string) ([]eventstore.Record, error) {
	t.Helper()
	var all []eventstore.Record
	for {
		recs, err := s.Read(t.Context(), stream, uint64(len(all)), 500)
		if err != nil {
			return all, err
		}
		all = append(all, recs...)
		if len(recs) < 500 {
			return all, nil
		}
	}
}

func mustRead(t *testing.T, s eventstore.Store, stream string) []eventstore.Record {
	t.Helper()
	recs, err := readAll(t, s, stream)
	if err != nil {
		t.Fatalf("read %s: %v", stream, err)
	}
	return recs
}

func wantNoStream(t *testing.T, s eventstore.Store, stream string) {
	t.Helper()
	recs, err := s.Read(t.Context(), stream, 0, 10)
	if !errors.Is(err, eventstore.ErrNotFound) {
		t.Errorf("read %s: got %d records, err %v; want ErrNotFound", stream, len(recs), err)
	}
}

func decodeRecord(t *testing.T, rec eventstore.Record) activity.Activity {
	t.Helper()
	a, err := activity.DecodeEvent(rec.Type, rec.Data)
	if err != nil {
		t.Fatalf("decode record %s: %v", rec.ID, err)
	}
	return a
}

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPostOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	target := uuid.NewString()
	in := input(target)

	r := e.postJSON(t, in)
	r.wantStatus(t, http.StatusCreated)

	recs := mustRead(t, e.store, target)
	if len(recs) != 1 {
		t.Fatalf("stream holds %d records, want 1", len(recs))
	}
	rec := recs[0]
	if rec.ID != in["id"] || rec.Type != activity.EventRecorded || rec.Revision != 0 {
		t.Errorf("record = id %s type %s revision %d", rec.ID, rec.Type, rec.Revision)
	}
	stored := decodeRecord(t, rec)
	// The body is exactly what a GET of the activity returns: its API JSON.
	if want := marshal(t, stored); !bytes.Equal(r.body, want) {
		t.Errorf("body\n got %s\nwant %s", r.body, want)
	}
	if got, want := r.header.Get("Location"), "/api/v1/activityHistory/"+rec.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if got, want := r.header.Get(command.PositionHeader), strconv.FormatUint(rec.Position, 10); got != want {
		t.Errorf("%s = %q, want %q", command.PositionHeader, got, want)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q", ct)
	}

	// What was sent is what was stored.
	want := activity.Activity{
		ID: in["id"].(string), TargetID: target, Type: activity.TypeUpdate, TargetType: "person",
		CreatedAt:     time.Date(2025, 3, 1, 9, 0, 0, 123e6, time.UTC),
		OldData:       json.RawMessage(`{"firstName":"Ann"}`),
		NewData:       json.RawMessage(`{"firstName":"Anne"}`),
		AuthorDetails: activity.Author{FullName: "Jo Bloggs", Email: "jo.bloggs@example.org"},
		SourceDomain:  "person-api",
	}
	if !stored.Equal(want) {
		t.Errorf("stored %+v\nwant %+v", stored, want)
	}
}

func TestPostArray(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	t1, t2 := uuid.NewString(), uuid.NewString()
	ins := []map[string]any{input(t1), input(t2), input(t1), input(t2), input(t1)}
	ins[2]["type"] = "create"

	r := e.postJSON(t, ins)
	r.wantStatus(t, http.StatusCreated)
	if loc := r.header.Get("Location"); loc != "" {
		t.Errorf("Location = %q on an array answer", loc)
	}
	var got []activity.Activity
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body: %v: %s", err, r.body)
	}
	if len(got) != len(ins) {
		t.Fatalf("%d activities in answer, want %d", len(got), len(ins))
	}
	for i, a := range got {
		if a.ID != ins[i]["id"] {
			t.Errorf("answer[%d].id = %s, want %s (request order)", i, a.ID, ins[i]["id"])
		}
	}

	// Each target's activities are in its stream in request order.
	var maxPos uint64
	var all []activity.Activity
	for _, target := range []string{t1, t2} {
		recs := mustRead(t, e.store, target)
		for _, rec := range recs {
			maxPos = max(maxPos, rec.Position)
			all = append(all, decodeRecord(t, rec))
		}
	}
	wantIDs := []any{ins[0]["id"], ins[2]["id"], ins[4]["id"], ins[1]["id"], ins[3]["id"]}
	if len(all) != len(wantIDs) {
		t.Fatalf("streams hold %d records, want %d", len(all), len(wantIDs))
	}
	for i, a := range all {
		if a.ID != wantIDs[i] {
			t.Errorf("record %d is %s, want %s", i, a.ID, wantIDs[i])
		}
	}
	if want := marshal(t, []activity.Activity{all[0], all[3], all[1], all[4], all[2]}); !bytes.Equal(r.body, want) {
		t.Errorf("body\n got %s\nwant %s", r.body, want)
	}
	if got := r.header.Get(command.PositionHeader); got != strconv.FormatUint(maxPos, 10) {
		t.Errorf("%s = %q, want %d", command.PositionHeader, got, maxPos)
	}
}

func TestPostDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	target := uuid.NewString()
	in := input(target)
	delete(in, "id")
	delete(in, "createdAt")

	r := e.postJSON(t, in)
	r.wantStatus(t, http.StatusCreated)
	var got activity.Activity
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(got.ID)
	if err != nil || id.Version() != 7 || id.String() != got.ID {
		t.Errorf("generated id %q is not a canonical UUIDv7 (%v)", got.ID, err)
	}
	if !got.CreatedAt.Equal(fixedNow()) {
		t.Errorf("createdAt = %s, want the clock's %s", got.CreatedAt, fixedNow())
	}
	if loc := r.header.Get("Location"); loc != command.APIPath+"/"+got.ID {
		t.Errorf("Location = %q", loc)
	}
	recs := mustRead(t, e.store, target)
	if len(recs) != 1 || recs[0].ID != got.ID || !decodeRecord(t, recs[0]).Equal(got) {
		t.Errorf("stored %d records; want the answered activity", len(recs))
	}
}

func TestRepostSameContent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	t1, t2 := uuid.NewString(), uuid.NewString()
	in := input(t1)

	first := e.postJSON(t, in)
	first.wantStatus(t, http.StatusCreated)
	again := e.postJSON(t, in)
	again.wantStatus(t, http.StatusOK)
	if !bytes.Equal(again.body, first.body) {
		t.Errorf("re-post body\n got %s\nwant %s", again.body, first.body)
	}
	for _, h := range []string{"Location", command.PositionHeader} {
		if again.header.Get(h) != first.header.Get(h) || first.header.Get(h) == "" {
			t.Errorf("%s: first %q, re-post %q", h, first.header.Get(h), again.header.Get(h))
		}
	}
	if recs := mustRead(t, e.store, t1); len(recs) != 1 {
		t.Fatalf("stream holds %d records after a re-post, want 1", len(recs))
	}

	// An array wholly recorded is a 200 too; one with a new item is a 201
	// that returns the old item as stored.
	fresh := input(t2)
	r := e.postJSON(t, []any{in, fresh})
	r.wantStatus(t, http.StatusCreated)
	r = e.postJSON(t, []any{in, fresh})
	r.wantStatus(t, http.StatusOK)
	var got []activity.Activity
	if err := json.Unmarshal(r.body, &got); err != nil || len(got) != 2 || got[0].ID != in["id"] || got[1].ID != fresh["id"] {
		t.Errorf("re-posted array answer: %v %s", err, r.body)
	}
	if n1, n2 := len(mustRead(t, e.store, t1)), len(mustRead(t, e.store, t2)); n1 != 1 || n2 != 1 {
		t.Errorf("streams hold %d and %d records, want 1 and 1", n1, n2)
	}
}

func TestRepostDifferentContent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	t1, t2 := uuid.NewString(), uuid.NewString()
	in := input(t1)
	e.postJSON(t, in).wantStatus(t, http.StatusCreated)
	before := mustRead(t, e.store, t1)

	changed := input(t1)
	changed["id"] = in["id"]
	changed["newData"] = map[string]any{"firstName": "Annie"}
	r := e.postJSON(t, changed)
	r.wantStatus(t, http.StatusConflict)
	eb := r.envelope(t)
	if !strings.Contains(eb.Message, in["id"].(string)) || len(eb.Errors["id"]) == 0 {
		t.Errorf("409 does not name the id: %s", r.body)
	}

	// In an array the item is named, and its target's other new items are
	// not appended either (one append per target, all or nothing).
	other := input(t1)
	r = e.postJSON(t, []any{other, changed})
	r.wantStatus(t, http.StatusConflict)
	if eb := r.envelope(t); len(eb.Errors["[1].id"]) == 0 || !strings.Contains(eb.Message, in["id"].(string)) {
		t.Errorf("409 does not name item 1: %s", r.body)
	}

	// The same id against another target clashes as well.
	moved := input(t2)
	moved["id"] = in["id"]
	e.postJSON(t, moved).wantStatus(t, http.StatusConflict)

	after := mustRead(t, e.store, t1)
	if len(after) != 1 || after[0].Hash != before[0].Hash {
		t.Errorf("stream holds %d records after conflicts, want the 1 original", len(after))
	}
	wantNoStream(t, e.store, t2)
}

// Writers racing on one target: every activity is recorded once, and the
// stream stays a gapless, valid chain.
func TestConcurrentWritersOneTarget(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 16, 100
	e := newEnv(t, command.EngineDeps{})
	target := uuid.NewString()

	var mu sync.Mutex
	sent := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ins := make([]map[string]any, perWriter)
			for i := range ins {
				ins[i] = input(target)
				mu.Lock()
				sent[ins[i]["id"].(string)] = true
				mu.Unlock()
			}
			// Each writer posts ten one by one, the rest in arrays of ten
			// (all singles would only make the test slower).
			var bodies [][]byte
			for i := range 10 {
				bodies = append(bodies, marshal(t, ins[i]))
			}
			for i := 10; i < perWriter; i += 10 {
				bodies = append(bodies, marshal(t, ins[i:i+10]))
			}
			for _, b := range bodies {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+command.APIPath, bytes.NewReader(b))
				req.Header.Set("Content-Type", "application/json")
				// Not chk.Do: it may call t.Fatal, which only the test's
				// own goroutine may. Check reports with t.Errorf.
				resp, err := e.http.Do(req)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("writer %d: read response: %w", w, err)
					return
				}
				e.chk.Check(t, req, b, resp, body)
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("writer %d: status %d: %s", w, resp.StatusCode, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	recs := mustRead(t, e.store, target)
	if len(recs) != writers*perWriter {
		t.Fatalf("stream holds %d records, want %d", len(recs), writers*perWriter)
	}
	seen := map[string]bool{}
	for i, rec := range recs {
		if rec.Revision != uint64(i) {
			t.Fatalf("record %d has revision %d", i, rec.Revision)
		}
		if seen[rec.ID] {
			t.Fatalf("id %s recorded twice", rec.ID)
		}
		seen[rec.ID] = true
		if !sent[rec.ID] {
			t.Fatalf("id %s was never sent", rec.ID)
		}
	}
	if _, err := eventstore.VerifyRecords(target, recs, nil); err != nil {
		t.Fatalf("chain: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})

	type tc struct {
		name        string
		contentType string
		// body builds the request body around fresh target ids.
		body       func(targets []string) []byte
		chunked    bool // send without Content-Length
		status     int
		field      string // key expected in errors; "" for 413/415
		targetsLen int
	}
	one := func(edit func(m map[string]any)) func([]string) []byte {
		return func(ts []string) []byte {
			m := input(ts[0])
			edit(m)
			b, _ := json.Marshal(m)
			return b
		}
	}
	raw := func(format string) func([]string) []byte {
		return func(ts []string) []byte { return []byte(strings.ReplaceAll(format, "TARGET", ts[0])) }
	}
	big := strings.Repeat("x", activity.MaxDataBytes)
	huge := func(ts []string) []byte {
		var items []map[string]any
		for len(marshal(t, items)) <= command.MaxBodyBytes {
			m := input(ts[0])
			m["newData"] = map[string]any{"blob": strings.Repeat("y", 60<<10)}
			items = append(items, m)
		}
		return marshal(t, items)
	}
	cases := []tc{
		{name: "malformed JSON", body: raw(`{"targetId":"TARGET","type":"create",`), status: 400, field: "body"},
		{name: "targetId number", body: one(func(m map[string]any) { m["targetId"] = 123 }), status: 400, field: "targetId"},
		{name: "ttl string", body: one(func(m map[string]any) { m["timetoLiveForRecord"] = "10" }), status: 400, field: "timetoLiveForRecord"},
		{name: "authorDetails string", body: one(func(m map[string]any) { m["authorDetails"] = "Jo" }), status: 400, field: "authorDetails"},
		{name: "unknown field", body: one(func(m map[string]any) { m["colour"] = "red" }), status: 400, field: "colour"},
		{name: "unknown author field", body: one(func(m map[string]any) {
			m["authorDetails"] = map[string]any{"fullName": "Jo", "phone": "0123"}
		}), status: 400, field: "authorDetails.phone"},
		{name: "bad type", body: one(func(m map[string]any) { m["type"] = "created" }), status: 400, field: "type"},
		{name: "bad targetType", body: one(func(m map[string]any) { m["targetType"] = "spaceship" }), status: 400, field: "targetType"},
		{name: "missing targetId", body: one(func(m map[string]any) { delete(m, "targetId") }), status: 400, field: "targetId"},
		{name: "malformed targetId", body: one(func(m map[string]any) { m["targetId"] = "not-a-uuid" }), status: 400, field: "targetId"},
		{name: "future createdAt", body: one(func(m map[string]any) {
			m["createdAt"] = fixedNow().Add(time.Hour).Format(time.RFC3339)
		}), status: 400, field: "createdAt"},
		{name: "oversized newData", body: one(func(m map[string]any) { m["newData"] = map[string]any{"blob": big} }), status: 400, field: "newData"},
		{name: "newData array", body: one(func(m map[string]any) { m["newData"] = []int{1, 2} }), status: 400, field: "newData"},
		{name: "newData string", body: one(func(m map[string]any) { m["newData"] = "changed" }), status: 400, field: "newData"},
		{name: "bad email", body: one(func(m map[string]any) {
			m["authorDetails"] = map[string]any{"fullName": "Jo", "email": "jo at example"}
		}), status: 400, field: "authorDetails.email"},
		{name: "body over 1 MiB", body: huge, status: 413},
		{name: "body over 1 MiB chunked", body: huge, chunked: true, status: 413},
		{name: "501 items", body: func(ts []string) []byte {
			items := make([]map[string]any, activity.MaxBatch+1)
			for i := range items {
				items[i] = input(ts[0])
				delete(items[i], "oldData")
				delete(items[i], "newData")
			}
			return marshal(t, items)
		}, status: 400, field: "body"},
		{name: "empty array", body: raw(`[]`), status: 400, field: "body"},
		{name: "one bad item among good", targetsLen: 3, body: func(ts []string) []byte {
			bad := input(ts[1])
			bad["type"] = "erase"
			return marshal(t, []any{input(ts[0]), bad, input(ts[2])})
		}, status: 400, field: "[1].type"},
		{name: "wrong content type", contentType: "text/plain", body: one(func(map[string]any) {}), status: 415},
		{name: "no content type", contentType: "-", body: one(func(map[string]any) {}), status: 415},
		{name: "non-UTF-8 charset", contentType: "application/json; charset=latin1", body: one(func(map[string]any) {}), status: 415},
		{name: "empty body", body: raw(``), status: 400, field: "body"},
		{name: "JSON null", body: raw(`null`), status: 400, field: "body"},
	}

	t.Run("cases", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				targets := make([]string, max(c.targetsLen, 1))
				for i := range targets {
					targets[i] = uuid.NewString()
				}
				body := c.body(targets)
				ct := c.contentType
				switch ct {
				case "":
					ct = "application/json"
				case "-":
					ct = ""
				}
				var rd io.Reader = bytes.NewReader(body)
				if c.chunked {
					rd = io.MultiReader(rd) // hides the length: chunked encoding
				}
				r := e.post(t, command.APIPath, ct, rd)
				r.wantStatus(t, c.status)
				eb := r.envelope(t)
				if c.field != "" && len(eb.Errors[c.field]) == 0 {
					t.Errorf("errors do not name %q: %s", c.field, r.body)
				}
				if r.header.Get(command.PositionHeader) != "" {
					t.Errorf("a %d carries %s", r.status, command.PositionHeader)
				}
				for _, target := range targets {
					wantNoStream(t, e.store, target)
				}
			})
		}
	})

	// Nothing at all was appended by the cases (some had no valid target to
	// read): the first record of the whole store is this one.
	sentinel := input(uuid.NewString())
	e.postJSON(t, sentinel).wantStatus(t, http.StatusCreated)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var first eventstore.Record
	err := e.store.Subscribe(ctx, 0, func(_ context.Context, batch []eventstore.Record) error {
		first = batch[0]
		cancel()
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("subscribe: %v", err)
	}
	if first.ID != sentinel["id"] {
		t.Errorf("first record in the store is %s (stream %s), want the sentinel: a bad request appended", first.ID, first.Stream)
	}
}

// A body the server cannot read (broken chunked framing) is a 400 naming
// the body. No client sends that, so the request is written by hand and the
// answer checked with Check.
func TestUnreadableBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	conn, err := d.DialContext(t.Context(), "tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Bounds a hang should the server wait for more; not a timing assertion.
	if err := conn.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	const body = "zz\r\n{}\r\n0\r\n\r\n" // "zz" is no chunk size
	if _, err := io.WriteString(conn, "POST "+command.APIPath+" HTTP/1.1\r\nHost: test\r\n"+
		"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"+body); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+command.APIPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	e.chk.Check(t, req, []byte(body), resp, b)
	r := reply{status: resp.StatusCode, header: resp.Header, body: b}
	r.wantStatus(t, http.StatusBadRequest)
	if eb := r.envelope(t); len(eb.Errors["body"]) == 0 {
		t.Errorf("errors do not name the body: %s", b)
	}
}

func TestPathCaseInsensitive(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	for _, path := range []string{"/api/v1/activityhistory", "/API/V1/ACTIVITYHISTORY", "/Api/V1/ActivityHistory"} {
		target := uuid.NewString()
		r := e.post(t, path, "application/json", bytes.NewReader(marshal(t, input(target))))
		r.wantStatus(t, http.StatusCreated)
		if len(mustRead(t, e.store, target)) != 1 {
			t.Errorf("%s: not recorded", path)
		}
	}
	// Methods and paths the API does not have. (GET is the query side's: the
	// document describes the whole service, so it is not tried here.)
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodDelete, "/api/v1/activityhistory", http.StatusMethodNotAllowed},
		{http.MethodPut, "/API/V1/ActivityHistory", http.StatusMethodNotAllowed},
		{http.MethodPost, "/api/v1/activityhistoryx", http.StatusNotFound},
		{http.MethodPost, "/api/v2/activityHistory", http.StatusNotFound},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), c.method, e.url+c.path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		r := e.noRoute(t, req)
		r.wantStatus(t, c.status)
		r.envelope(t)
	}
}

func TestContentTypesAccepted(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON;charset=UTF-8", "application/vnd.activity+json"} {
		e.post(t, command.APIPath, ct, bytes.NewReader(marshal(t, input(uuid.NewString())))).wantStatus(t, http.StatusCreated)
	}
}

func TestMiddlewareAndAuthor(t *testing.T) {
	t.Parallel()
	tokenAuthor := activity.Author{FullName: "Token User", Email: "token.user@example.org"}
	e := newEnv(t, command.EngineDeps{
		Middleware: []gin.HandlerFunc{func(c *gin.Context) {
			if c.GetHeader("Authorization") == "" {
				c.Header("WWW-Authenticate", `Bearer realm="test"`)
				httpapi.Error(c, http.StatusUnauthorized, "a bearer token is required", nil)
				return
			}
			c.Set("author", tokenAuthor)
			c.Next()
		}},
		Author: func(c *gin.Context) (activity.Author, bool) {
			a, ok := c.Get("author")
			if !ok {
				return activity.Author{}, false
			}
			return a.(activity.Author), true
		},
	})

	target := uuid.NewString()
	r := e.post(t, command.APIPath, "application/json", bytes.NewReader(marshal(t, input(target))))
	r.wantStatus(t, http.StatusUnauthorized)
	r.envelope(t)
	wantNoStream(t, e.store, target)

	anonymous := input(target)
	delete(anonymous, "authorDetails")
	signed := input(target)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+command.APIPath, bytes.NewReader(marshal(t, []any{anonymous, signed})))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer x")
	e.do(t, req).wantStatus(t, http.StatusCreated)
	recs := mustRead(t, e.store, target)
	if len(recs) != 2 {
		t.Fatalf("stream holds %d records, want 2", len(recs))
	}
	if got := decodeRecord(t, recs[0]).AuthorDetails; got != tokenAuthor {
		t.Errorf("author of an activity sent without one = %+v, want the token's", got)
	}
	if got := decodeRecord(t, recs[1]).AuthorDetails; got.FullName != "Jo Bloggs" {
		t.Errorf("author sent by the client was replaced: %+v", got)
	}
}

func TestStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, command.EngineDeps{})
	e.postJSON(t, input(uuid.NewString())).wantStatus(t, http.StatusCreated)
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.postJSON(t, input(uuid.NewString()))
	r.wantStatus(t, http.StatusServiceUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if eb := r.envelope(t); eb.Message != http.StatusText(http.StatusServiceUnavailable) {
		t.Errorf("503 message %q leaks more than the status text", eb.Message)
	}
}

// Author details from the caller's token are input too: a name of control
// characters, or an email that is no address, is refused with a 400 that
// blames the token's claim, and nothing is appended.
func TestTokenAuthorIsValidated(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		author activity.Author
		field  string
	}{
		{"NUL name", activity.Author{FullName: strings.Repeat("\x00", 20), Email: "a@example.org"}, "authorDetails.fullName"},
		{"long name", activity.Author{FullName: strings.Repeat("\x00", 300)}, "authorDetails.fullName"},
		{"email without @", activity.Author{FullName: "A", Email: strings.Repeat("e", 600)}, "authorDetails.email"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, command.EngineDeps{
				Author: func(*gin.Context) (activity.Author, bool) { return c.author, true },
			})
			target := uuid.NewString()
			anonymous := input(target)
			delete(anonymous, "authorDetails")
			r := e.postJSON(t, anonymous)
			r.wantStatus(t, http.StatusBadRequest)
			eb := r.envelope(t)
			msgs := eb.Errors[c.field]
			if len(msgs) == 0 || !strings.Contains(msgs[0], "token") || !strings.Contains(eb.Message, "token") {
				t.Fatalf("want %s blamed on the token, got %s", c.field, r.body)
			}
			wantNoStream(t, e.store, target)
			// An activity carrying its own author does not need the token's.
			e.postJSON(t, input(target)).wantStatus(t, http.StatusCreated)
		})
	}
}
