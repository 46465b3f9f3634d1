package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/ui"
	"github.com/council/activityhistory/ui/uitest"
)

// TestPageInBrowser runs the page's own modules in headless Chromium: the
// field-level diff, and how the page words a failing service. The page
// against the whole service is tested in cmd/activityhistory.
const slowTarget = "0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d"

func TestPageInBrowser(t *testing.T) {
	t.Parallel()
	page := uitest.Start(t, "UTC", "en-GB")
	e := engine(ui.Options{})
	// The service's own error answers: a fault (500) and a dependency that
	// did not answer in time (503).
	e.GET("/api/v1/activityHistory", func(c *gin.Context) {
		if c.Query("targetId") == slowTarget {
			httpapi.Internal(c, context.DeadlineExceeded)
			return
		}
		httpapi.Internal(c, errors.New("a fault"))
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	page.Do(t, chromedp.Navigate(srv.URL+"/ui/"))
	uitest.WaitFor[bool](t, page, `document.body.dataset.ready === "true"`)

	t.Run("empty state", func(t *testing.T) {
		if !uitest.Eval[bool](t, page, `!document.getElementById("intro").hidden && document.getElementById("view").hidden`) {
			t.Error("without a target the page does not invite a search")
		}
		if got := uitest.Eval[string](t, page, `document.getElementById("token-status").textContent`); !strings.Contains(got, "a gateway may add it") {
			t.Errorf("token status %q", got)
		}
		uitest.Axe(t, page)
	})

	t.Run("diff", func(t *testing.T) {
		type change struct {
			Path []string `json:"path"`
			Kind string   `json:"kind"`
		}
		cases := []struct {
			name, before, after string
			want                []change
			unchanged           int
		}{
			{"nothing changed", `{"a":1,"b":{"c":[1,2]}}`, `{"b":{"c":[1,2]},"a":1}`, nil, 2},
			{"created", `null`, `{"a":1,"b":{"c":2}}`, []change{{[]string{"a"}, "added"}, {[]string{"b"}, "added"}}, 0},
			{"deleted", `{"a":1}`, `null`, []change{{[]string{"a"}, "removed"}}, 0},
			{"both absent", `null`, `null`, nil, 0},
			{"nested", `{"x":{"y":{"z":1,"w":2}}}`, `{"x":{"y":{"z":3,"w":2,"v":4}}}`,
				[]change{{[]string{"x", "y", "z"}, "changed"}, {[]string{"x", "y", "v"}, "added"}}, 1},
			{"object became a value", `{"a":{"b":1}}`, `{"a":"flat"}`, []change{{[]string{"a"}, "changed"}}, 0},
			{"arrays compare whole", `{"a":[1,2,3]}`, `{"a":[1,3,2]}`, []change{{[]string{"a"}, "changed"}}, 0},
			{"type of a value", `{"a":1}`, `{"a":"1"}`, []change{{[]string{"a"}, "changed"}}, 0},
			{"null value to absent", `{"a":null}`, `{}`, []change{{[]string{"a"}, "removed"}}, 0},
		}
		for _, tc := range cases {
			expr := `import("./diff.js").then(m => JSON.stringify(m.diff(` + tc.before + `, ` + tc.after + `)))`
			var got struct {
				Changes   []change `json:"changes"`
				Unchanged int      `json:"unchanged"`
			}
			if err := json.Unmarshal([]byte(uitest.Eval[string](t, page, expr)), &got); err != nil {
				t.Fatal(err)
			}
			eq := func(a, b change) bool { return a.Kind == b.Kind && slices.Equal(a.Path, b.Path) }
			if !slices.EqualFunc(got.Changes, tc.want, eq) || got.Unchanged != tc.unchanged {
				t.Errorf("%s: diff(%s, %s) = %+v, want %+v and %d unchanged", tc.name, tc.before, tc.after, got, tc.want, tc.unchanged)
			}
		}
	})

	t.Run("500 and 503 show what happened and a reference", func(t *testing.T) {
		page.Do(t,
			chromedp.SetValue(chromedp.CSS("#target"), "5b0c9c1e-6d2f-4a8b-9e3a-2f6d7c8b9a01"),
			chromedp.Click(chromedp.CSS("#search button[type=submit]")),
		)
		got := uitest.WaitFor[string](t, page, `!document.getElementById("message").hidden && document.getElementById("message").innerText`)
		if !strings.Contains(got, "The service had a problem (500)") || !strings.Contains(got, "Reference for support:") {
			t.Errorf("500 shows %q", got)
		}
		uitest.Axe(t, page)

		page.Do(t,
			chromedp.SetValue(chromedp.CSS("#target"), slowTarget),
			chromedp.Click(chromedp.CSS("#search button[type=submit]")),
		)
		got = uitest.WaitFor[string](t, page, `!document.getElementById("message").hidden && document.getElementById("message").innerText`)
		if !strings.Contains(got, "unavailable for now (503)") || !strings.Contains(got, "Try again in 1 second.") {
			t.Errorf("503 shows %q", got)
		}
	})

	for _, l := range page.Logs() {
		if strings.Contains(l, "Content Security Policy") || strings.Contains(l, "exception") {
			t.Errorf("page log: %s", l)
		}
	}
}
