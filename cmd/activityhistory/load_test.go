package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/apitest"
)

// The load command against the real service: writes and reads succeed,
// nothing fails, and every target's history holds exactly what the tool
// says it recorded there.
func TestLoadAgainstTheService(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"uuid targets, one activity per POST", nil,
			[]string{"--batch", "1", "--targets", "6"}},
		{"opaque targets, batches over two targets", map[string]string{"TARGET_ID_FORMAT": "opaque"},
			[]string{"--batch", "4", "--batch-targets", "2", "--targets", "5", "--target-id-format", "opaque"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			chk := apitest.New(t)
			env := baseEnv(t.TempDir())
			for k, v := range c.env {
				env[k] = v
			}
			s := start(t, env)
			args := append([]string{"load", "--url", s.url, "--duration", "1500ms", "--writers", "2", "--readers", "2",
				"--page-size", "3", "--pages", "3", "--seed-per-target", "4", "--progress", "500ms", "--json"}, c.args...)
			tok := mint(t, "readers", "writers")
			getenv := func(k string) string {
				if k == "TOKEN" {
					return tok
				}
				return ""
			}
			var stdout bytes.Buffer
			stderr := &syncBuffer{}
			if err := run(context.Background(), args, getenv, &stdout, stderr); err != nil {
				t.Fatalf("load: %v\n%s\n%s", err, stdout.String(), stderr)
			}
			var sum loadSummary
			if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil {
				t.Fatalf("summary: %v\n%s", err, stdout.String())
			}
			if sum.Failed != 0 {
				t.Fatalf("%d failed requests:\n%s", sum.Failed, stdout.String())
			}
			ops := map[string]opSummary{}
			for _, o := range sum.Ops {
				ops[o.Op] = o
			}
			for _, op := range []string{"POST", "GET first page", "GET next page"} {
				if ops[op].OK == 0 {
					t.Errorf("no successful %s:\n%s", op, stdout.String())
				}
			}
			if sum.Seed == nil || sum.Seed.Activities != 4*sum.Targets {
				t.Fatalf("seed: %+v, want %d activities", sum.Seed, 4*sum.Targets)
			}
			if !strings.Contains(stderr.String(), "load:") || !strings.Contains(stderr.String(), "POST") {
				t.Errorf("no progress line on stderr:\n%s", stderr)
			}

			var total int64
			reader := mint(t, "readers")
			for _, tc := range sum.PerTarget {
				total += tc.Activities
				checkFor(t, 5*time.Second, func() error {
					if got := historyCount(t, chk, s.url, reader, tc.TargetID); int64(got) != tc.Activities {
						return fmt.Errorf("target %s: %d in the history, the tool recorded %d", tc.TargetID, got, tc.Activities)
					}
					return nil
				})
			}
			if len(sum.PerTarget) != sum.Targets || total != int64(sum.Seed.Activities+ops["POST"].Activities) {
				t.Fatalf("per-target counts %d over %d targets, want %d seeded + %d posted",
					total, len(sum.PerTarget), sum.Seed.Activities, ops["POST"].Activities)
			}
		})
	}
}

// historyCount pages through a target's history (any id format) and counts it.
func historyCount(t *testing.T, chk *apitest.Checker, base, token, target string) int {
	t.Helper()
	n, next := 0, ""
	for {
		q := url.Values{"targetId": {target}, "pageSize": {"50"}}
		if next != "" {
			q.Set("paginationToken", next)
		}
		resp, body := chk.Do(t, nil, request(t, http.MethodGet, base+"/api/v1/activityHistory?"+q.Encode(), token, nil))
		if resp.StatusCode == http.StatusNotFound {
			return 0
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET history of %s: %d %s", target, resp.StatusCode, body)
		}
		var p page
		if err := json.Unmarshal(body, &p); err != nil {
			t.Fatal(err)
		}
		n += len(p.Results)
		if p.PaginationDetails.NextToken == nil {
			return n
		}
		next = *p.PaginationDetails.NextToken
	}
}

// A run fails, with the summary still printed, when the service answers
// 5xx or unexpected 4xx, sends broken pages, or cannot be reached.
func TestLoadFailsOnErrors(t *testing.T) {
	t.Parallel()
	status := func(code int) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) })
	}
	// Accepts writes and answers every read with a page out of order.
	unordered := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
			return
		}
		tid := r.URL.Query().Get("targetId")
		fmt.Fprintf(w, `{"results":[{"id":"a","targetId":%q,"createdAt":"2024-01-01T00:00:00Z"},`+
			`{"id":"b","targetId":%q,"createdAt":"2024-01-02T00:00:00Z"}],"paginationDetails":{"nextToken":null}}`, tid, tid)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	cases := []struct {
		name    string
		handler http.Handler
		want    string
	}{
		{"server errors", status(http.StatusInternalServerError), "500 ×"},
		{"unauthorised", status(http.StatusUnauthorized), "401 ×"},
		{"pages out of order", unordered, "bad-page ×"},
		{"nothing listening", nil, "transport ×"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			u := closed
			if c.handler != nil {
				srv := httptest.NewServer(c.handler)
				t.Cleanup(srv.Close)
				u = srv.URL
			}
			var stdout bytes.Buffer
			err := run(context.Background(), []string{"load", "--url", u, "--token", "x", "--duration", "200ms",
				"--writers", "1", "--readers", "1", "--targets", "3", "--progress", "0"},
				func(string) string { return "" }, &stdout, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
			if !strings.Contains(stdout.String(), "operation") {
				t.Fatalf("no summary printed:\n%s", stdout.String())
			}
		})
	}
}

func TestLoadPageChecks(t *testing.T) {
	t.Parallel()
	item := func(id, target, at string) string {
		return fmt.Sprintf(`{"id":%q,"targetId":%q,"createdAt":%q}`, id, target, at)
	}
	pg := func(next string, items ...string) []byte {
		tok := "null"
		if next != "" {
			tok = `"` + next + `"`
		}
		return []byte(`{"results":[` + strings.Join(items, ",") + `],"paginationDetails":{"nextToken":` + tok + `}}`)
	}
	newer := item("b", "T", "2024-01-02T00:00:00Z")
	older := item("a", "T", "2024-01-01T00:00:00Z")
	cases := []struct {
		name    string
		body    []byte
		after   string
		problem string // "" = valid
	}{
		{"newest first, last page", pg("", newer, older), "", ""},
		{"full page with a token", pg("tok", newer, older), "", ""},
		{"same time, id breaks the tie", pg("", item("b", "T", "2024-01-01T00:00:00Z"), older), "", ""},
		{"oldest first", pg("", older, newer), "", "not newest first"},
		{"continues below the previous page", pg("", older), "2024-01-01T12:00:00.000000000Z|x", ""},
		{"repeats the previous page", pg("", newer), "2024-01-01T12:00:00.000000000Z|x", "not newest first"},
		{"another target's activity", pg("", item("c", "U", "2024-01-03T00:00:00Z")), "", "in the history of"},
		{"token on a short page", pg("tok", newer), "", "nextToken on a page of 1"},
		{"more than pageSize", pg("", newer, older, item("0", "T", "2023-01-01T00:00:00Z")), "", "3 results for pageSize 2"},
		{"no results", pg(""), "", "no results"},
		{"not JSON", []byte("<html>"), "", "not a history page"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next, last, problem := checkLoadPage(c.body, "T", 2, c.after)
			if c.problem == "" && problem != "" || !strings.Contains(problem, c.problem) {
				t.Fatalf("problem %q, want %q", problem, c.problem)
			}
			if problem == "" && (last == "" || strings.Contains(string(c.body), `"tok"`) != (next == "tok")) {
				t.Fatalf("next %q last %q", next, last)
			}
		})
	}
}

func TestLoadFlags(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want string
	}{
		{[]string{}, "--token"},
		{[]string{"--token", "x", "--batch", "501"}, "--batch"},
		{[]string{"--token", "x", "--batch", "2", "--batch-targets", "3"}, "--batch-targets"},
		{[]string{"--token", "x", "--page-size", "0"}, "--page-size"},
		{[]string{"--token", "x", "--target-id-format", "guid"}, "--target-id-format"},
		{[]string{"--token", "x", "--writers", "0", "--readers", "0"}, "at least one worker"},
		{[]string{"--token", "x", "--url", "127.0.0.1:8080"}, "--url"},
		{[]string{"--secret", "short"}, "secret"},
		{[]string{"--token", "x", "--nonsense"}, "usage"},
	}
	for _, c := range cases {
		err := run(context.Background(), append([]string{"load", "--duration", "10ms"}, c.args...),
			func(string) string { return "" }, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
	// Help asked for is not an error (exit 0).
	if err := run(context.Background(), []string{"load", "-h"}, func(string) string { return "" }, io.Discard, io.Discard); err != nil {
		t.Errorf("-h: got %v, want nil", err)
	}
}
