package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/auth"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/projection/readmodeltest"
	"github.com/council/activityhistory/query"
)

const secret = "audit-test-secret-0123456789abcdef-0123"

func TestMain(m *testing.M) {
	gin.SetMode(gin.TestMode)
	m.Run()
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

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fixture is the query engine with the audit routes, over a real embedded
// JetStream store, with real JWT auth; every exchange is checked against
// the OpenAPI document.
type fixture struct {
	url     string
	handler http.Handler
	store   *natsjs.Store
	chk     *apitest.Checker
	logs    *lockedBuffer
	reg     *prometheus.Registry
	// clock is what expiry is judged by: 2024-06-01 unless a test moves it.
	clock *readmodeltest.Clock
	// tokens by role: reader, auditor, analyst
	tokens map[string]string
	svc    *audit.Service
}

func openStore(t testing.TB, cfg natsjs.Config) *natsjs.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := natsjs.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newFixture(t testing.TB, chk *apitest.Checker, s *natsjs.Store) *fixture {
	t.Helper()
	return newFixtureWith(t, chk, s, activity.Rules{})
}

// newFixtureWith is newFixture with validation rules (target id format…).
func newFixtureWith(t testing.TB, chk *apitest.Checker, s *natsjs.Store, rules activity.Rules) *fixture {
	t.Helper()
	if s == nil {
		s = openStore(t, natsjs.Config{DataDir: t.TempDir()})
	}
	f := &fixture{store: s, chk: chk, logs: &lockedBuffer{}, reg: prometheus.NewRegistry(), tokens: map[string]string{},
		clock: readmodeltest.NewClock(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC))}
	authn, err := auth.New(auth.Config{HMACSecret: []byte(secret),
		ReadGroups: []string{"readers"}, AuditGroups: []string{"auditors"}, ExportGroups: []string{"analysts"}})
	if err != nil {
		t.Fatal(err)
	}
	for role, group := range map[string]string{"reader": "readers", "auditor": "auditors", "analyst": "analysts"} {
		tok, err := auth.Mint([]byte(secret), auth.MintClaims{Subject: role, Name: role, Email: role + "@example.org",
			Groups: []string{group}, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		f.tokens[role] = tok
	}
	v, err := activity.NewValidator(rules)
	if err != nil {
		t.Fatal(err)
	}
	m := projection.NewMemory()
	m.Now = f.clock.Now
	qs, err := query.New(m, query.Options{CursorSecret: []byte(secret), Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	e := query.NewEngine(qs, query.EngineDeps{Logger: slog.New(slog.NewJSONHandler(f.logs, nil)),
		Middleware: []gin.HandlerFunc{authn.Require(auth.Read)}})
	cs, err := query.NewCursors([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	svc, err := audit.New(audit.Store{Streams: s, Heads: s, Log: s, Eraser: s}, audit.Options{Cursors: cs, Validator: v, Now: f.clock.Now, Registerer: f.reg})
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	audit.Mount(e, svc, audit.Routes{
		Audit:      []gin.HandlerFunc{authn.Require(auth.Audit)},
		Export:     []gin.HandlerFunc{authn.Require(auth.Export)},
		Registerer: f.reg,
	})
	f.handler = e
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// get GETs path as role and checks the exchange against the document.
func (f *fixture) get(t *testing.T, role, path string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, f.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := f.tokens[role]; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, body := f.chk.Do(t, nil, req)
	return response{res.StatusCode, res.Header, body}
}

// newActivity is a valid activity of target created at.
func newActivity(target string, at time.Time) activity.Activity {
	return activity.Activity{
		ID: uuid.NewString(), TargetID: target, Type: activity.TypeUpdate, TargetType: "person",
		CreatedAt:     at.UTC(),
		OldData:       json.RawMessage(`{"name":"Ann"}`),
		NewData:       json.RawMessage(`{"name":"Anne <&>"}`),
		AuthorDetails: activity.Author{FullName: "A Officer", Email: "a.officer@example.org"},
		SourceDomain:  "person-api",
	}
}

// record appends acts to their target's stream as the command side does.
func record(t testing.TB, s eventstore.Store, acts ...activity.Activity) []eventstore.Record {
	t.Helper()
	var out []eventstore.Record
	for len(acts) > 0 {
		n := min(len(acts), eventstore.MaxEventsPerAppend)
		evs := make([]eventstore.Event, n)
		for i, a := range acts[:n] {
			b, err := activity.EncodeEvent(a)
			if err != nil {
				t.Fatal(err)
			}
			evs[i] = eventstore.Event{ID: a.ID, Type: activity.EventRecorded, Data: b}
		}
		res, err := s.Append(t.Context(), acts[0].TargetID, eventstore.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, res.Records...)
		acts = acts[n:]
	}
	return out
}

func series(target string, n int) []activity.Activity {
	base := time.Date(2024, 3, 1, 9, 0, 0, 0, time.UTC)
	acts := make([]activity.Activity, n)
	for i := range acts {
		acts[i] = newActivity(target, base.Add(time.Duration(i)*time.Second))
	}
	return acts
}

type replayPage struct {
	TargetID          string                      `json:"targetId"`
	Results           []audit.WireRecord          `json:"results"`
	PaginationDetails struct{ NextToken *string } `json:"paginationDetails"`
}

func decode[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s: %v", r.body, err)
	}
	return v
}

func TestReplay1200RecordsPagedWithoutGapOrDuplicate(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	target := uuid.NewString()
	recs := record(t, f.store, series(target, 1200)...)
	record(t, f.store, series(uuid.NewString(), 3)...) // another stream, not replayed

	for _, size := range []int{100, 7, 1000} {
		var got []audit.WireRecord
		path := fmt.Sprintf("/api/v1/activityHistory/streams/%s/events?pageSize=%d", strings.ToUpper(target), size)
		for pages := 0; ; pages++ {
			if pages > 1200 {
				t.Fatal("paging does not end")
			}
			p := decode[replayPage](t, f.get(t, "auditor", path))
			if p.TargetID != target {
				t.Fatalf("targetId %q, want the canonical %q", p.TargetID, target)
			}
			got = append(got, p.Results...)
			if p.PaginationDetails.NextToken == nil {
				break
			}
			path = fmt.Sprintf("/api/v1/activityHistory/streams/%s/events?pageSize=%d&paginationToken=%s", target, size, *p.PaginationDetails.NextToken)
		}
		if len(got) != len(recs) {
			t.Fatalf("pages of %d: %d records, want %d", size, len(got), len(recs))
		}
		for i, w := range got {
			r := recs[i]
			if w.Revision != uint64(i) || w.ID != r.ID || w.Hash != r.Hash || w.PrevHash != r.PrevHash || w.Position != r.Position {
				t.Fatalf("pages of %d: record %d is %+v, want %+v", size, i, w, r)
			}
			data, _ := base64.StdEncoding.DecodeString(w.DataBase64)
			if !bytes.Equal(data, r.Data) || !bytes.Equal(w.Data, r.Data) {
				t.Fatalf("record %d: data %s / %s, want the stored bytes %s", i, w.Data, data, r.Data)
			}
		}
	}
	// From a revision, and the client's own recomputation of the chain.
	p := decode[replayPage](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+target+"/events?fromRevision=1195"))
	if len(p.Results) != 5 || p.Results[0].Revision != 1195 || p.PaginationDetails.NextToken != nil {
		t.Fatalf("from 1195: %d records from %d, next %v", len(p.Results), p.Results[0].Revision, p.PaginationDetails.NextToken)
	}
	c := &audit.Client{BaseURL: f.url, Token: f.tokens["auditor"], PageSize: 250}
	res, err := c.VerifyRemote(t.Context(), target, &eventstore.Head{Revision: 1199, Hash: recs[1199].Hash})
	if err != nil || res.Records != 1200 || res.Head.Hash != recs[1199].Hash {
		t.Fatalf("client verification: %+v, %v", res, err)
	}
	// Every call is in the audit log, with who and how many.
	if !strings.Contains(f.logs.String(), `"msg":"audit","correlationId"`) ||
		!strings.Contains(f.logs.String(), `"targetId":"`+target+`","fromRevision":0,"token":true,"endpoint":"replay","caller":"auditor@example.org","group":"auditors","records":100,`) {
		t.Errorf("no audit log line of a replay:\n%.2000s", f.logs.String())
	}
	if n := counterValue(t, f.reg, "activityhistory_audit_records_total", "replay", "auditors"); n < 3600 {
		t.Errorf("replayed records counted %v, want at least 3600", n)
	}
}

// counterValue is the value of one series of a counter vector in reg.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
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
			ok := true
			for i, lp := range m.GetLabel() {
				if i < len(labels) && lp.GetValue() != labels[i] {
					ok = false
				}
			}
			if ok {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no %s %v", name, labels)
	return 0
}

func TestReplayErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	target, other := uuid.NewString(), uuid.NewString()
	record(t, f.store, series(target, 3)...)
	record(t, f.store, series(other, 30)...)
	p := decode[replayPage](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+other+"/events?pageSize=2"))
	foreign := *p.PaginationDetails.NextToken
	base := "/api/v1/activityHistory/streams/"
	for _, c := range []struct {
		name, path string
		status     int
		field      string
	}{
		{"unknown stream", base + uuid.NewString() + "/events", 404, ""},
		{"bad target", base + "not-a-uuid/events", 400, "targetId"},
		{"page size 0", base + target + "/events?pageSize=0", 400, "pageSize"},
		{"page size too big", base + target + "/events?pageSize=1001", 400, "pageSize"},
		{"page size not a number", base + target + "/events?pageSize=x", 400, "pageSize"},
		{"negative revision", base + target + "/events?fromRevision=-1", 400, "fromRevision"},
		{"revision with token", base + target + "/events?fromRevision=1&paginationToken=" + foreign, 400, "fromRevision"},
		{"token of another target", base + target + "/events?paginationToken=" + foreign, 400, "paginationToken"},
		{"forged token", base + target + "/events?paginationToken=AAAAAAAAAAAAAAAAAAAAAAAAAAAA", 400, "paginationToken"},
		{"page size twice", base + target + "/events?pageSize=1&pagesize=2", 400, "pageSize"},
		{"verify unknown stream", base + uuid.NewString() + "/verify", 404, ""},
		{"verify bad target", base + "x/verify", 400, "targetId"},
	} {
		r := f.get(t, "auditor", c.path)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
			continue
		}
		if c.field != "" && !bytes.Contains(r.body, []byte(`"`+c.field+`":[`)) {
			t.Errorf("%s: %s does not name %s", c.name, r.body, c.field)
		}
	}
	// Past the end of a stream that exists: an empty last page.
	p = decode[replayPage](t, f.get(t, "auditor", base+target+"/events?fromRevision=3"))
	if len(p.Results) != 0 || p.PaginationDetails.NextToken != nil {
		t.Fatalf("past the end: %+v", p)
	}
}

type verification struct {
	TargetID     string
	Verified     bool
	Records      uint64
	Head         *eventstore.Head
	RecordedHead *eventstore.Head
	Failure      *struct {
		Revision uint64
		Reason   string
	}
}

func TestVerifyEndpoint(t *testing.T) {
	t.Parallel()
	ns := natsServerURL(t)
	s := openStore(t, natsjs.Config{URLs: []string{ns}})
	f := newFixture(t, apitest.New(t), s)
	clean, tampered := uuid.NewString(), uuid.NewString()
	recs := record(t, s, series(clean, 5)...)
	bad := record(t, s, series(tampered, 3)...)

	v := decode[verification](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+clean+"/verify"))
	if !v.Verified || v.Records != 5 || v.Head == nil || v.Head.Hash != recs[4].Hash || v.RecordedHead == nil ||
		v.RecordedHead.Hash != recs[4].Hash || v.Failure != nil {
		t.Fatalf("clean stream: %+v", v)
	}

	// A forged record after the real ones, as someone with server access
	// could publish it.
	forge(t, ns, bad[2])
	v = decode[verification](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+tampered+"/verify"))
	if v.Verified || v.Failure == nil || v.Failure.Revision != 3 || v.Records != 3 {
		t.Fatalf("tampered stream: %+v", v)
	}
	t.Logf("caught: %+v", *v.Failure)
	// The client catches it too, from the replayed records alone.
	c := &audit.Client{BaseURL: f.url, Token: f.tokens["auditor"]}
	if _, err := c.VerifyRemote(t.Context(), tampered, nil); err == nil || !strings.Contains(err.Error(), "revision 3") {
		t.Fatalf("client verification of the tampered stream: %v", err)
	}
	// A record that claims a later revision: the stream cannot be replayed
	// past the gap. Replay serves what comes before it, then 409.
	gapped := uuid.NewString()
	good := record(t, s, series(gapped, 3)...)
	tam := natstest.NewTamperer(t, ns, "ACTIVITY")
	tam.Publish(t, natstest.Forged(tam.Message(t, good[2].Position).Subject, 7, good[2].Hash))
	p := decode[replayPage](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+gapped+"/events"))
	if len(p.Results) != 3 || p.PaginationDetails.NextToken == nil {
		t.Fatalf("replay of a gapped stream: %d records, next %v", len(p.Results), p.PaginationDetails.NextToken)
	}
	r := f.get(t, "auditor", "/api/v1/activityHistory/streams/"+gapped+"/events?paginationToken="+*p.PaginationDetails.NextToken)
	if r.status != http.StatusConflict || !bytes.Contains(r.body, []byte("revision 3")) {
		t.Fatalf("replay past the gap: %d %s", r.status, r.body)
	}
	v = decode[verification](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+gapped+"/verify"))
	if v.Verified || v.Failure == nil || v.Failure.Revision != 3 {
		t.Fatalf("gapped stream: %+v", v)
	}
	if _, err := c.VerifyRemote(t.Context(), gapped, nil); err == nil || !strings.Contains(err.Error(), "revision 3") {
		t.Fatalf("client verification of the gapped stream: %v", err)
	}
	// The clean stream is untouched.
	v = decode[verification](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+clean+"/verify"))
	if !v.Verified {
		t.Fatalf("clean stream after tampering with another: %+v", v)
	}
}

// exportPage is the json export's shape.
type exportPage struct {
	Results           []activity.Activity `json:"results"`
	PaginationDetails struct {
		NextToken   *string `json:"nextToken"`
		ResumeToken string  `json:"resumeToken"`
	} `json:"paginationDetails"`
}

func exportPath(token string, params ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		q.Add(params[i], params[i+1])
	}
	if token != "" {
		q.Set("paginationToken", token)
	}
	return "/api/v1/activityHistory/export?" + q.Encode()
}

// An export walked page by page while writes arrive serves every record
// exactly once; a later load from the last resume token gets exactly the
// records written since.
func TestExportWhileWriting(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	want := map[string]bool{}
	var mu sync.Mutex
	add := func(acts []activity.Activity) {
		mu.Lock()
		for _, a := range acts {
			want[a.ID] = true
		}
		mu.Unlock()
	}
	targets := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	for _, tg := range targets {
		acts := series(tg, 100)
		record(t, f.store, acts...)
		add(acts)
	}
	stop := make(chan struct{})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			acts := series(targets[i%3], 3)
			record(t, f.store, acts...)
			add(acts)
		}
	}()
	seen := map[string]int{}
	walk := func(token string) string {
		for pages := 0; ; pages++ {
			if pages > 1000 {
				t.Fatal("export does not end")
			}
			p := decode[exportPage](t, f.get(t, "analyst", exportPath(token, "pageSize", "25")))
			for _, a := range p.Results {
				seen[a.ID]++
			}
			token = p.PaginationDetails.ResumeToken
			if p.PaginationDetails.NextToken == nil {
				return token
			}
			if *p.PaginationDetails.NextToken != token {
				t.Fatalf("nextToken %q differs from resumeToken %q", *p.PaginationDetails.NextToken, token)
			}
		}
	}
	token := walk("")
	close(stop)
	<-writing
	walk(token)
	mu.Lock()
	defer mu.Unlock()
	for id, n := range seen {
		if n != 1 {
			t.Errorf("record %s exported %d times", id, n)
		}
		if !want[id] {
			t.Errorf("record %s exported but never written", id)
		}
	}
	for id := range want {
		if seen[id] == 0 {
			t.Errorf("record %s never exported", id)
		}
	}
	t.Logf("%d records exported once each, %d written while exporting", len(seen), len(want)-300)
}

func TestExportCSVAndNDJSON(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	target := uuid.NewString()
	awkward := newActivity(target, time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC))
	awkward.SourceDomain = `tenure, "leasehold" api`
	awkward.AuthorDetails = activity.Author{FullName: "Zoë O'Brien, \"Jo\"\nSecond line", Email: "zoe@example.org"}
	awkward.OldData = json.RawMessage(`{"note":"a,b\n\"c\"","name":"Łukasz 😀"}`)
	awkward.NewData = nil
	awkward.TimeToLiveForRecord = 30
	plain := newActivity(target, time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC))
	record(t, f.store, awkward, plain)

	r := f.get(t, "auditor", exportPath("", "format", "csv"))
	if r.status != 200 || r.header.Get("Content-Type") != "text/csv; charset=utf-8; header=present" {
		t.Fatalf("csv: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r.header.Get(audit.ResumeTokenHeader) == "" || r.header.Get(audit.NextTokenHeader) != "" {
		t.Errorf("csv of everything: resume %q, next %q", r.header.Get(audit.ResumeTokenHeader), r.header.Get(audit.NextTokenHeader))
	}
	if !bytes.Contains(r.body, []byte("\r\n")) {
		t.Error("csv lines do not end in CRLF (RFC 4180)")
	}
	rows := readCSV(t, r.body)
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(audit.CSVColumns, ",") {
		t.Fatalf("rows %q", rows)
	}
	wantRow := []string{awkward.ID, target, "person", "update", "2024-05-06T07:08:09.123456789Z", awkward.SourceDomain,
		awkward.AuthorDetails.FullName, "zoe@example.org", "30", string(awkward.OldData), "null"}
	if strings.Join(rows[1], "\x00") != strings.Join(wantRow, "\x00") {
		t.Fatalf("row\n got %q\nwant %q", rows[1], wantRow)
	}

	// Pages of one, with the next token in the headers.
	r = f.get(t, "auditor", exportPath("", "format", "ndjson", "pageSize", "1"))
	lines := strings.Split(strings.TrimSuffix(string(r.body), "\n"), "\n")
	next := r.header.Get(audit.NextTokenHeader)
	if len(lines) != 1 || next == "" || !strings.Contains(r.header.Get("Link"), "paginationToken="+next) || !strings.Contains(r.header.Get("Link"), `rel="next"`) {
		t.Fatalf("ndjson page 1: %q, next %q, link %q", lines, next, r.header.Get("Link"))
	}
	var a activity.Activity
	if err := json.Unmarshal([]byte(lines[0]), &a); err != nil || !a.Equal(awkward) {
		t.Fatalf("ndjson line %s: %v", lines[0], err)
	}
	r = f.get(t, "auditor", exportPath(next, "format", "ndjson", "pageSize", "1"))
	if err := json.Unmarshal(bytes.TrimSpace(r.body), &a); err != nil || a.ID != plain.ID || r.header.Get(audit.NextTokenHeader) != "" {
		t.Fatalf("ndjson page 2: %s, next %q", r.body, r.header.Get(audit.NextTokenHeader))
	}
}

// An activity is exported until the second it expires, and not from then
// on, filtered or not.
// expirySet is an activity expiring two days after at, one kept with it
// forever, and one of another target kept a year.
func expirySet() (at time.Time, expiring, kept, long activity.Activity) {
	at = time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	expiring = newActivity(uuid.NewString(), at)
	expiring.TimeToLiveForRecord = 2
	kept = newActivity(expiring.TargetID, at.Add(time.Second))
	long = newActivity(uuid.NewString(), at.Add(2*time.Second))
	long.TimeToLiveForRecord = 365
	return at, expiring, kept, long
}

func TestExportSkipsExpired(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	at, expiring, kept, long := expirySet()
	record(t, f.store, expiring, kept, long)
	ids := func(params ...string) string {
		t.Helper()
		var got []string
		token := ""
		for {
			p := decode[exportPage](t, f.get(t, "auditor", exportPath(token, append(params, "pageSize", "1")...)))
			for _, a := range p.Results {
				got = append(got, a.ID)
			}
			if p.PaginationDetails.NextToken == nil {
				return strings.Join(got, ",")
			}
			token = *p.PaginationDetails.NextToken
		}
	}
	all := strings.Join([]string{expiring.ID, kept.ID, long.ID}, ",")
	live := strings.Join([]string{kept.ID, long.ID}, ",")
	f.clock.Set(at.AddDate(0, 0, 2).Add(-time.Second))
	if got := ids(); got != all {
		t.Fatalf("a second before expiry: %s, want %s", got, all)
	}
	f.clock.Set(at.AddDate(0, 0, 2))
	if got := ids(); got != live {
		t.Fatalf("at expiry: %s, want %s", got, live)
	}
	if got := ids("type", "update", "from", "2024-05-01T00:00:00Z"); got != live {
		t.Fatalf("at expiry, filtered: %s, want %s", got, live)
	}
	r := f.get(t, "auditor", exportPath("", "format", "csv"))
	if r.status != 200 || bytes.Contains(r.body, []byte(expiring.ID)) || !bytes.Contains(r.body, []byte(long.ID)) {
		t.Fatalf("csv at expiry: %d %s", r.status, r.body)
	}
}

func TestExportFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	base := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	var acts []activity.Activity
	for i := range 60 {
		a := newActivity(uuid.NewString(), base.Add(time.Duration(i)*time.Hour))
		a.Type = activity.Types[i%len(activity.Types)]
		a.SourceDomain = []string{"person-api", "tenure-api", "finance"}[i%3]
		if i%4 == 0 {
			a.TargetType = "tenure"
		}
		acts = append(acts, a)
		record(t, f.store, a)
	}
	for _, c := range []struct {
		params []string
		filter activity.Filter
	}{
		{[]string{"targetType", "tenure"}, activity.Filter{TargetTypes: []activity.TargetType{"tenure"}}},
		{[]string{"type", "create,end"}, activity.Filter{Types: []activity.Type{"create", "end"}}},
		{[]string{"sourceDomain", "finance", "sourceDomain", "tenure-api"}, activity.Filter{SourceDomains: []string{"finance", "tenure-api"}}},
		{[]string{"from", "2024-01-02T00:00:00Z", "to", "2024-01-02T12:00:00+00:00"},
			activity.Filter{From: base.Add(24 * time.Hour), To: base.Add(36 * time.Hour)}},
		{[]string{"type", "update", "targetType", "person", "sourceDomain", "person-api", "from", "2024-01-01T05:00:00Z"},
			activity.Filter{Types: []activity.Type{"update"}, TargetTypes: []activity.TargetType{"person"}, SourceDomains: []string{"person-api"}, From: base.Add(5 * time.Hour)}},
	} {
		var want []string
		for _, a := range acts {
			if c.filter.Match(a) {
				want = append(want, a.ID)
			}
		}
		var got []string
		token := ""
		for {
			p := decode[exportPage](t, f.get(t, "auditor", exportPath(token, append(c.params, "pageSize", "4")...)))
			for _, a := range p.Results {
				got = append(got, a.ID)
			}
			if p.PaginationDetails.NextToken == nil {
				break
			}
			token = *p.PaginationDetails.NextToken
		}
		if strings.Join(got, ",") != strings.Join(want, ",") || len(want) == 0 {
			t.Errorf("filter %v: got %d records, want %d in store order", c.params, len(got), len(want))
		}
		// The token is bound to its filters.
		if token != "" {
			r := f.get(t, "auditor", exportPath(token, "pageSize", "4"))
			if r.status != 400 || !bytes.Contains(r.body, []byte(`"paginationToken"`)) {
				t.Errorf("filter %v: token without its filters: %d %s", c.params, r.status, r.body)
			}
		}
	}
	for _, c := range []struct {
		params []string
		field  string
	}{
		{[]string{"format", "xml"}, "format"},
		{[]string{"type", "created"}, "type"},
		{[]string{"targetType", "spaceship"}, "targetType"},
		{[]string{"from", "yesterday"}, "from"},
		{[]string{"from", "2024-02-01T00:00:00Z", "to", "2024-01-01T00:00:00Z"}, "to"},
		{[]string{"pageSize", "5001"}, "pageSize"},
		{[]string{"pageSize", "0"}, "pageSize"},
	} {
		r := f.get(t, "auditor", exportPath("", c.params...))
		if r.status != 400 || !bytes.Contains(r.body, []byte(`"`+c.field+`":[`)) {
			t.Errorf("%v: %d %s, want 400 naming %s", c.params, r.status, r.body, c.field)
		}
	}
}

func TestAuditRoutesNeedTheirGroups(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	target := uuid.NewString()
	record(t, f.store, series(target, 2)...)
	events := "/api/v1/activityHistory/streams/" + target + "/events"
	verify := "/api/v1/activityHistory/streams/" + target + "/verify"
	export := "/api/v1/activityHistory/export"
	for _, c := range []struct {
		role, path string
		status     int
	}{
		{"", events, 401}, {"", verify, 401}, {"", export, 401},
		{"reader", events, 403}, {"reader", verify, 403}, {"reader", export, 403},
		{"analyst", events, 403}, {"analyst", verify, 403}, {"analyst", export, 200},
		{"auditor", events, 200}, {"auditor", verify, 200}, {"auditor", export, 200},
	} {
		if r := f.get(t, c.role, c.path); r.status != c.status {
			t.Errorf("%q GET %s: %d, want %d: %s", c.role, c.path, r.status, c.status, r.body)
		}
	}
}

func readCSV(t *testing.T, b []byte) [][]string {
	t.Helper()
	rows, err := csvReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("csv %s: %v", b, err)
	}
	return rows
}

func csvReader(r io.Reader) *csv.Reader { return csv.NewReader(r) }

// natsServerURL runs a nats-server reachable over TCP and returns its URL.
func natsServerURL(t *testing.T) string {
	t.Helper()
	return natstest.StartServer(t).ClientURL()
}

// forge publishes a forged record after last, on its stream's subject,
// behind the store's back.
func forge(t *testing.T, url string, last eventstore.Record) {
	t.Helper()
	tam := natstest.NewTamperer(t, url, "ACTIVITY")
	subject := tam.Message(t, last.Position).Subject
	tam.Publish(t, natstest.Forged(subject, last.Revision+1, last.Hash))
}

// Opaque target ids may hold '/': sent as %2F they stay one path segment.
func TestOpaqueTargetWithSlash(t *testing.T) {
	t.Parallel()
	f := newFixtureWith(t, apitest.New(t), nil, activity.Rules{TargetIDFormat: activity.TargetIDOpaque})
	const target = "rent/account+7=x"
	record(t, f.store, series(target, 4)...)
	p := decode[replayPage](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+url.PathEscape(target)+"/events"))
	if p.TargetID != target || len(p.Results) != 4 {
		t.Fatalf("replay of %q: %+v", target, p)
	}
	c := &audit.Client{BaseURL: f.url, Token: f.tokens["auditor"]}
	if res, err := c.VerifyRemote(t.Context(), target, nil); err != nil || res.Records != 4 {
		t.Fatalf("client verification of %q: %+v, %v", target, res, err)
	}
	v := decode[verification](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+url.PathEscape(target)+"/verify"))
	if !v.Verified || v.Records != 4 {
		t.Fatalf("verify %q: %+v", target, v)
	}
}
