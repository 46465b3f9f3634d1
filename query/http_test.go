package query_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/redistest"
	"github.com/council/activityhistory/query"
)

const (
	secret  = "query-test-secret-0123456789abcdef"
	targetA = "6f3c8a4e-0d7b-4d8e-9a51-2f1e5b7c9d01"
	targetB = "8b2d1f6a-3c4e-4a5b-8c7d-9e0f1a2b3c4d"
	unknown = "0d5e6f70-8192-4a3b-8c4d-5e6f708192a3"
)

var base = time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)

// model is a read model the tests can fill and the service can read.
type model interface {
	query.Reader
	Apply(ctx context.Context, position uint64, acts []activity.Activity) error
}

// models are the real read models every paging test runs against.
var models = []struct {
	name string
	new  func(t *testing.T) model
}{
	{"memory", func(*testing.T) model { return projection.NewMemory() }},
	{"redis", func(t *testing.T) model {
		c, prefix := redistest.Client(t)
		return projection.NewRedis(c, prefix)
	}},
}

// lockedBuffer collects log output written from server goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// fixture is an engine over a read model. Every exchange with it is checked
// against the OpenAPI document by chk, which the top-level test owns.
type fixture struct {
	url   string
	model model
	logs  *lockedBuffer
	pos   uint64
	chk   *apitest.Checker
}

func newFixture(t *testing.T, chk *apitest.Checker, m model, mw ...gin.HandlerFunc) *fixture {
	t.Helper()
	logs := &lockedBuffer{}
	svc, err := query.New(m, query.Options{CursorSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	e := query.NewEngine(svc, query.EngineDeps{
		Logger:     slog.New(slog.NewJSONHandler(logs, nil)),
		Middleware: mw,
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return &fixture{url: srv.URL, model: m, logs: logs, chk: chk}
}

// add records n activities of target, one minute apart after base; the
// ids are random so that id order and time order differ.
func (f *fixture) add(t *testing.T, target string, n int) []activity.Activity {
	t.Helper()
	acts := make([]activity.Activity, n)
	for i := range acts {
		acts[i] = newActivity(target, base.Add(time.Duration(i)*time.Minute))
	}
	f.apply(t, acts)
	return acts
}

func (f *fixture) apply(t *testing.T, acts []activity.Activity) {
	t.Helper()
	f.pos++
	if err := f.model.Apply(t.Context(), f.pos, acts); err != nil {
		t.Fatal(err)
	}
}

func newActivity(target string, at time.Time) activity.Activity {
	id := uuid.NewString()
	return activity.Activity{
		ID: id, TargetID: target, Type: activity.TypeUpdate, TargetType: "person",
		CreatedAt:     at,
		OldData:       json.RawMessage(`{"Name":"Ann","nested":{"k":[1,2]}}`),
		NewData:       json.RawMessage(`{"Name":"Anne"}`),
		AuthorDetails: activity.Author{FullName: "A Officer", Email: "a.officer@example.org"},
		SourceDomain:  "person-api",
	}
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// get GETs rawURL and checks the answer against the OpenAPI document.
func (f *fixture) get(t *testing.T, rawURL string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, req)
}

func (f *fixture) do(t *testing.T, req *http.Request) response {
	t.Helper()
	res, body := f.chk.Do(t, nil, req)
	return response{status: res.StatusCode, header: res.Header, body: body}
}

// noRoute sends req, which the document deliberately does not describe, and
// checks that the answer is the 404 or 405 error envelope.
func (f *fixture) noRoute(t *testing.T, method, rawURL string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	f.chk.CheckNoRoute(t, req, res, body)
	return response{status: res.StatusCode, header: res.Header, body: body}
}

func historyURL(base string, params ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Add(params[i], params[i+1])
	}
	return base + "/api/v1/activityHistory?" + q.Encode()
}

type page struct {
	results []activity.Activity
	next    *string
}

// decodePage checks the response shape and that results are newest first.
func decodePage(t *testing.T, r response) page {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var shape struct {
		Results           []json.RawMessage          `json:"results"`
		PaginationDetails map[string]json.RawMessage `json:"paginationDetails"`
	}
	if err := json.Unmarshal(r.body, &shape); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	raw, ok := shape.PaginationDetails["nextToken"]
	if !ok || len(shape.PaginationDetails) != 1 {
		t.Fatalf("paginationDetails = %v, want exactly nextToken", shape.PaginationDetails)
	}
	var p page
	if err := json.Unmarshal(raw, &p.next); err != nil {
		t.Fatalf("nextToken %s: %v", raw, err)
	}
	if shape.Results == nil {
		t.Fatalf("results is %s, want an array", r.body)
	}
	for _, doc := range shape.Results {
		var a activity.Activity
		if err := json.Unmarshal(doc, &a); err != nil {
			t.Fatal(err)
		}
		p.results = append(p.results, a)
	}
	for i := 1; i < len(p.results); i++ {
		if p.results[i-1].SortKey() <= p.results[i].SortKey() {
			t.Errorf("results %d and %d are not newest first: %s, %s", i-1, i,
				p.results[i-1].SortKey(), p.results[i].SortKey())
		}
	}
	return p
}

// newestFirst returns the ids of acts in the order the API must give them.
func newestFirst(acts []activity.Activity) []string {
	s := slices.Clone(acts)
	slices.SortFunc(s, func(a, b activity.Activity) int { return strings.Compare(b.SortKey(), a.SortKey()) })
	ids := make([]string, len(s))
	for i, a := range s {
		ids[i] = a.ID
	}
	return ids
}

func ids(acts []activity.Activity) []string {
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = a.ID
	}
	return out
}

// checkError checks the envelope of an error response and, for a 400,
// that it names field.
func checkError(t *testing.T, r response, status int, field string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	var e httpapi.ErrorBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("body %s is not the error envelope: %v", r.body, err)
	}
	if e.StatusCode != status || e.Message == "" || e.TraceID == "" {
		t.Errorf("envelope %+v", e)
	}
	if e.CorrelationID == "" || e.CorrelationID != r.header.Get(httpapi.CorrelationHeader) {
		t.Errorf("correlationId %q, header %q", e.CorrelationID, r.header.Get(httpapi.CorrelationHeader))
	}
	if field != "" && len(e.Errors[field]) == 0 {
		t.Errorf("errors %v do not name %s", e.Errors, field)
	}
	if status == http.StatusBadRequest && len(e.Errors) == 0 {
		t.Errorf("400 without errors: %s", r.body)
	}
}

func TestHistoryPageSizes(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	cases := []struct {
		records  int
		pageSize string // "" = absent
		want     int
		wantNext bool
	}{
		{10, "", 10, false},
		{30, "", 10, true},
		{30, "5", 5, true},
		{30, "15", 15, true},
		{30, "100", 30, false},
		{30, "30", 30, false}, // exactly full single page
		{30, "29", 29, true},
		{1, "1", 1, false},
		{1001, "1000", 1000, true},
	}
	for _, m := range models {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%d records pageSize %q", m.name, tc.records, tc.pageSize), func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, chk, m.new(t))
				acts := f.add(t, targetA, tc.records)
				params := []string{"targetId", targetA}
				if tc.pageSize != "" {
					params = append(params, "pageSize", tc.pageSize)
				}
				p := decodePage(t, f.get(t, historyURL(f.url, params...)))
				if want := newestFirst(acts)[:tc.want]; !slices.Equal(ids(p.results), want) {
					t.Errorf("got %d results %v, want the newest %d", len(p.results), ids(p.results), tc.want)
				}
				if (p.next != nil) != tc.wantNext {
					t.Errorf("nextToken %v, want present=%v", p.next, tc.wantNext)
				}
			})
		}
	}
}

// walk follows nextToken to the end, under the filter params if any, and
// returns every result in order and the size of each page.
func walk(t *testing.T, f *fixture, target string, pageSize string, filter ...string) ([]string, []int) {
	t.Helper()
	var all []string
	var sizes []int
	var token string
	for range 2000 {
		params := append([]string{"targetId", target}, filter...)
		if pageSize != "" {
			params = append(params, "pageSize", pageSize)
		}
		if token != "" {
			params = append(params, "paginationToken", token)
		}
		p := decodePage(t, f.get(t, historyURL(f.url, params...)))
		all = append(all, ids(p.results)...)
		sizes = append(sizes, len(p.results))
		if p.next == nil {
			return all, sizes
		}
		if len(*p.next) >= 1024 {
			t.Fatalf("token is %d bytes", len(*p.next))
		}
		token = *p.next
	}
	t.Fatal("paging did not end")
	return nil, nil
}

func TestHistoryWalk(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	cases := []struct {
		name      string
		records   int
		sameTime  bool // all activities share one createdAt: order is by id
		pageSize  string
		wantSizes []int
	}{
		{"35 default", 35, false, "", []int{10, 10, 10, 5}},
		{"exactly full last page", 20, false, "10", []int{10, 10}},
		{"exactly full only page", 10, false, "", []int{10}},
		{"page of one", 3, false, "1", []int{1, 1, 1}},
		{"ties on createdAt", 25, true, "7", []int{7, 7, 7, 4}},
	}
	for _, m := range models {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, chk, m.new(t))
				var acts []activity.Activity
				if tc.sameTime {
					for range tc.records {
						acts = append(acts, newActivity(targetA, base))
					}
					f.apply(t, acts)
				} else {
					acts = f.add(t, targetA, tc.records)
				}
				f.add(t, targetB, 5) // another target's history must not leak in
				got, sizes := walk(t, f, targetA, tc.pageSize)
				if !slices.Equal(got, newestFirst(acts)) {
					t.Errorf("walk gave %v,\nwant %v", got, newestFirst(acts))
				}
				if !slices.Equal(sizes, tc.wantSizes) {
					t.Errorf("page sizes %v, want %v", sizes, tc.wantSizes)
				}
			})
		}
	}
}

func TestHistoryTargetIDCanonical(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	acts := f.add(t, targetA, 12)
	for _, id := range []string{strings.ToUpper(targetA), strings.ReplaceAll(targetA, "-", "")} {
		first := decodePage(t, f.get(t, historyURL(f.url, "targetId", id)))
		if !slices.Equal(ids(first.results), newestFirst(acts)[:10]) || first.next == nil {
			t.Fatalf("targetId %s: got %v next %v", id, ids(first.results), first.next)
		}
		// The token is bound to the target, not to its spelling.
		second := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "paginationToken", *first.next)))
		if !slices.Equal(ids(second.results), newestFirst(acts)[10:]) {
			t.Errorf("second page %v", ids(second.results))
		}
	}
}

func TestHistoryErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	f.add(t, targetA, 15)
	f.add(t, targetB, 15)
	tokenA := *decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA))).next
	tokenB := *decodePage(t, f.get(t, historyURL(f.url, "targetId", targetB))).next
	forged := []byte(tokenA)
	forged[len(forged)/2] ^= 'A' ^ 'B' // stays base64url
	if forged[len(forged)/2] == tokenA[len(forged)/2] {
		t.Fatal("forgery changed nothing")
	}
	otherSecret, err := query.NewCursors([]byte(strings.Repeat("s", query.MinSecretLen)))
	if err != nil {
		t.Fatal(err)
	}
	anyKey := activity.Activity{ID: unknown, CreatedAt: base}.SortKey()

	cases := []struct {
		name   string
		query  string
		status int
		field  string
	}{
		{"unknown target", "targetId=" + unknown, 404, ""},
		{"unknown target with token", "targetId=" + unknown + "&paginationToken=" + otherSecret.Encode(unknown, anyKey), 400, "paginationToken"},
		{"pilot's non-guid targetId", "targetId=12345667890", 400, "targetId"},
		{"missing targetId", "", 400, "targetId"},
		{"empty targetId", "targetId=", 400, "targetId"},
		{"half-braced guid", "targetId={" + targetA, 400, "targetId"},
		{"bracket-wrapped guid", "targetId=[" + targetA + "]", 400, "targetId"},
		{"targetId twice", "targetId=" + targetA + "&targetId=" + targetB, 400, "targetId"},
		{"targetId twice in two cases", "targetId=" + targetA + "&TARGETID=" + targetA, 400, "targetId"},
		{"pageSize 0", "targetId=" + targetA + "&pageSize=0", 400, "pageSize"},
		{"pageSize -1", "targetId=" + targetA + "&pageSize=-1", 400, "pageSize"},
		{"pageSize 1001", "targetId=" + targetA + "&pageSize=1001", 400, "pageSize"},
		{"pageSize abc", "targetId=" + targetA + "&pageSize=abc", 400, "pageSize"},
		{"pageSize 1.5", "targetId=" + targetA + "&pageSize=1.5", 400, "pageSize"},
		{"pageSize huge", "targetId=" + targetA + "&pageSize=99999999999999999999999", 400, "pageSize"},
		{"pageSize bad and targetId bad", "targetId=x&pageSize=0", 400, "pageSize"},
		{"forged token", "targetId=" + targetA + "&paginationToken=" + string(forged), 400, "paginationToken"},
		{"truncated token", "targetId=" + targetA + "&paginationToken=" + tokenA[:len(tokenA)-5], 400, "paginationToken"},
		{"other target's token", "targetId=" + targetA + "&paginationToken=" + tokenB, 400, "paginationToken"},
		{"other secret's token", "targetId=" + targetA + "&paginationToken=" + otherSecret.Encode(targetA, anyKey), 400, "paginationToken"},
		{"garbage token", "targetId=" + targetA + "&paginationToken=%00%ff%3Cscript%3E", 400, "paginationToken"},
		{"base64 json token", "targetId=" + targetA + "&paginationToken=eyJsYXN0IjoiMjAyNCJ9", 400, "paginationToken"},
		{"huge token", "targetId=" + targetA + "&paginationToken=" + strings.Repeat("A", 8000), 400, "paginationToken"},
		{"token with line break", "targetId=" + targetA + "&paginationToken=" + url.QueryEscape(tokenA[:20]+"\n"+tokenA[20:]), 400, "paginationToken"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			checkError(t, f.get(t, f.url+"/api/v1/activityHistory?"+tc.query), tc.status, tc.field)
		})
	}
	t.Run("both fields named", func(t *testing.T) {
		t.Parallel()
		r := f.get(t, f.url+"/api/v1/activityHistory?targetId=x&pageSize=0")
		var e httpapi.ErrorBody
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		if len(e.Errors["targetId"]) == 0 || len(e.Errors["pageSize"]) == 0 {
			t.Errorf("errors %v, want targetId and pageSize", e.Errors)
		}
	})
}

func TestHistoryParamNamesAnyCase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	acts := f.add(t, targetA, 8)
	p := decodePage(t, f.get(t, f.url+"/api/v1/activityhistory?targetid="+targetA+"&PAGESIZE=3"))
	if !slices.Equal(ids(p.results), newestFirst(acts)[:3]) || p.next == nil {
		t.Fatalf("got %v next %v", ids(p.results), p.next)
	}
	p = decodePage(t, f.get(t, f.url+"/api/v1/activityhistory?targetid="+targetA+"&pagesize=5&paginationtoken="+*p.next))
	if !slices.Equal(ids(p.results), newestFirst(acts)[3:]) || p.next != nil {
		t.Fatalf("second page %v next %v", ids(p.results), p.next)
	}
}

func TestGetByID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	acts := f.add(t, targetA, 3)
	want, err := json.Marshal(acts[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{acts[1].ID, strings.ToUpper(acts[1].ID)} {
		r := f.get(t, f.url+"/api/v1/activityHistory/"+id)
		if r.status != http.StatusOK || !bytes.Equal(r.body, want) {
			t.Fatalf("GET %s: %d %s, want %s", id, r.status, r.body, want)
		}
		if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("Content-Type %q", ct)
		}
	}
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory/"+unknown), 404, "")
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory/not-a-uuid"), 400, "id")
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory/%7B"+acts[1].ID), 400, "id")
	// The pilot's .NET Guid spellings, as its clients may send them.
	for _, id := range []string{"%7B" + acts[1].ID + "%7D", "(" + acts[1].ID + ")"} {
		if r := f.get(t, f.url+"/api/v1/activityHistory/"+id); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
			t.Errorf("GET %s: %d %s", id, r.status, r.body)
		}
	}
}

func TestPathAnyCase(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	acts := f.add(t, targetA, 2)
	for _, path := range []string{
		"/api/v1/activityHistory", "/api/v1/activityhistory", "/api/v1/ACTIVITYHISTORY",
		"/API/V1/ActivityHistory", "/api/v1/activityHistory/",
	} {
		p := decodePage(t, f.get(t, f.url+path+"?targetId="+targetA))
		if len(p.results) != 2 {
			t.Errorf("%s: %d results", path, len(p.results))
		}
		r := f.get(t, f.url+strings.TrimSuffix(path, "/")+"/"+acts[0].ID+"/")
		if r.status != http.StatusOK {
			t.Errorf("%s/{id}: %d %s", path, r.status, r.body)
		}
	}
	// Near misses are not folded onto the API, and nothing redirects.
	for _, path := range []string{
		"/api/v1/activityHistorys", "/api/v1/activityHistory//", "/api/v2/activityhistory",
		"/api/v1/activityHi%C5%BFtory", // long s folds to s in Unicode, not here
	} {
		checkError(t, f.noRoute(t, http.MethodGet, f.url+path+"?targetId="+targetA), 404, "")
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	// Methods the API does not have. (POST is the command side's: the
	// document describes the whole service, so it is not tried here.)
	for _, method := range []string{http.MethodDelete, http.MethodPut, http.MethodPatch} {
		checkError(t, f.noRoute(t, method, f.url+"/api/v1/activityhistory"), http.StatusMethodNotAllowed, "")
		checkError(t, f.noRoute(t, method, f.url+"/api/v1/ActivityHistory/"+unknown), http.StatusMethodNotAllowed, "")
	}
}

func TestQueryLog(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), projection.NewMemory())
	f.add(t, targetA, 12)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, historyURL(f.url, "targetId", strings.ToUpper(targetA), "pageSize", "5"), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(httpapi.CorrelationHeader, "corr-123")
	if r := f.do(t, req); r.status != http.StatusOK || r.header.Get(httpapi.CorrelationHeader) != "corr-123" {
		t.Errorf("status %d, correlation id %q", r.status, r.header.Get(httpapi.CorrelationHeader))
	}
	checkError(t, f.get(t, historyURL(f.url, "targetId", targetA, "paginationToken", "bogus")), 400, "paginationToken")

	var queries []map[string]any
	for _, rec := range f.logs.records(t) {
		if rec["msg"] == "query" {
			queries = append(queries, rec)
		}
	}
	if len(queries) != 2 {
		t.Fatalf("%d query lines, want one per history request: %v", len(queries), queries)
	}
	ok := queries[0]
	for k, want := range map[string]any{
		"level": "INFO", "correlationId": "corr-123", "query": "history", "targetId": targetA,
		"pageSize": 5.0, "token": false, "results": 5.0, "hasNext": true, "outcome": "ok", "before": "",
	} {
		if ok[k] != want {
			t.Errorf("query line %s = %v, want %v (line %v)", k, ok[k], want, ok)
		}
	}
	if _, has := ok["durationMs"].(float64); !has {
		t.Errorf("query line lacks durationMs: %v", ok)
	}
	bad := queries[1]
	if bad["outcome"] != "invalid" || bad["token"] != true || !strings.Contains(fmt.Sprint(bad["err"]), "pagination token") {
		t.Errorf("rejected query line %v", bad)
	}
}

func TestMiddlewareOnAPIRoutesOnly(t *testing.T) {
	t.Parallel()
	deny := func(c *gin.Context) {
		if c.GetHeader("Authorization") != "Bearer ok" {
			c.Header("WWW-Authenticate", `Bearer realm="test"`)
			httpapi.Error(c, http.StatusUnauthorized, "missing or bad token", nil)
		}
	}
	f := newFixture(t, apitest.New(t), projection.NewMemory(), deny)
	f.add(t, targetA, 1)
	checkError(t, f.get(t, historyURL(f.url, "targetId", targetA)), http.StatusUnauthorized, "")
	checkError(t, f.get(t, f.url+"/api/v1/ACTIVITYHISTORY?targetId="+targetA), http.StatusUnauthorized, "")
	checkError(t, f.noRoute(t, http.MethodGet, f.url+"/elsewhere"), http.StatusNotFound, "")

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, historyURL(f.url, "targetId", targetA), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer ok")
	if r := f.do(t, req); r.status != http.StatusOK {
		t.Errorf("authorised request: %d %s", r.status, r.body)
	}
}

// A read model that cannot be reached is a 500 with a plain message; the
// backend's error stays in the log.
func TestReaderFailure(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	f := newFixture(t, apitest.New(t), projection.NewRedis(c, "unreachable:"))
	for _, path := range []string{"/api/v1/activityHistory?targetId=" + targetA, "/api/v1/activityHistory/" + unknown} {
		r := f.get(t, f.url+path)
		checkError(t, r, http.StatusInternalServerError, "")
		if bytes.Contains(r.body, []byte("127.0.0.1")) || bytes.Contains(r.body, []byte("refused")) {
			t.Errorf("500 body leaks the cause: %s", r.body)
		}
	}
	logged := false
	for _, rec := range f.logs.records(t) {
		if rec["msg"] == "internal error" && rec["level"] == "ERROR" && rec["correlationId"] != "" {
			logged = true
		}
	}
	if !logged {
		t.Error("the reader failure was not logged with a correlation id")
	}
}

// But client mistakes stay 400 even when the read model is down: they are
// answered before it is asked.
func TestBadRequestWithReaderDown(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	f := newFixture(t, apitest.New(t), projection.NewRedis(c, "unreachable:"))
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory?targetId=nope"), 400, "targetId")
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory?targetId="+targetA+"&paginationToken=zz"), 400, "paginationToken")
	checkError(t, f.get(t, f.url+"/api/v1/activityHistory/zz"), 400, "id")
}

// FuzzRequest: no request, however malformed, gets a 5xx from a healthy
// read model, and every answer is JSON.
func FuzzRequest(f *testing.F) {
	mem := projection.NewMemory()
	var acts []activity.Activity
	for i := range 15 {
		acts = append(acts, newActivity(targetA, base.Add(time.Duration(i)*time.Second)))
	}
	if err := mem.Apply(f.Context(), 1, acts); err != nil {
		f.Fatal(err)
	}
	cs, err := query.NewCursors([]byte(secret))
	if err != nil {
		f.Fatal(err)
	}
	svc, err := query.New(mem, query.Options{CursorSecret: []byte(secret)})
	if err != nil {
		f.Fatal(err)
	}
	e := query.NewEngine(svc, query.EngineDeps{
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	token := cs.Encode(targetA, acts[5].SortKey())
	for _, seed := range [][2]string{
		{"/api/v1/activityHistory", "targetId=" + targetA},
		{"/api/v1/activityHistory", "targetId=" + targetA + "&pageSize=3&paginationToken=" + token},
		{"/api/v1/activityhistory", "targetid=" + strings.ToUpper(targetA) + "&pagesize=0"},
		{"/api/v1/activityHistory", "targetId=%zz&pageSize=%&paginationToken=;;"},
		{"/api/v1/activityHistory", "targetId=" + targetA + "&paginationToken=" + token[:10]},
		{"/api/v1/activityHistory/" + acts[0].ID, ""},
		{"/api/v1/ACTIVITYHISTORY/" + strings.ToUpper(acts[0].ID), "x=1"},
		{"/api/v1/activityHistory/%00", ""},
		{"/api/v1/activityHistory//", ""},
		{"/", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, path, rawQuery string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := &http.Request{
			Method: http.MethodGet, URL: &url.URL{Path: path, RawQuery: rawQuery},
			Header: http.Header{}, Host: "example.org", RequestURI: path,
		}
		req = req.WithContext(t.Context())
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("GET %s?%s: %d %s", path, rawQuery, w.Code, w.Body)
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("GET %s?%s: %d, body not JSON: %q", path, rawQuery, w.Code, w.Body)
		}
	})
}
