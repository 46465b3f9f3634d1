// Package uitest is the timeline page's browser test kit: it drives a real
// headless Chromium through the DevTools protocol (chromedp), runs the
// axe-core accessibility engine on the page, collects what the page logs
// (CSP violations included) and writes screenshots.
//
// axe.min.js is axe-core 4.14.1 (npm package axe-core), unmodified, under
// the Mozilla Public License 2.0 (axe-core.LICENSE). It is used by tests
// only and is not part of the binary.
package uitest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

//go:embed axe.min.js
var axeSource string

// BrowserEnv names a browser binary to use instead of looking one up.
const BrowserEnv = "CHROME_PATH"

// browserNames are looked up on PATH, in this order.
var browserNames = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome", "headless-shell"}

// findBrowser returns the browser binary, or "" when there is none.
func findBrowser() string {
	if p := os.Getenv(BrowserEnv); p != "" {
		return p
	}
	for _, n := range browserNames {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// Page is one browser tab, with what it logged.
type Page struct {
	Ctx context.Context

	mu   sync.Mutex
	logs []string
}

// Start launches one headless Chromium for the test, with a fresh profile,
// and opens a tab whose clock shows timezone and locale. It skips the test
// when no browser binary is found. The browser closes when the test ends.
func Start(t testing.TB, timezone, locale string) *Page {
	t.Helper()
	bin := findBrowser()
	if bin == "" {
		t.Skipf("no Chromium or Chrome binary found (looked for $%s and %s on PATH): "+
			"install Debian's chromium (apt-get install chromium) to run the browser tests", BrowserEnv, strings.Join(browserNames, ", "))
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", locale),
		chromedp.Env("TZ=" + timezone),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		_ = chromedp.Cancel(cctx)
		cancel()
		acancel()
	})
	p := &Page{Ctx: ctx}
	// Subscribe before the first page loads, so that nothing it logs is lost.
	console := chromedp.Console(ctx)
	go func() {
		for m, err := range console {
			if err != nil {
				return
			}
			p.mu.Lock()
			p.logs = append(p.logs, fmt.Sprintf("%s: %s", m.Type, m.Text))
			p.mu.Unlock()
		}
	}()
	p.Do(t,
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: timezone}); err != nil {
				return err
			}
			_, err := chromedp.Call(ctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: locale})
			return err
		}),
	)
	return p
}

// Do runs actions on the tab, failing t on an error. Each call has 60 s:
// a shared machine running the whole suite can be slow.
func (p *Page) Do(t testing.TB, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("browser: %v\npage log:\n%s", err, strings.Join(p.Logs(), "\n"))
	}
}

// Eval evaluates a JavaScript expression (awaiting a promise) into T.
func Eval[T any](t testing.TB, p *Page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, time.Minute)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %q: %v\npage log:\n%s", clip(expr), err, strings.Join(p.Logs(), "\n"))
	}
	return v
}

// WaitFor polls a JavaScript expression until it is truthy (at most 45 s)
// and returns its value.
func WaitFor[T any](t testing.TB, p *Page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, 50*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Poll[T](expr, chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(45*time.Second)))
	if err != nil {
		t.Fatalf("waiting for %q: %v\npage log:\n%s", clip(expr), err, strings.Join(p.Logs(), "\n"))
	}
	return v
}

// Logs is what the page logged so far: console calls, uncaught exceptions
// and browser log entries (a CSP violation is one).
func (p *Page) Logs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.logs...)
}

// Screenshot writes the viewport as a PNG to path.
func (p *Page) Screenshot(t testing.TB, path string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Ctx, time.Minute)
	defer cancel()
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Violation is one axe-core rule the page breaks.
type Violation struct {
	ID     string   `json:"id"`
	Impact string   `json:"impact"`
	Help   string   `json:"help"`
	Nodes  []string `json:"nodes"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(v.Nodes, "; "))
}

// Axe runs axe-core's WCAG 2.1 A and AA rules (or only the rules named) on
// the page as it stands and fails t for each serious or critical
// violation; it returns them all.
func Axe(t testing.TB, p *Page, rules ...string) []Violation {
	t.Helper()
	if !Eval[bool](t, p, "typeof window.axe === 'object'") {
		Eval[chromedp.Void](t, p, axeSource)
	}
	only := `{type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}`
	if len(rules) > 0 {
		names, _ := json.Marshal(rules)
		only = `{type: "rule", values: ` + string(names) + `}`
	}
	run := `axe.run(document, {runOnly: ` + only + `, resultTypes: ["violations"]})
		.then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact || "", help: v.help,
			nodes: v.nodes.map(n => n.target.join(" ") + ": " + (n.failureSummary || "").replace(/\s+/g, " "))}))))`
	out := Eval[string](t, p, run)
	var vs []Violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("axe result: %v", err)
	}
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("accessibility: %s", v)
		} else {
			t.Logf("accessibility (%s, not failing): %s", v.Impact, v)
		}
	}
	return vs
}

// ColorScheme emulates prefers-color-scheme ("light" or "dark").
func ColorScheme(scheme string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	})
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
