package readmodeltest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/council/activityhistory/activity"
)

// domains are source domains that a careless scan of the documents would
// confuse: separators, quotes, escapes, a value spelling the field itself.
var domains = []string{
	"person-api", "tenure-api", "a,b", `say "hi" <&>`, "é-domain",
	`x","sourceDomain":"person-api`, "",
}

// common are the types of filterSeries but for a rare one, migrate.
var common = []activity.Type{activity.TypeCreate, activity.TypeUpdate, activity.TypeDelete, activity.TypeEnd}

// filterSeries is n activities of target whose types, domains and target
// types cycle, with data that holds the field names of the filters.
func filterSeries(target string, n int) []activity.Activity {
	acts := Series(target, 0, n)
	for i := range acts {
		a := &acts[i]
		a.Type = common[i%len(common)]
		a.SourceDomain = domains[i%len(domains)]
		if i%3 == 0 {
			a.TargetType = "tenure"
		}
		a.OldData = json.RawMessage(`{"type":"end","targetType":"asset","x":",\"type\":\"end\""}`)
		a.NewData = json.RawMessage(`{"sourceDomain":"person-api"}`)
		if i%2 == 0 {
			a.NewData = json.RawMessage(`{"note":",\"sourceDomain\":\"person-api\"}"}`)
		}
	}
	// A rare type: only three, far apart, so pages span many scan chunks.
	for _, i := range []int{7, 251, 499} {
		if i < n {
			acts[i].Type = activity.TypeMigrate
			acts[i].SourceDomain = "rare"
		}
	}
	return acts
}

// walk pages through target under f with pages of size and scan bound
// maxScan, following each page's continuation, and checks that no page is
// short unless the scan bound stopped it or nothing is left.
func walk(t *testing.T, m Model, target string, f activity.Filter, size, maxScan int) [][]byte {
	t.Helper()
	var out [][]byte
	before := ""
	for range 100_000 {
		p := pageOf(t, m, target, activity.PageQuery{Before: before, Limit: size, Filter: f, MaxScan: maxScan})
		if !p.Found {
			t.Fatalf("filter %s: target not found", f)
		}
		for _, e := range p.Entries {
			if before != "" && e.Key >= before {
				t.Fatalf("filter %s: key %q not below the cursor %q", f, e.Key, before)
			}
			before = e.Key
			out = append(out, e.Doc)
		}
		switch {
		case len(p.Entries) == size:
			if p.ScannedTo != "" {
				t.Fatalf("filter %s: a full page with scannedTo %q", f, p.ScannedTo)
			}
		case p.ScannedTo != "":
			if maxScan > 0 && p.Scanned < maxScan {
				t.Fatalf("filter %s: a short page after %d of %d entries examined", f, p.Scanned, maxScan)
			}
			if p.ScannedTo > before && before != "" {
				t.Fatalf("filter %s: scannedTo %q above the last entry %q", f, p.ScannedTo, before)
			}
			before = p.ScannedTo
		default:
			return out
		}
	}
	t.Fatalf("filter %s: paging does not end", f)
	return nil
}

// wantFiltered is the documents of acts that f selects, newest first.
func wantFiltered(t *testing.T, acts []activity.Activity, f activity.Filter) [][]byte {
	t.Helper()
	var sel []activity.Activity
	for _, a := range acts {
		if f.Match(a) {
			sel = append(sel, a)
		}
	}
	return newestFirst(t, sel)
}

// checkFilters applies acts to m and checks every filter, with several
// page sizes and scan bounds.
func checkFilters(t *testing.T, m Model, target string, acts []activity.Activity, filters []activity.Filter) {
	t.Helper()
	apply(t, m, 1, acts)
	for _, f := range filters {
		want := wantFiltered(t, acts, f)
		if len(want) == 0 {
			t.Fatalf("filter %s selects nothing: a weak case", f)
		}
		// Page sizes and scan bounds (0: the default), small ones stopping
		// pages short often.
		for _, c := range [][2]int{{1, 0}, {7, 0}, {7, 10}, {50, 150}, {1000, 0}, {1000, 10}} {
			size, scan := c[0], c[1]
			sameDocs(t, fmt.Sprintf("filter %s, pages of %d, scan %d", f, size, scan), walk(t, m, target, f, size, scan), want)
		}
	}
}

func testFilterDateRange(t *testing.T, m Model) {
	const target = "filter-dates"
	acts := filterSeries(target, 120)
	at := func(i int) time.Time { return acts[i].CreatedAt }
	checkFilters(t, m, target, acts, []activity.Filter{
		{From: at(10), To: at(20)}, // from inclusive, to exclusive
		{From: at(100)},            // open above
		{To: at(5)},                // open below
		{From: at(10).Add(time.Nanosecond), To: at(11).Add(time.Nanosecond)},
		{From: at(0).Add(-time.Hour), To: at(119).Add(time.Hour)},
	})
	// A range is one key range: the page stops at the bound, not after a scan.
	p := pageOf(t, m, target, activity.PageQuery{Limit: 100, Filter: activity.Filter{From: at(50), To: at(60)}})
	if len(p.Entries) != 10 || p.ScannedTo != "" || p.Scanned != 10 {
		t.Fatalf("range [50, 60): %d entries, %d scanned, scannedTo %q; want 10, 10, none", len(p.Entries), p.Scanned, p.ScannedTo)
	}
	// An empty range of a known target is found and empty.
	p = pageOf(t, m, target, activity.PageQuery{Limit: 10, Filter: activity.Filter{From: at(119).Add(time.Second)}})
	if !p.Found || len(p.Entries) != 0 {
		t.Fatalf("range after the newest: found=%v, %d entries; want found and empty", p.Found, len(p.Entries))
	}
	// A cursor inside the range continues within it.
	p = pageOf(t, m, target, activity.PageQuery{Before: acts[15].SortKey(), Limit: 100, Filter: activity.Filter{From: at(10), To: at(20)}})
	sameDocs(t, "cursor inside the range", docsOf(p), newestFirst(t, acts[10:15]))
}

func testFilterType(t *testing.T, m Model) {
	const target = "filter-type"
	acts := filterSeries(target, 600)
	checkFilters(t, m, target, acts, []activity.Filter{
		{Types: []activity.Type{activity.TypeEnd}},
		{Types: []activity.Type{activity.TypeCreate, activity.TypeDelete}},
		{Types: []activity.Type{activity.TypeMigrate}}, // three, far apart
	})
}

func testFilterSourceDomain(t *testing.T, m Model) {
	const target = "filter-domain"
	acts := filterSeries(target, 300)
	var filters []activity.Filter
	for _, d := range domains {
		filters = append(filters, activity.Filter{SourceDomains: []string{d}})
	}
	filters = append(filters,
		activity.Filter{SourceDomains: []string{"a,b", "é-domain"}},
		activity.Filter{SourceDomains: []string{"rare"}})
	checkFilters(t, m, target, acts, filters)
	p := pageOf(t, m, target, activity.PageQuery{Limit: 10, Filter: activity.Filter{SourceDomains: []string{"person"}}})
	if len(p.Entries) != 0 || !p.Found {
		t.Fatalf("a prefix of a domain: %d entries, found=%v; want none, found", len(p.Entries), p.Found)
	}
}

func testFilterTargetType(t *testing.T, m Model) {
	const target = "filter-target-type"
	checkFilters(t, m, target, filterSeries(target, 90), []activity.Filter{
		{TargetTypes: []activity.TargetType{"tenure"}},
		{TargetTypes: []activity.TargetType{"person", "asset"}},
	})
}

func testFilterCombined(t *testing.T, m Model) {
	const target = "filter-combined"
	acts := filterSeries(target, 400)
	checkFilters(t, m, target, acts, []activity.Filter{
		{From: acts[35].CreatedAt, To: acts[300].CreatedAt, Types: []activity.Type{activity.TypeUpdate}, SourceDomains: []string{"person-api", "tenure-api"}},
		{From: acts[200].CreatedAt, Types: []activity.Type{activity.TypeMigrate}},
	})
}

func testFilterScanBound(t *testing.T, m Model) {
	const target = "filter-bound"
	acts := filterSeries(target, 600)
	apply(t, m, 1, acts)
	f := activity.Filter{Types: []activity.Type{activity.TypeMigrate}}
	// The newest match is the 100th newest entry: a bound of 40 stops
	// short, and says how far it got.
	p := pageOf(t, m, target, activity.PageQuery{Limit: 5, Filter: f, MaxScan: 40})
	if len(p.Entries) != 0 || p.Scanned != 40 || p.ScannedTo != acts[560].SortKey() {
		t.Fatalf("bound 40: %d entries, %d scanned, scannedTo %q; want 0, 40, %q", len(p.Entries), p.Scanned, p.ScannedTo, acts[560].SortKey())
	}
	// The default bound reaches all three.
	p = pageOf(t, m, target, activity.PageQuery{Limit: 5, Filter: f})
	sameDocs(t, "default bound", docsOf(p), wantFiltered(t, acts, f))
	if p.ScannedTo != "" || p.Scanned != len(acts) {
		t.Fatalf("default bound: %d scanned, scannedTo %q; want %d, none", p.Scanned, p.ScannedTo, len(acts))
	}
}

func docsOf(p activity.Page) [][]byte {
	out := make([][]byte, len(p.Entries))
	for i, e := range p.Entries {
		out[i] = e.Doc
	}
	return out
}
