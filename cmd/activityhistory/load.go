package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/auth"
	"github.com/council/activityhistory/command"
)

// loadConfig is the load command's flags.
type loadConfig struct {
	URL            string
	Token          string
	Secret         string
	Groups         []string
	Duration       time.Duration
	Writers        int
	Readers        int
	Targets        int
	Batch          int
	BatchTargets   int
	PageSize       int
	Pages          int
	SeedPerTarget  int
	TargetIDFormat string
	JSON           bool
	Progress       time.Duration
	Timeout        time.Duration
}

// load drives a running service with concurrent writers and readers and
// reports throughput and latency per operation. Every request it sends is
// valid, so any failure — a 5xx, a transport error, an unexpected 4xx or a
// page that breaks the API's promises — fails the run: under load it is a bug.
func load(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := parseLoadConfig(args, getenv, stderr)
	if err != nil {
		return err
	}
	l, err := newLoader(cfg, time.Now)
	if err != nil {
		return err
	}
	defer l.client.CloseIdleConnections()
	sum := l.run(ctx, stderr)
	if cfg.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(sum); err != nil {
			return fmt.Errorf("load: write summary: %w", err)
		}
	} else {
		sum.print(stdout)
	}
	if sum.Failed > 0 {
		return fmt.Errorf("load: %d requests failed (%s)", sum.Failed, sum.failureKinds())
	}
	if sum.okTotal() == 0 {
		return errors.New("load: no request succeeded")
	}
	return nil
}

func parseLoadConfig(args []string, getenv func(string) string, stderr io.Writer) (loadConfig, error) {
	c := loadConfig{Groups: []string{devGroup}}
	fs, e := newFlags("load", getenv, stderr)
	fs.StringVar(&c.URL, "url", "http://127.0.0.1:8080", "base URL of the service")
	e.str(&c.Token, "token", "TOKEN", "", "bearer token with read and write groups")
	e.str(&c.Secret, "secret", "AUTH_JWT_SECRET", "", "HS256 secret to mint a token with when --token is empty")
	fs.Func("groups", "groups of the minted token, comma-separated (default "+devGroup+")", func(s string) error {
		c.Groups = splitList(s)
		return nil
	})
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "length of the timed run (after seeding)")
	fs.IntVar(&c.Writers, "writers", 8, "concurrent writers (POST)")
	fs.IntVar(&c.Readers, "readers", 8, "concurrent readers (GET history)")
	fs.IntVar(&c.Targets, "targets", 100, "distinct targetIds")
	fs.IntVar(&c.Batch, "batch", 1, "activities per POST, 1-500 (1 posts an object, more an array)")
	fs.IntVar(&c.BatchTargets, "batch-targets", 1, "distinct targets the activities of one POST are spread over")
	fs.IntVar(&c.PageSize, "page-size", 10, "pageSize of history reads, 1-1000")
	fs.IntVar(&c.Pages, "pages", 3, "pages a reader reads of one target at most, following nextToken")
	fs.IntVar(&c.SeedPerTarget, "seed-per-target", 0, "activities posted to each target before the timed run")
	fs.StringVar(&c.TargetIDFormat, "target-id-format", "uuid", "uuid or opaque; opaque needs the service's TARGET_ID_FORMAT=opaque")
	fs.BoolVar(&c.JSON, "json", false, "print the summary as JSON")
	fs.DurationVar(&c.Progress, "progress", 5*time.Second, "interval of the progress line on stderr; 0 = none")
	fs.DurationVar(&c.Timeout, "timeout", 30*time.Second, "timeout of one request")
	if err := e.parse(args); err != nil {
		return c, err
	}
	return c, c.check()
}

func (c *loadConfig) check() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("--url %q: want http://host:port", c.URL)
	}
	if c.Token == "" && c.Secret == "" {
		bad("--token (or TOKEN) or --secret is required")
	}
	if c.Duration <= 0 {
		bad("--duration: must be positive")
	}
	if c.Writers < 0 || c.Readers < 0 || c.Writers+c.Readers == 0 {
		bad("--writers and --readers: at least one worker is needed, none negative")
	}
	if c.Targets < 1 {
		bad("--targets: at least 1")
	}
	if c.Batch < 1 || c.Batch > activity.MaxBatch {
		bad("--batch: 1 to %d", activity.MaxBatch)
	}
	if c.BatchTargets < 1 || c.BatchTargets > c.Batch || c.BatchTargets > c.Targets {
		bad("--batch-targets: 1 to the smaller of --batch and --targets")
	}
	if c.PageSize < 1 || c.PageSize > 1000 {
		bad("--page-size: 1 to 1000")
	}
	if c.Pages < 1 {
		bad("--pages: at least 1")
	}
	if c.SeedPerTarget < 0 {
		bad("--seed-per-target: not negative")
	}
	if c.TargetIDFormat != "uuid" && c.TargetIDFormat != "opaque" {
		bad("--target-id-format %q: want uuid or opaque", c.TargetIDFormat)
	}
	if c.Timeout <= 0 {
		bad("--timeout: must be positive")
	}
	return errors.Join(errs...)
}

// loader holds what every worker shares; each worker keeps its own stats.
type loader struct {
	cfg      loadConfig
	client   *http.Client
	token    string
	endpoint string
	targets  []string
	kinds    []targetKind // per target
	types    []activity.Type
	authors  []activity.Author
	posted   []atomic.Int64
	payloads []json.RawMessage
	now      func() time.Time
	stamp    atomic.Int64 // last createdAt handed out, µs since the epoch
	live     struct{ posts, acts, gets, notFound, failed atomic.Int64 }
}

type targetKind struct {
	typ    activity.TargetType
	domain string
}

func newLoader(cfg loadConfig, now func() time.Time) (*loader, error) {
	tok := cfg.Token
	if tok == "" {
		var err error
		tok, err = auth.Mint([]byte(cfg.Secret), auth.MintClaims{
			Subject: "load", Name: "Load Generator", Email: "load@example.org",
			Groups: cfg.Groups, TTL: cfg.Duration + time.Hour,
		}, now())
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
	}
	workers := cfg.Writers + cfg.Readers
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // measure the service, not a proxy
	tr.MaxIdleConns = 2 * workers
	tr.MaxIdleConnsPerHost = workers
	tr.IdleConnTimeout = 90 * time.Second
	l := &loader{
		cfg:      cfg,
		client:   &http.Client{Transport: tr, Timeout: cfg.Timeout},
		token:    tok,
		endpoint: strings.TrimRight(cfg.URL, "/") + command.APIPath,
		targets:  make([]string, cfg.Targets),
		kinds:    make([]targetKind, cfg.Targets),
		posted:   make([]atomic.Int64, cfg.Targets),
		now:      now,
		// Mostly updates, as in the pilot's traffic.
		types: []activity.Type{
			activity.TypeUpdate, activity.TypeUpdate, activity.TypeUpdate, activity.TypeUpdate,
			activity.TypeCreate, activity.TypeMigrate, activity.TypeEnd,
		},
		authors: []activity.Author{
			{FullName: "Mehdi Kimakhe", Email: "mehdi.kimakhe@example.org"},
			{FullName: "Aisha Okonkwo", Email: "aisha.okonkwo@example.org"},
			{FullName: "Tom Baker", Email: "tom.baker@example.org"},
			{FullName: "Siobhan Murphy", Email: "siobhan.murphy@example.org"},
		},
	}
	kinds := []targetKind{
		{"person", "Person"}, {"tenure", "Tenure"}, {"asset", "Asset"},
		{"contactDetails", "ContactDetails"}, {"account", "Finance"}, {"repair", "Repairs"},
	}
	run := uuid.NewString()[:8]
	for i := range l.targets {
		if cfg.TargetIDFormat == "opaque" {
			// '/' and '+' make sure the id is escaped in URLs.
			l.targets[i] = fmt.Sprintf("load-%s/%d+x", run, i)
		} else {
			l.targets[i] = uuid.NewString()
		}
		l.kinds[i] = kinds[i%len(kinds)]
	}
	for range 64 {
		l.payloads = append(l.payloads, loadPayload())
	}
	return l, nil
}

// loadPayload is a person-record-like object of about 300 bytes.
func loadPayload() json.RawMessage {
	first := []string{"Amara", "John", "Priya", "Wojciech", "Fatima", "Liam", "Chen", "Grace"}
	last := []string{"Okafor", "Smith", "Patel", "Nowak", "Hussain", "Byrne", "Wei", "Mensah"}
	streets := []string{"Mare Street", "Dalston Lane", "Kingsland Road", "Homerton High Street"}
	f, s := first[rand.IntN(len(first))], last[rand.IntN(len(last))]
	b, _ := json.Marshal(map[string]any{
		"title":       "Mx",
		"firstName":   f,
		"surname":     s,
		"dateOfBirth": fmt.Sprintf("19%02d-%02d-%02d", 40+rand.IntN(60), 1+rand.IntN(12), 1+rand.IntN(28)),
		"email":       strings.ToLower(f+"."+s) + "@example.org",
		"phone":       fmt.Sprintf("07700 9%05d", rand.IntN(100000)),
		"address": map[string]any{
			"line1":    fmt.Sprintf("%d %s", 1+rand.IntN(300), streets[rand.IntN(len(streets))]),
			"town":     "London",
			"postCode": fmt.Sprintf("E%d %dRH", 1+rand.IntN(20), rand.IntN(10)),
		},
		"tenureRef": fmt.Sprintf("TEN-%07d", rand.IntN(10_000_000)),
		"notes":     "contact preference changed after a visit",
	})
	return b
}

// createdAt hands out strictly increasing timestamps close to now, so a
// target's history has a realistic, mostly arrival-ordered time line.
func (l *loader) createdAt() time.Time {
	for {
		last := l.stamp.Load()
		n := max(l.now().UnixMicro(), last+1)
		if l.stamp.CompareAndSwap(last, n) {
			return time.UnixMicro(n).UTC()
		}
	}
}

func (l *loader) activity(target int) activity.Activity {
	k := l.kinds[target]
	return activity.Activity{
		ID:            uuid.NewString(),
		TargetID:      l.targets[target],
		Type:          l.types[rand.IntN(len(l.types))],
		TargetType:    k.typ,
		CreatedAt:     l.createdAt(),
		OldData:       l.payloads[rand.IntN(len(l.payloads))],
		NewData:       l.payloads[rand.IntN(len(l.payloads))],
		AuthorDetails: l.authors[rand.IntN(len(l.authors))],
		SourceDomain:  k.domain,
	}
}

// opStats is one worker's record of one operation.
type opStats struct {
	ok      int
	acts    int
	lat     []time.Duration // of successful requests
	errs    map[string]int  // by status code, "transport", "timeout" or "bad-page"
	samples []string
}

func (s *opStats) fail(kind, sample string) {
	if s.errs == nil {
		s.errs = map[string]int{}
	}
	s.errs[kind]++
	if len(s.samples) < 3 {
		s.samples = append(s.samples, kind+": "+sample)
	}
}

func (s *opStats) merge(o *opStats) {
	s.ok += o.ok
	s.acts += o.acts
	s.lat = append(s.lat, o.lat...)
	for k, n := range o.errs {
		if s.errs == nil {
			s.errs = map[string]int{}
		}
		s.errs[k] += n
	}
	for _, m := range o.samples {
		if len(s.samples) < 5 {
			s.samples = append(s.samples, m)
		}
	}
}

func (s *opStats) failures() int {
	n := 0
	for _, c := range s.errs {
		n += c
	}
	return n
}

type workerStats struct {
	seed, post, first, next opStats
	notFound, cancelled     int
}

// send does one request and reads the whole answer, so the connection is
// reused. err is a transport error; any status is returned as is.
func (l *loader) send(ctx context.Context, method, u string, body []byte) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	req.Header.Set("Authorization", "Bearer "+l.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	start := time.Now()
	resp, err := l.client.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(start)
	if err != nil {
		return 0, nil, 0, err
	}
	return resp.StatusCode, b, d, nil
}

// transportFailure counts a request that got no answer, unless the whole
// run was interrupted (then it was cancelled, not failed).
func (l *loader) transportFailure(ctx context.Context, ws *workerStats, st *opStats, err error) {
	if ctx.Err() != nil {
		ws.cancelled++
		return
	}
	kind := "transport"
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		kind = "timeout"
	}
	st.fail(kind, err.Error())
	l.live.failed.Add(1)
}

func loadSnippet(b []byte) string {
	const n = 200
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// post records acts; counted per target on 201 only (every id is new, so a
// 200 replay would mean an id collision).
func (l *loader) post(ctx context.Context, ws *workerStats, st *opStats, acts []activity.Activity, idx []int) {
	var body []byte
	var err error
	if len(acts) == 1 {
		body, err = json.Marshal(acts[0])
	} else {
		body, err = json.Marshal(acts)
	}
	if err != nil {
		st.fail("encode", err.Error())
		l.live.failed.Add(1)
		return
	}
	status, resp, d, err := l.send(ctx, http.MethodPost, l.endpoint, body)
	if err != nil {
		l.transportFailure(ctx, ws, st, err)
		return
	}
	if status != http.StatusCreated {
		st.fail(strconv.Itoa(status), loadSnippet(resp))
		l.live.failed.Add(1)
		return
	}
	st.ok++
	st.acts += len(acts)
	st.lat = append(st.lat, d)
	for _, i := range idx {
		l.posted[i].Add(1)
	}
	l.live.acts.Add(int64(len(acts)))
}

// write posts batches until runCtx ends; requests themselves run under ctx
// so the last ones finish instead of being cut off by the deadline.
func (l *loader) write(runCtx, ctx context.Context, ws *workerStats) {
	k := l.cfg.BatchTargets
	chosen := make([]int, 0, k)
	for runCtx.Err() == nil {
		chosen = chosen[:0]
		for len(chosen) < k {
			if t := rand.IntN(len(l.targets)); !slices.Contains(chosen, t) {
				chosen = append(chosen, t)
			}
		}
		acts := make([]activity.Activity, l.cfg.Batch)
		idx := make([]int, l.cfg.Batch)
		for i := range acts {
			idx[i] = chosen[i%k]
			acts[i] = l.activity(idx[i])
		}
		l.post(ctx, ws, &ws.post, acts, idx)
		l.live.posts.Add(1)
	}
}

// loadPage is what a reader checks of a history page.
type loadPage struct {
	Results []struct {
		ID        string    `json:"id"`
		TargetID  string    `json:"targetId"`
		CreatedAt time.Time `json:"createdAt"`
	} `json:"results"`
	PaginationDetails struct {
		NextToken *string `json:"nextToken"`
	} `json:"paginationDetails"`
}

// checkPage returns the next token ("" on the last page) and the sort key
// of the page's last item, or what is wrong with the page. after is the
// sort key of the previous page's last item ("" for a first page).
func checkLoadPage(body []byte, target string, pageSize int, after string) (next, last, problem string) {
	var p loadPage
	if err := json.Unmarshal(body, &p); err != nil {
		return "", "", "not a history page: " + err.Error()
	}
	n := len(p.Results)
	switch {
	case n == 0:
		return "", "", "a 200 page with no results"
	case n > pageSize:
		return "", "", fmt.Sprintf("%d results for pageSize %d", n, pageSize)
	case p.PaginationDetails.NextToken != nil && n < pageSize:
		return "", "", fmt.Sprintf("nextToken on a page of %d of %d", n, pageSize)
	}
	last = after
	for _, r := range p.Results {
		if r.TargetID != target {
			return "", "", fmt.Sprintf("activity %s of target %q in the history of %q", r.ID, r.TargetID, target)
		}
		key := activity.Activity{ID: r.ID, CreatedAt: r.CreatedAt}.SortKey()
		if last != "" && key >= last {
			return "", "", fmt.Sprintf("not newest first: %s after %s", key, last)
		}
		last = key
	}
	if p.PaginationDetails.NextToken != nil {
		next = *p.PaginationDetails.NextToken
	}
	return next, last, ""
}

func (l *loader) historyURL(target, token string) string {
	q := url.Values{"targetId": {target}, "pageSize": {strconv.Itoa(l.cfg.PageSize)}}
	if token != "" {
		q.Set("paginationToken", token)
	}
	return l.endpoint + "?" + q.Encode()
}

// read reads up to Pages pages of random targets until runCtx ends.
func (l *loader) read(runCtx, ctx context.Context, ws *workerStats) {
	for runCtx.Err() == nil {
		target := l.targets[rand.IntN(len(l.targets))]
		token, after := "", ""
		for page := range l.cfg.Pages {
			st := &ws.first
			if page > 0 {
				st = &ws.next
			}
			status, body, d, err := l.send(ctx, http.MethodGet, l.historyURL(target, token), nil)
			l.live.gets.Add(1)
			if err != nil {
				l.transportFailure(ctx, ws, st, err)
				break
			}
			if page == 0 && status == http.StatusNotFound {
				// Not written yet, or not projected yet.
				ws.notFound++
				l.live.notFound.Add(1)
				break
			}
			if status != http.StatusOK {
				st.fail(strconv.Itoa(status), loadSnippet(body))
				l.live.failed.Add(1)
				break
			}
			next, last, problem := checkLoadPage(body, target, l.cfg.PageSize, after)
			if problem != "" {
				st.fail("bad-page", problem)
				l.live.failed.Add(1)
				break
			}
			st.ok++
			st.lat = append(st.lat, d)
			if next == "" {
				break
			}
			token, after = next, last
		}
	}
}

// seed posts SeedPerTarget activities to every target, up to MaxBatch per
// request, with the writers' concurrency (at least one).
func (l *loader) seed(ctx context.Context, stats []*workerStats) {
	type job struct{ target, n int }
	jobs := make(chan job)
	var wg sync.WaitGroup
	for _, ws := range stats {
		wg.Go(func() {
			for j := range jobs {
				acts := make([]activity.Activity, j.n)
				idx := make([]int, j.n)
				for i := range acts {
					idx[i] = j.target
					acts[i] = l.activity(j.target)
				}
				l.post(ctx, ws, &ws.seed, acts, idx)
			}
		})
	}
feed:
	for t := range l.targets {
		for left := l.cfg.SeedPerTarget; left > 0; left -= activity.MaxBatch {
			select {
			case jobs <- job{t, min(left, activity.MaxBatch)}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
}

func (l *loader) run(ctx context.Context, stderr io.Writer) loadSummary {
	stats := make([]*workerStats, max(l.cfg.Writers, 1)+l.cfg.Readers)
	for i := range stats {
		stats[i] = &workerStats{}
	}
	var seedElapsed time.Duration
	if l.cfg.SeedPerTarget > 0 {
		start := time.Now()
		fmt.Fprintf(stderr, "load: seeding %d activities to each of %d targets\n", l.cfg.SeedPerTarget, len(l.targets))
		l.seed(ctx, stats[:max(l.cfg.Writers, 1)])
		seedElapsed = time.Since(start)
	}

	runCtx, cancel := context.WithTimeout(ctx, l.cfg.Duration)
	defer cancel()
	start := time.Now()
	done := make(chan struct{})
	var progress sync.WaitGroup
	if l.cfg.Progress > 0 {
		progress.Go(func() { l.progress(stderr, start, done) })
	}
	var wg sync.WaitGroup
	for i := range l.cfg.Writers {
		wg.Go(func() { l.write(runCtx, ctx, stats[i]) })
	}
	for i := range l.cfg.Readers {
		ws := stats[max(l.cfg.Writers, 1)+i]
		wg.Go(func() { l.read(runCtx, ctx, ws) })
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	progress.Wait()
	return l.summarise(stats, elapsed, seedElapsed)
}

// progress prints one line per interval with the rates of that interval.
func (l *loader) progress(w io.Writer, start time.Time, done <-chan struct{}) {
	t := time.NewTicker(l.cfg.Progress)
	defer t.Stop()
	var posts, acts, gets int64
	prev := start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			p, a, g := l.live.posts.Load(), l.live.acts.Load(), l.live.gets.Load()
			secs := now.Sub(prev).Seconds()
			fmt.Fprintf(w, "load: %5.1fs  POST %.0f/s (%.0f activities/s)  GET %.0f/s  404 %d  failed %d\n",
				now.Sub(start).Seconds(), float64(p-posts)/secs, float64(a-acts)/secs, float64(g-gets)/secs,
				l.live.notFound.Load(), l.live.failed.Load())
			posts, acts, gets, prev = p, a, g, now
		}
	}
}

// loadSummary is the result of a run, printed as a table or JSON.
type loadSummary struct {
	URL            string        `json:"url"`
	Writers        int           `json:"writers"`
	Readers        int           `json:"readers"`
	Targets        int           `json:"targets"`
	TargetIDFormat string        `json:"targetIdFormat"`
	Batch          int           `json:"batch"`
	BatchTargets   int           `json:"batchTargets"`
	PageSize       int           `json:"pageSize"`
	Pages          int           `json:"pages"`
	SeedPerTarget  int           `json:"seedPerTarget"`
	Duration       string        `json:"duration"`
	ElapsedSeconds float64       `json:"elapsedSeconds"`
	Seed           *opSummary    `json:"seed,omitempty"`
	Ops            []opSummary   `json:"ops"`
	NotFound       int           `json:"notFound"`  // first pages answered 404: target not written or not projected yet
	Cancelled      int           `json:"cancelled"` // requests cut off by an interrupt
	Failed         int           `json:"failed"`    // requests that failed, every phase
	PerTarget      []targetCount `json:"perTarget"` // activities recorded (201) per target, seed included
}

type targetCount struct {
	TargetID   string `json:"targetId"`
	Activities int64  `json:"activities"`
}

type opSummary struct {
	Op                  string         `json:"op"`
	OK                  int            `json:"ok"`
	Activities          int            `json:"activities,omitempty"`
	Errors              map[string]int `json:"errors,omitempty"`
	ErrorSamples        []string       `json:"errorSamples,omitempty"`
	PerSecond           float64        `json:"perSecond"`
	ActivitiesPerSecond float64        `json:"activitiesPerSecond,omitempty"`
	LatencyMs           latencyMs      `json:"latencyMs"`
}

type latencyMs struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summariseOp(name string, s *opStats, elapsed time.Duration) opSummary {
	o := opSummary{Op: name, OK: s.ok, Activities: s.acts, Errors: s.errs, ErrorSamples: s.samples}
	if secs := elapsed.Seconds(); secs > 0 {
		o.PerSecond = loadRound(float64(s.ok) / secs)
		o.ActivitiesPerSecond = loadRound(float64(s.acts) / secs)
	}
	slices.Sort(s.lat)
	o.LatencyMs = latencyMs{P50: loadQuantile(s.lat, 0.50), P90: loadQuantile(s.lat, 0.90), P99: loadQuantile(s.lat, 0.99)}
	if n := len(s.lat); n > 0 {
		o.LatencyMs.Max = loadMs(s.lat[n-1])
	}
	return o
}

// quantile of sorted durations, nearest rank, in milliseconds.
func loadQuantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return loadMs(sorted[max(i, 0)])
}

func loadMs(d time.Duration) float64 { return loadRound(float64(d.Microseconds()) / 1000) }

func loadRound(f float64) float64 { return math.Round(f*100) / 100 }

func (l *loader) summarise(stats []*workerStats, elapsed, seedElapsed time.Duration) loadSummary {
	var all workerStats
	for _, ws := range stats {
		all.seed.merge(&ws.seed)
		all.post.merge(&ws.post)
		all.first.merge(&ws.first)
		all.next.merge(&ws.next)
		all.notFound += ws.notFound
		all.cancelled += ws.cancelled
	}
	c := l.cfg
	s := loadSummary{
		URL: c.URL, Writers: c.Writers, Readers: c.Readers, Targets: c.Targets, TargetIDFormat: c.TargetIDFormat,
		Batch: c.Batch, BatchTargets: c.BatchTargets, PageSize: c.PageSize, Pages: c.Pages, SeedPerTarget: c.SeedPerTarget,
		Duration: c.Duration.String(), ElapsedSeconds: loadRound(elapsed.Seconds()),
		Ops: []opSummary{
			summariseOp("POST", &all.post, elapsed),
			summariseOp("GET first page", &all.first, elapsed),
			summariseOp("GET next page", &all.next, elapsed),
		},
		NotFound:  all.notFound,
		Cancelled: all.cancelled,
		Failed:    all.seed.failures() + all.post.failures() + all.first.failures() + all.next.failures(),
	}
	if c.SeedPerTarget > 0 {
		o := summariseOp("POST seed", &all.seed, seedElapsed)
		s.Seed = &o
	}
	for i, t := range l.targets {
		s.PerTarget = append(s.PerTarget, targetCount{TargetID: t, Activities: l.posted[i].Load()})
	}
	return s
}

func (s loadSummary) okTotal() int {
	n := 0
	for _, o := range s.Ops {
		n += o.OK
	}
	return n
}

// failureKinds sums the failures of every operation by kind: "500 ×2, transport ×1".
func (s loadSummary) failureKinds() string {
	kinds := map[string]int{}
	ops := s.Ops
	if s.Seed != nil {
		ops = append([]opSummary{*s.Seed}, ops...)
	}
	for _, o := range ops {
		for k, n := range o.Errors {
			kinds[k] += n
		}
	}
	return loadKinds(kinds)
}

func loadKinds(kinds map[string]int) string {
	keys := make([]string, 0, len(kinds))
	for k := range kinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, kinds[k]))
	}
	return strings.Join(parts, ", ")
}

func (s loadSummary) print(w io.Writer) {
	fmt.Fprintf(w, "load of %s: %d writers, %d readers, %d %s targets, batch %d over %d target(s), page size %d, up to %d pages\n",
		s.URL, s.Writers, s.Readers, s.Targets, s.TargetIDFormat, s.Batch, s.BatchTargets, s.PageSize, s.Pages)
	fmt.Fprintf(w, "timed run %s (measured %.2fs)\n\n", s.Duration, s.ElapsedSeconds)
	fmt.Fprintf(w, "%-15s %9s %7s %9s %12s %9s %9s %9s %9s\n", "operation", "ok", "failed", "ok/s", "activities/s", "p50 ms", "p90 ms", "p99 ms", "max ms")
	ops := s.Ops
	if s.Seed != nil {
		ops = append([]opSummary{*s.Seed}, ops...)
	}
	for _, o := range ops {
		acts := "-"
		if o.Op == "POST" || o.Op == "POST seed" {
			acts = fmt.Sprintf("%.1f", o.ActivitiesPerSecond)
		}
		failed := 0
		for _, n := range o.Errors {
			failed += n
		}
		fmt.Fprintf(w, "%-15s %9d %7d %9.1f %12s %9.2f %9.2f %9.2f %9.2f\n", o.Op, o.OK, failed, o.PerSecond, acts,
			o.LatencyMs.P50, o.LatencyMs.P90, o.LatencyMs.P99, o.LatencyMs.Max)
	}
	fmt.Fprintf(w, "\nfirst pages answered 404 (target not written or not projected yet): %d\n", s.NotFound)
	if s.Cancelled > 0 {
		fmt.Fprintf(w, "requests cut off by an interrupt: %d\n", s.Cancelled)
	}
	for _, o := range ops {
		if len(o.Errors) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s failures: %s\n", o.Op, loadKinds(o.Errors))
		for _, m := range o.ErrorSamples {
			fmt.Fprintf(w, "  %s\n", m)
		}
	}
}
