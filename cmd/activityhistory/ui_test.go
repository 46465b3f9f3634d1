package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the browser's timezone, for the expected local days

	"github.com/chromedp/chromedp"
	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
	"github.com/council/activityhistory/ui"
	"github.com/council/activityhistory/ui/uitest"
)

// The timeline page's screenshots, shown in the README.
const screenshotDir = "../../docs/screenshots"

const (
	pageZone   = "Europe/London"
	pageLocale = "en-GB"
	// The page under test reads a rent account's history; its id is
	// searched for in another accepted spelling.
	accountID  = "5b0c9c1e-6d2f-4a8b-9e3a-2f6d7c8b9a01"
	tenancyID  = "8d3e2f10-4b5a-4c6d-8e7f-90a1b2c3d4e5"
	missingID  = "00000000-0000-4000-8000-000000000000"
	accountLen = 75
)

// seeded is one activity of the seeded history, as the test expects it back.
type seeded struct {
	ID, Type, SourceDomain, CreatedAt string
	at                                time.Time
}

// seedActivities returns the account's activities, oldest first: a
// creation, then balance changes from two services, one migration; the
// newest changes nested fields, adds, removes and a long note.
func seedActivities() ([]map[string]any, []seeded) {
	var bodies []map[string]any
	var want []seeded
	start := time.Date(2024, 6, 3, 7, 30, 0, 0, time.UTC)
	authors := []map[string]string{
		{"fullName": "Mehdi Kimakhe", "email": "mehdi.kimakhe@example.org"},
		{"fullName": "Amara Okafor", "email": "amara.okafor@example.org"},
	}
	for i := range accountLen {
		at := start.Add(time.Duration(i) * 150 * time.Minute)
		typ, domain := "update", "Finance"
		if i%5 == 4 {
			domain = "Tenancy"
		}
		balance := func(n int) string { return fmt.Sprintf("%d.%02d", 250-n*3, (n*37)%100) }
		oldData := json.RawMessage(fmt.Sprintf(`{"balance":%q,"status":"open"}`, balance(i-1)))
		newData := json.RawMessage(fmt.Sprintf(`{"balance":%q,"status":"open"}`, balance(i)))
		switch i {
		case 0:
			typ, oldData = "create", json.RawMessage(`null`)
			newData = json.RawMessage(`{"balance":"250.00","status":"open","tenancy":{"ref":"TEN-0042"}}`)
		case 37:
			typ = "migrate"
			oldData = json.RawMessage(`{"system":"legacy-rents"}`)
			newData = json.RawMessage(`{"system":"finance-api"}`)
		case accountLen - 1:
			oldData = json.RawMessage(`{"balance":"-120.50","status":"arrears",` +
				`"tenancy":{"ref":"TEN-0042","address":{"line1":"12 Mare Street","postcode":"E8 1HY"}},` +
				`"arrearsNotice":"served 2024-05-01"}`)
			newData = json.RawMessage(`{"balance":"0.00","status":"clear",` +
				`"tenancy":{"ref":"TEN-0042","address":{"line1":"14 Mare Street","postcode":"E8 1HY"}},` +
				`"lastPayment":{"amount":120.5,"method":"direct debit"},` +
				`"notes":"` + strings.Repeat("Arrears cleared in full by direct debit after the agreed plan. ", 3) + `"}`)
		}
		id := uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "ui-test/account/%d", i)).String()
		createdAt := at.Format(time.RFC3339)
		bodies = append(bodies, map[string]any{
			"id": id, "targetId": accountID, "type": typ, "targetType": "account", "createdAt": createdAt,
			"oldData": oldData, "newData": newData, "authorDetails": authors[i%2], "sourceDomain": domain,
		})
		want = append(want, seeded{ID: id, Type: typ, SourceDomain: domain, CreatedAt: createdAt, at: at})
	}
	return bodies, want
}

// newestFirst returns the ids of the activities that keep says, newest first.
func newestFirst(all []seeded, keep func(seeded) bool) []string {
	var ids []string
	for i := len(all) - 1; i >= 0; i-- {
		if keep(all[i]) {
			ids = append(ids, all[i].ID)
		}
	}
	return ids
}

// TestTimelinePage drives the timeline page in headless Chromium against
// the service, in development auth mode, with a seeded history.
func TestTimelinePage(t *testing.T) {
	t.Parallel()
	page := uitest.Start(t, pageZone, pageLocale)

	dir := t.TempDir()
	env := baseEnv(dir)
	delete(env, "AUTH_JWT_SECRET") // development auth, with the groups configured
	svc := start(t, env, "--dev-auth")
	secret, err := os.ReadFile(filepath.Join(dir, "dev-jwt.key"))
	if err != nil {
		t.Fatal(err)
	}
	key := []byte(strings.TrimSpace(string(secret)))
	writer, reader, auditor := mintWith(t, key, "writers"), mintWith(t, key, "readers"), mintWith(t, key, "readers", "auditors")

	chk := apitest.New(t)
	bodies, account := seedActivities()
	post := func(body any) {
		t.Helper()
		resp, b := chk.Do(t, http.DefaultClient, request(t, http.MethodPost, svc.url+"/api/v1/activityHistory", writer, body))
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("seed: %d %s", resp.StatusCode, b)
		}
	}
	post(bodies)
	for i := range 5 {
		b := activityBody(tenancyID, i)
		b["id"] = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "ui-test/tenancy/%d", i)).String() // stable screenshots
		b["targetType"] = "tenure"
		post(b)
	}

	// Someone with access to the data dir appends a record to the tenancy's
	// stream behind the service's back; then the service starts again.
	svc.stop()
	tamper(t, dir, natstest.Forged(eventSubject(tenancyID), 5, lastHash(t, dir, tenancyID)))
	svc = start(t, env, "--dev-auth")

	base := svc.url + "/ui/"
	ids := `[...document.querySelectorAll("#timeline .entry")].map(e => e.dataset.id)`
	search := func(t *testing.T, target string) {
		t.Helper()
		page.Do(t,
			chromedp.SetValue(chromedp.CSS("#target"), target),
			chromedp.Click(chromedp.CSS("#search button[type=submit]")),
		)
	}
	messageText := func(t *testing.T) string {
		t.Helper()
		return uitest.WaitFor[string](t, page, `!document.getElementById("message").hidden && document.getElementById("message").innerText`)
	}

	t.Run("development auth: the page reads history at once", func(t *testing.T) {
		page.Do(t, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base))
		uitest.WaitFor[bool](t, page, `document.body.dataset.ready === "true"`)
		if got := uitest.Eval[string](t, page, `document.getElementById("token-status").textContent`); !strings.Contains(got, "Development auth mode") {
			t.Errorf("token status %q", got)
		}
		search(t, strings.ToUpper(accountID))
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length > 0`)
		loc := uitest.Eval[string](t, page, `location.search`)
		if loc != "?targetId="+accountID {
			t.Errorf("URL query %q: want the target's canonical id", loc)
		}
	})

	t.Run("scrolling shows every activity once, newest first, by day", func(t *testing.T) {
		for range 20 {
			if uitest.Eval[bool](t, page, `document.getElementById("summary").textContent.startsWith("Showing all")`) {
				break
			}
			page.Do(t, chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, document.body.scrollHeight)`))
			uitest.WaitFor[bool](t, page, `!document.getElementById("more").classList.contains("busy")`)
			page.Do(t, chromedp.Sleep(50*time.Millisecond)) // let the observer see the new end
		}
		got := uitest.Eval[[]string](t, page, ids)
		want := newestFirst(account, func(seeded) bool { return true })
		if !slices.Equal(got, want) {
			t.Fatalf("timeline shows %d entries, want the %d activities once each, newest first:\ngot  %v\nwant %v", len(got), len(want), got, want)
		}
		if s := uitest.Eval[string](t, page, `document.getElementById("summary").textContent`); s != fmt.Sprintf("Showing all %d activities.", accountLen) {
			t.Errorf("summary %q", s)
		}

		zone, _ := time.LoadLocation(pageZone)
		var wantDays []string
		for i := len(account) - 1; i >= 0; i-- {
			d := account[i].at.In(zone).Format(time.DateOnly)
			if len(wantDays) == 0 || wantDays[len(wantDays)-1] != d {
				wantDays = append(wantDays, d)
			}
		}
		days := uitest.Eval[[]string](t, page, `[...document.querySelectorAll("#timeline .day")].map(d => d.dataset.day)`)
		if !slices.Equal(days, wantDays) {
			t.Errorf("day groups %v, want %v", days, wantDays)
		}
		if n := uitest.Eval[int](t, page, `document.querySelectorAll("#histogram rect").length`); n != len(wantDays) {
			t.Errorf("histogram has %d bars, want one per day: %d", n, len(wantDays))
		}
		if l := uitest.Eval[string](t, page, `document.querySelector("#histogram svg").getAttribute("aria-label")`); !strings.HasPrefix(l, fmt.Sprintf("%d loaded activities over %d days", accountLen, len(wantDays))) {
			t.Errorf("histogram label %q", l)
		}

		newest := account[len(account)-1]
		type shown struct{ Word, TargetType, Domain, Author, Local, Exact, Datetime string }
		got1 := uitest.Eval[shown](t, page, `(() => { const e = document.querySelector("#timeline .entry"); const q = s => e.querySelector(s);
			return {Word: q(".word").textContent, TargetType: q(".target-type").textContent, Domain: q(".domain").textContent,
				Author: q(".author").firstChild.textContent, Local: q("time.local").textContent, Exact: q(".exact").textContent,
				Datetime: q("time.local").getAttribute("datetime")}; })()`)
		want1 := shown{Word: "Updated", TargetType: "account", Domain: newest.SourceDomain, Author: "Mehdi Kimakhe",
			Local: newest.at.In(zone).Format("15:04:05"), Exact: newest.CreatedAt, Datetime: newest.CreatedAt}
		if got1 != want1 {
			t.Errorf("newest entry shows %+v, want %+v", got1, want1)
		}
	})

	t.Run("expanding an entry shows exactly the changed fields", func(t *testing.T) {
		page.Do(t,
			chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`),
			chromedp.Click(chromedp.CSS("#timeline .entry .toggle")),
		)
		uitest.WaitFor[bool](t, page, `!!document.querySelector("#timeline .entry .changes:not([hidden]) table")`)
		rows := uitest.Eval[[][]string](t, page, `[...document.querySelectorAll("#timeline .entry .changes tbody tr")].map(r =>
			[r.dataset.field, r.querySelector(".kind").textContent,
			 r.querySelector(".before").textContent, r.querySelector(".after code, .after summary code")?.textContent ?? r.querySelector(".after").textContent])`)
		want := [][]string{
			{"balance", "changed", "-120.50", "0.00"},
			{"status", "changed", "arrears", "clear"},
			{"tenancy.address.line1", "changed", "12 Mare Street", "14 Mare Street"},
			{"arrearsNotice", "removed", "served 2024-05-01", "\u2014"},
			{"lastPayment", "added", "\u2014", "{\n  \"amount\": 120.5,\n  \"method\": \"direct debit\"\n}"},
			{"notes", "added", "\u2014", "Arrears cleared in full by direct debit after the agreed\u2026"},
		}
		if !slices.EqualFunc(rows, want, slices.Equal) {
			t.Errorf("changed fields:\ngot  %q\nwant %q", rows, want)
		}
		if c := uitest.Eval[string](t, page, `document.querySelector("#timeline .entry .changes caption").textContent`); c != "6 fields changed, 2 unchanged" {
			t.Errorf("caption %q", c)
		}
		if !uitest.Eval[bool](t, page, `!!document.querySelector("#timeline .entry .changes tr.added details.fold")`) {
			t.Error("the long note is not folded")
		}
		page.Do(t, chromedp.Click(chromedp.CSS("#timeline .entry .raw summary")))
		raw := uitest.Eval[string](t, page, `document.querySelector("#timeline .entry .raw pre").textContent`)
		var a struct{ ID string }
		if err := json.Unmarshal([]byte(raw), &a); err != nil || a.ID != account[len(account)-1].ID {
			t.Errorf("raw JSON %q: %v", raw, err)
		}
		page.Do(t, chromedp.Click(chromedp.CSS("#timeline .entry .raw summary")), chromedp.Evaluate[chromedp.Void](`window.scrollTo(0, 0)`))
		page.Screenshot(t, filepath.Join(screenshotDir, "timeline-desktop.png"))
		uitest.Axe(t, page)
		page.Do(t, uitest.ColorScheme("dark"))
		uitest.Axe(t, page, "color-contrast")
		page.Screenshot(t, filepath.Join(screenshotDir, "timeline-desktop-dark.png"))
		page.Do(t, uitest.ColorScheme("light"))
	})

	t.Run("keyboard moves between entries", func(t *testing.T) {
		page.Do(t, chromedp.Focus(chromedp.CSS("#timeline .entry .toggle")), chromedp.KeyEvent("j"), chromedp.KeyEvent("j"))
		got := uitest.Eval[string](t, page, `document.activeElement.closest(".entry").dataset.id`)
		if want := account[len(account)-3].ID; got != want {
			t.Errorf("focus on %s after j j, want the third entry %s", got, want)
		}
	})

	t.Run("filters", func(t *testing.T) {
		resp, b := chk.Do(t, http.DefaultClient, request(t, http.MethodGet,
			svc.url+"/api/v1/activityHistory?pageSize=100&type=create&targetId="+accountID, reader, nil))
		var p struct{ Results []struct{ Type string } }
		_ = json.Unmarshal(b, &p)
		if resp.StatusCode != http.StatusOK || len(p.Results) != 1 {
			t.Fatalf("GET /api/v1/activityHistory?type=create: %d, %d results, want 200 and 1", resp.StatusCode, len(p.Results))
		}
		page.Do(t,
			chromedp.Click(chromedp.CSS(`#filter-panel summary`)),
			chromedp.Click(chromedp.CSS(`#filter-types input[value=update]`)),
			chromedp.SetValue(chromedp.CSS("#filter-domain"), "Tenancy"),
			chromedp.Click(chromedp.CSS(`#filters button[type=submit]`)),
		)
		want := newestFirst(account, func(a seeded) bool { return a.Type == "update" && a.SourceDomain == "Tenancy" })
		uitest.WaitFor[bool](t, page, `document.getElementById("summary").textContent.startsWith("Showing all")`)
		if got := uitest.Eval[[]string](t, page, ids); !slices.Equal(got, want) {
			t.Errorf("type=update, sourceDomain=Tenancy shows %v, want %v", got, want)
		}
		if loc := uitest.Eval[string](t, page, `location.search`); loc != "?targetId="+accountID+"&type=update&sourceDomain=Tenancy" {
			t.Errorf("URL query %q", loc)
		}
		// A link opens the same view.
		page.Do(t, chromedp.Reload())
		uitest.WaitFor[bool](t, page, `document.getElementById("summary").textContent.startsWith("Showing all")`)
		if got := uitest.Eval[[]string](t, page, ids); !slices.Equal(got, want) {
			t.Errorf("the same URL, opened again, shows %v, want %v", got, want)
		}
		if !uitest.Eval[bool](t, page, `document.querySelector("#filter-types input[value=update]").checked && document.getElementById("filter-domain").value === "Tenancy"`) {
			t.Error("the filters of the URL are not in the form")
		}

		zone, _ := time.LoadLocation(pageZone)
		from, to := "2024-06-05", "2024-06-06"
		page.Do(t,
			chromedp.Click(chromedp.CSS("#clear-filters")),
			chromedp.SetValue(chromedp.CSS("#filter-from"), from),
			chromedp.SetValue(chromedp.CSS("#filter-to"), to),
			chromedp.Click(chromedp.CSS(`#filters button[type=submit]`)),
		)
		want = newestFirst(account, func(a seeded) bool {
			d := a.at.In(zone).Format(time.DateOnly)
			return d >= from && d <= to
		})
		uitest.WaitFor[bool](t, page, `document.getElementById("summary").textContent.startsWith("Showing all")`)
		if got := uitest.Eval[[]string](t, page, ids); !slices.Equal(got, want) {
			t.Errorf("%s to %s shows %v, want %v", from, to, got, want)
		}
		page.Do(t, chromedp.Click(chromedp.CSS("#clear-filters")))
		uitest.WaitFor[bool](t, page, `location.search === "?targetId=`+accountID+`"`)
		page.Do(t, chromedp.Click(chromedp.CSS(`#filter-panel summary`)))
	})

	t.Run("verify a clean and a tampered stream", func(t *testing.T) {
		verifyURL := svc.url + "/api/v1/activityHistory/streams/" + accountID + "/verify"
		_, b := chk.Do(t, http.DefaultClient, request(t, http.MethodGet, verifyURL, auditor, nil))
		var clean struct {
			Head struct{ Hash string }
		}
		if err := json.Unmarshal(b, &clean); err != nil {
			t.Fatal(err)
		}
		verify := func(t *testing.T) string {
			t.Helper()
			page.Do(t, chromedp.Click(chromedp.CSS("#verify")))
			return uitest.WaitFor[string](t, page, `document.querySelector("#verify-result .verdict")?.innerText`)
		}
		pasteToken(t, page, reader)
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length > 0`)
		if got := verify(t); !strings.Contains(got, "lacks the audit permission") {
			t.Errorf("verify with a read-only token shows %q", got)
		}

		pasteToken(t, page, auditor)
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length > 0`)
		got := verify(t)
		if !uitest.Eval[bool](t, page, `!!document.querySelector("#verify-result .verdict[data-verified=true]")`) ||
			!strings.Contains(got, fmt.Sprintf("%d records verified", accountLen)) || !strings.Contains(got, "revision 74") ||
			!strings.Contains(got, clean.Head.Hash) {
			t.Errorf("verify of the clean stream shows %q, want intact, %d records, head revision 74 and hash %s", got, accountLen, clean.Head.Hash)
		}

		search(t, tenancyID)
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length > 0`)
		got = verify(t)
		if rev := uitest.Eval[string](t, page, `document.querySelector("#verify-result .verdict[data-verified=false]")?.dataset.revision ?? ""`); rev != "5" {
			t.Errorf("verify of the tampered stream shows %q, want a failure at revision 5", got)
		}
		page.Screenshot(t, filepath.Join(screenshotDir, "verify-failed.png"))
		uitest.Axe(t, page)
		pasteToken(t, page, "")
	})

	t.Run("401, 404 and 400 each show a clear message", func(t *testing.T) {
		page.Do(t, chromedp.Navigate(base+"?targetId="+accountID))
		uitest.WaitFor[bool](t, page, `document.body.dataset.ready === "true"`)
		pasteToken(t, page, "not-a-token")
		if got := messageText(t); !strings.Contains(got, "You are not signed in, or your token has expired") || !strings.Contains(got, "Reference for support") {
			t.Errorf("401 shows %q", got)
		}
		if !uitest.Eval[bool](t, page, `document.getElementById("access").open && document.activeElement.id === "token"`) {
			t.Error("after a 401 the token field is not open and focused")
		}
		uitest.Axe(t, page)
		pasteToken(t, page, "")

		search(t, missingID)
		if got := messageText(t); !strings.Contains(got, "No activity history was found for \u201c"+missingID+"\u201d") {
			t.Errorf("404 shows %q", got)
		}
		search(t, "not-a-target")
		if got := messageText(t); !strings.Contains(got, "The request was not accepted") || !strings.Contains(got, "targetId") {
			t.Errorf("400 shows %q", got)
		}
	})

	t.Run("360 px wide", func(t *testing.T) {
		page.Do(t,
			chromedp.EmulateViewport(360, 740, chromedp.EmulateScale(2)),
			chromedp.Navigate(base+"?targetId="+accountID),
		)
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length > 0`)
		page.Do(t, chromedp.Click(chromedp.CSS("#timeline .entry .toggle")),
			chromedp.Evaluate[chromedp.Void](`document.getElementById("view-title").scrollIntoView()`))
		if w := uitest.Eval[int](t, page, `document.documentElement.scrollWidth`); w > 360 {
			t.Errorf("the page is %d px wide at a 360 px viewport", w)
		}
		uitest.Axe(t, page)
		page.Screenshot(t, filepath.Join(screenshotDir, "timeline-360.png"))
	})

	t.Run("behind a gateway that adds the token", func(t *testing.T) {
		gsvc := start(t, baseEnv(t.TempDir()))
		post := request(t, http.MethodPost, gsvc.url+"/api/v1/activityHistory", mint(t, "writers"), activityBody(tenancyID, 0))
		if resp, b := chk.Do(t, http.DefaultClient, post); resp.StatusCode != http.StatusCreated {
			t.Fatalf("seed: %d %s", resp.StatusCode, b)
		}
		target, _ := url.Parse(gsvc.url)
		proxy := httputil.NewSingleHostReverseProxy(target)
		readToken := mint(t, "readers")
		gateway := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "" {
				http.Error(w, "the page sent a token of its own", http.StatusBadRequest)
				return
			}
			r.Header.Set("Authorization", "Bearer "+readToken)
			proxy.ServeHTTP(w, r)
		}))
		t.Cleanup(gateway.Close)
		page.Do(t, chromedp.Navigate(gateway.URL+"/ui/?targetId="+tenancyID))
		uitest.WaitFor[bool](t, page, `document.querySelectorAll("#timeline .entry").length === 1 || !document.getElementById("message").hidden`)
		if got := uitest.Eval[string](t, page, `document.getElementById("summary").textContent`); got != "Showing all 1 activity." {
			t.Errorf("behind the gateway the page shows %q; message %q", got, uitest.Eval[string](t, page, `document.getElementById("message").innerText`))
		}
		if got := uitest.Eval[string](t, page, `document.getElementById("token-status").textContent`); !strings.Contains(got, "a gateway may add it") {
			t.Errorf("token status %q", got)
		}
	})

	for _, l := range page.Logs() {
		if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "exception") {
			t.Errorf("page log: %s", l)
		}
	}
}

// pasteToken uses tok as the page's token ("" forgets it).
func pasteToken(t *testing.T, page *uitest.Page, tok string) {
	t.Helper()
	if tok == "" {
		page.Do(t, chromedp.Evaluate[chromedp.Void](`document.getElementById("forget").click()`))
		return
	}
	page.Do(t,
		chromedp.Evaluate[chromedp.Void](`document.getElementById("access").open = true`),
		chromedp.SetValue(chromedp.CSS("#token"), tok),
		chromedp.Click(chromedp.CSS(`#token-form button[type=submit]`)),
	)
}

// lastHash is the hash of the newest record of stream in the embedded
// store under dir, which must not be running.
func lastHash(t *testing.T, dir, stream string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := natsjs.Open(ctx, natsjs.Config{DataDir: filepath.Join(dir, "eventstore")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.Read(ctx, stream, 0, 1000)
	if err != nil || len(recs) == 0 {
		t.Fatalf("read %s: %v (%d records)", stream, err, len(recs))
	}
	return recs[len(recs)-1].Hash
}

// The page is told how to authenticate; in development auth mode its token
// reads and audits but cannot write.
func TestTimelinePageAuthModes(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	config := func(t *testing.T, svc *service) ui.Config {
		t.Helper()
		resp, b := chk.Do(t, http.DefaultClient, request(t, http.MethodGet, svc.url+"/ui/config.json", "", nil))
		var c ui.Config
		if err := json.Unmarshal(b, &c); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("config: %d %s %v", resp.StatusCode, b, err)
		}
		return c
	}
	t.Run("bearer", func(t *testing.T) {
		t.Parallel()
		if c := config(t, start(t, baseEnv(t.TempDir()))); c != (ui.Config{Auth: ui.AuthBearer}) {
			t.Errorf("config %+v", c)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		t.Parallel()
		env := baseEnv(t.TempDir())
		delete(env, "AUTH_JWT_SECRET")
		env["AUTH_DISABLED"] = "true"
		if c := config(t, start(t, env)); c != (ui.Config{Auth: ui.AuthDisabled}) {
			t.Errorf("config %+v", c)
		}
	})
	t.Run("development", func(t *testing.T) {
		t.Parallel()
		env := baseEnv(t.TempDir())
		delete(env, "AUTH_JWT_SECRET")
		svc := start(t, env, "--dev-auth")
		c := config(t, svc)
		if c.Auth != ui.AuthDev || c.Token == "" || c.Expires == nil || c.Expires.Sub(time.Now()) > time.Hour {
			t.Fatalf("config %+v", c)
		}
		read := request(t, http.MethodGet, svc.url+"/api/v1/activityHistory?targetId="+missingID, c.Token, nil)
		if resp, b := chk.Do(t, http.DefaultClient, read); resp.StatusCode != http.StatusNotFound {
			t.Errorf("read with the page's token: %d %s", resp.StatusCode, b)
		}
		write := request(t, http.MethodPost, svc.url+"/api/v1/activityHistory", c.Token, activityBody(missingID, 0))
		if resp, b := chk.Do(t, http.DefaultClient, write); resp.StatusCode != http.StatusForbidden {
			t.Errorf("write with the page's token: %d %s", resp.StatusCode, b)
		}
	})
}
