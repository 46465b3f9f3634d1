package query_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/query"
)

// filterActs are 400 activities of targetA, one a minute, with types and
// source domains cycling; "end" from "rare" only four times, far apart.
func filterActs() []activity.Activity {
	types := []activity.Type{activity.TypeCreate, activity.TypeUpdate, activity.TypeDelete, activity.TypeMigrate}
	acts := make([]activity.Activity, 400)
	for i := range acts {
		a := newActivity(targetA, base.Add(time.Duration(i)*time.Minute))
		a.Type = types[i%len(types)]
		a.SourceDomain = []string{"person-api", "tenure-api", "a,b"}[i%3]
		acts[i] = a
	}
	for _, i := range []int{3, 150, 151, 399} {
		acts[i].Type, acts[i].SourceDomain = activity.TypeEnd, "rare"
	}
	return acts
}

func TestHistoryFilters(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	at := func(i int) string { return base.Add(time.Duration(i) * time.Minute).Format(time.RFC3339) }
	cases := []struct {
		name   string
		params []string
		want   activity.Filter
	}{
		{"from inclusive, to exclusive", []string{"from", at(100), "to", at(130)},
			activity.Filter{From: base.Add(100 * time.Minute), To: base.Add(130 * time.Minute)}},
		{"from only", []string{"from", at(380)}, activity.Filter{From: base.Add(380 * time.Minute)}},
		{"to only, with an offset", []string{"to", base.Add(12 * time.Minute).In(time.FixedZone("X", 3600)).Format(time.RFC3339)},
			activity.Filter{To: base.Add(12 * time.Minute)}},
		{"type", []string{"type", "delete"}, activity.Filter{Types: []activity.Type{"delete"}}},
		{"type repeated", []string{"type", "end", "type", "create"}, activity.Filter{Types: []activity.Type{"end", "create"}}},
		{"rare type", []string{"type", "end"}, activity.Filter{Types: []activity.Type{"end"}}},
		{"sourceDomain list", []string{"sourceDomain", "rare,tenure-api"}, activity.Filter{SourceDomains: []string{"rare", "tenure-api"}}},
		{"sourceDomain with a comma, repeated", []string{"sourceDomain", "a", "sourceDomain", "b"}, activity.Filter{SourceDomains: []string{"a", "b"}}},
		{"all four", []string{"from", at(50), "to", at(300), "type", "update", "sourceDomain", "person-api"},
			activity.Filter{From: base.Add(50 * time.Minute), To: base.Add(300 * time.Minute), Types: []activity.Type{"update"}, SourceDomains: []string{"person-api"}}},
	}
	for _, m := range models {
		f := newFixture(t, chk, m.new(t))
		acts := filterActs()
		f.apply(t, acts)
		f.add(t, targetB, 20)
		for _, c := range cases {
			var sel []activity.Activity
			for _, a := range acts {
				if c.want.Match(a) {
					sel = append(sel, a)
				}
			}
			for _, size := range []string{"1", "7", "1000"} {
				got, sizes := walk(t, f, targetA, size, c.params...)
				if !slices.Equal(got, newestFirst(sel)) {
					t.Errorf("%s/%s pages of %s: %d results, want %d", m.name, c.name, size, len(got), len(sel))
				}
				// Never short while more matches exist.
				for i, n := range sizes[:len(sizes)-1] {
					if fmt.Sprint(n) != size {
						t.Errorf("%s/%s pages of %s: page %d holds %d", m.name, c.name, size, i, n)
					}
				}
			}
		}
	}
}

func TestHistoryFilterRules(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), models[1].new(t))
	f.apply(t, filterActs())
	first := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "type", "update", "pageSize", "5")))
	plain := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "pageSize", "5")))
	// A token is valid only with the filters it was issued for.
	for _, c := range []struct {
		name   string
		params []string
	}{
		{"filtered token without filters", []string{"paginationToken", *first.next}},
		{"filtered token with other filters", []string{"type", "create", "paginationToken", *first.next}},
		{"plain token with filters", []string{"type", "update", "paginationToken", *plain.next}},
	} {
		checkError(t, f.get(t, historyURL(f.url, append([]string{"targetId", targetA}, c.params...)...)), 400, "paginationToken")
	}
	// The same filters in another spelling are the same filters.
	p := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "type", " update ,update", "pageSize", "5", "paginationToken", *first.next)))
	if len(p.results) != 5 {
		t.Errorf("the token with the filter respelled: %d results", len(p.results))
	}
	for _, c := range []struct {
		params []string
		field  string
	}{
		{[]string{"from", "2024-13-01T00:00:00Z"}, "from"},
		{[]string{"to", "yesterday"}, "to"},
		{[]string{"from", "2024-03-02T00:00:00Z", "to", "2024-03-01T00:00:00Z"}, "to"},
		{[]string{"from", "2024-03-01T00:00:00Z", "to", "2024-03-01T00:00:00Z"}, "to"},
		{[]string{"from", "a", "from", "b"}, "from"},
		{[]string{"type", "created"}, "type"},
		{[]string{"sourceDomain", strings.Repeat("x", 65)}, "sourceDomain"},
		{[]string{"sourceDomain", manyDomains(21)}, "sourceDomain"},
	} {
		checkError(t, f.get(t, historyURL(f.url, append([]string{"targetId", targetA}, c.params...)...)), 400, c.field)
	}
	// A target with history but no match: an empty page, not 404.
	empty := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "sourceDomain", "nobody")))
	if len(empty.results) != 0 || empty.next != nil {
		t.Errorf("no match: %+v", empty)
	}
	checkError(t, f.get(t, historyURL(f.url, "targetId", unknown, "type", "end")), 404, "")
	// A date range is one read-model call; the query log says so.
	f.get(t, historyURL(f.url, "targetId", targetA, "from", base.Format(time.RFC3339), "to", base.Add(time.Hour).Format(time.RFC3339)))
	logs := f.logs.records(t)
	last := logs[len(logs)-2] // the query line comes before the access log line
	if last["msg"] != "query" || last["calls"] != float64(1) || last["filter"] == "" || last["index"] == "" || last["limit"] != float64(11) {
		t.Errorf("query log of a date range: %v", last)
	}
}

func manyDomains(n int) string {
	var ds []string
	for i := range n {
		ds = append(ds, fmt.Sprintf("d%d", i))
	}
	return strings.Join(ds, ",")
}

// A read slower than the threshold is logged at warn, with the caller.
func TestSlowQueryLoggedAtWarn(t *testing.T) {
	t.Parallel()
	logs := &lockedBuffer{}
	m := projection.NewMemory()
	if err := m.Apply(t.Context(), 1, []activity.Activity{newActivity(targetA, base)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		slow  time.Duration
		level string
	}{{time.Nanosecond, "WARN"}, {time.Hour, "INFO"}} {
		svc, err := query.New(m, query.Options{CursorSecret: []byte(secret), SlowQuery: c.slow})
		if err != nil {
			t.Fatal(err)
		}
		e := query.NewEngine(svc, query.EngineDeps{
			Logger: slog.New(slog.NewJSONHandler(logs, nil)),
			Middleware: []gin.HandlerFunc{func(c *gin.Context) {
				httpapi.SetCaller(c, httpapi.Caller{Email: "officer@example.org", Group: "readers"})
			}},
		})
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, historyURL("", "targetId", targetA), nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("%d %s", rec.Code, rec.Body)
		}
		recs := logs.records(t)
		q := recs[len(recs)-2]
		if q["msg"] != "query" || q["level"] != c.level || q["caller"] != "officer@example.org" || q["correlationId"] == "" {
			t.Errorf("threshold %v: query log %v, want level %s with the caller", c.slow, q, c.level)
		}
	}
}
