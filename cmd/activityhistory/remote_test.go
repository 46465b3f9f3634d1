package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/internal/testkit/natstest"
	"github.com/council/activityhistory/projection/redistest"
)

// remoteRun runs a sub-command with args and returns its error, stdout and
// stderr.
func remoteRun(t *testing.T, args ...string) (error, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, args, func(string) string { return "" }, &stdout, &stderr)
	t.Logf("%v: %v\nstdout:\n%sstderr:\n%s", args, err, stdout.String(), stderr.String())
	return err, stdout.String(), stderr.String()
}

// liar stands in front of the real service and alters what it replays:
// edit gets each replay page (targetId, results, paginationDetails).
func liar(t *testing.T, upstream string, edit func(page map[string]json.RawMessage, recs []map[string]json.RawMessage) []map[string]json.RawMessage) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), r.Method, upstream+r.URL.RequestURI(), nil)
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var page map[string]json.RawMessage
		var recs []map[string]json.RawMessage
		if resp.StatusCode == http.StatusOK && strings.HasSuffix(r.URL.Path, "/events") &&
			json.Unmarshal(body, &page) == nil && json.Unmarshal(page["results"], &recs) == nil {
			recs = edit(page, recs)
			page["results"], _ = json.Marshal(recs)
			body, _ = json.Marshal(page)
		}
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func revisionOf(t *testing.T, rec map[string]json.RawMessage) int {
	var n int
	if err := json.Unmarshal(rec["revision"], &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestVerifyAndReplayOverHTTP(t *testing.T) {
	t.Parallel()
	s := start(t, baseEnv(t.TempDir()))
	target := uuid.NewString()
	postAll(t, apitest.New(t), s.url, mint(t, "writers"), target, 30)
	auditor, reader := mint(t, "auditors"), mint(t, "readers")

	// A clean stream: exit 0, and the head to save.
	err, out, _ := remoteRun(t, "verify", "--url", s.url, "--token", auditor, "--target", target)
	if err != nil || !strings.HasPrefix(out, "OK "+target+": 30 records recomputed, head 29:") {
		t.Fatalf("clean: %v %q", err, out)
	}
	head := strings.Fields(out)[6]
	err, out, _ = remoteRun(t, "verify", "--url", s.url, "--token", auditor, "--target", strings.ToUpper(target), "--expect-head", head)
	if err != nil || !strings.Contains(out, "holds the expected head "+head) {
		t.Fatalf("against the saved head: %v %q", err, out)
	}

	// A server that alters one byte of one record's data, consistently in
	// data and dataBase64: the recomputed hash differs.
	altered := liar(t, s.url, func(_ map[string]json.RawMessage, recs []map[string]json.RawMessage) []map[string]json.RawMessage {
		for _, r := range recs {
			if revisionOf(t, r) != 17 {
				continue
			}
			var b64 string
			_ = json.Unmarshal(r["dataBase64"], &b64)
			data, _ := base64.StdEncoding.DecodeString(b64)
			i := bytes.Index(data, []byte(`"person"`)) + 1
			data[i] ^= 0x20 // "person" → "Person": one byte
			r["data"] = data
			r["dataBase64"], _ = json.Marshal(base64.StdEncoding.EncodeToString(data))
		}
		return recs
	})
	err, out, _ = remoteRun(t, "verify", "--url", altered, "--token", auditor, "--target", target)
	if exitCode(err) != 1 || !strings.Contains(out, "FAIL "+target+": revision 17:") {
		t.Fatalf("one byte altered: exit %d %q", exitCode(err), out)
	}

	// A server whose stream lost its newest records since the head was saved.
	shorter := liar(t, s.url, func(page map[string]json.RawMessage, recs []map[string]json.RawMessage) []map[string]json.RawMessage {
		var kept []map[string]json.RawMessage
		for _, r := range recs {
			if revisionOf(t, r) < 25 {
				kept = append(kept, r)
			}
		}
		if len(kept) < len(recs) {
			page["paginationDetails"] = json.RawMessage(`{"nextToken":null}`)
		}
		return kept
	})
	err, out, _ = remoteRun(t, "verify", "--url", shorter, "--token", auditor, "--target", target, "--expect-head", head)
	if exitCode(err) != 1 || !strings.Contains(out, "head moved backwards") {
		t.Fatalf("head moved backwards: exit %d %q", exitCode(err), out)
	}
	// The same shorter stream verifies on its own: only the saved head shows the loss.
	if err, _, _ := remoteRun(t, "verify", "--url", shorter, "--token", auditor, "--target", target); err != nil {
		t.Fatalf("shorter stream without a saved head: %v", err)
	}
	// A saved head whose hash the stream does not hold.
	err, _, _ = remoteRun(t, "verify", "--url", s.url, "--token", auditor, "--target", target, "--expect-head", "3:"+strings.Repeat("ab", 32))
	if exitCode(err) != 1 {
		t.Fatalf("wrong saved hash: exit %d", exitCode(err))
	}

	// Usage and not found: exit 2.
	for _, args := range [][]string{
		{"verify", "--url", s.url, "--token", auditor, "--target", uuid.NewString()},
		{"verify", "--url", s.url, "--token", auditor, "--target", target, "--expect-head", "nonsense"},
		{"verify", "--url", s.url, "--all"},
		{"verify", "--target", target, "--expect-head", head},
		{"replay", "--url", s.url, "--token", auditor},
		{"replay", "--url", s.url, "--token", auditor, "--target", uuid.NewString()},
	} {
		if err, _, _ := remoteRun(t, args...); exitCode(err) != 2 {
			t.Errorf("%v: exit %d, want 2", args, exitCode(err))
		}
	}
	// Without the audit group: refused, and not a verification failure.
	if err, _, _ := remoteRun(t, "verify", "--url", s.url, "--token", reader, "--target", target); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("reader token: %v", err)
	}

	// Replay prints every record, from a revision.
	err, out, _ = remoteRun(t, "replay", "--url", s.url, "--token", auditor, "--target", target, "--from", "10", "--format", "ndjson")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first struct{ Revision int }
	if err != nil || len(lines) != 20 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.Revision != 10 {
		t.Fatalf("replay ndjson: %v, %d lines", err, len(lines))
	}
	err, out, _ = remoteRun(t, "replay", "--url", s.url, "--token", auditor, "--target", target)
	if err != nil || strings.Count(out, "\n") != 31 || !strings.HasPrefix(out, "REVISION") {
		t.Fatalf("replay table: %v\n%s", err, out)
	}
}

// A query-only process opens the event store for the audit routes only
// when an auditor first asks, and serves them from it.
func TestQueryOnlyServesAuditFromExternalStore(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	ns := natstest.StartServer(t)
	_, prefix := redistest.Client(t)
	writerEnv := baseEnv(t.TempDir())
	writerEnv["ROLES"], writerEnv["EVENTSTORE_URL"] = "command", ns.ClientURL()
	writer := start(t, writerEnv)
	target := uuid.NewString()
	postAll(t, chk, writer.url, mint(t, "writers"), target, 12)

	queryEnv := baseEnv(t.TempDir())
	queryEnv["ROLES"], queryEnv["EVENTSTORE_URL"] = "query", ns.ClientURL()
	queryEnv["REDIS_URL"], queryEnv["REDIS_PREFIX"] = redisURL(), prefix
	q := start(t, queryEnv)
	resp, body := chk.Do(t, nil, request(t, http.MethodGet, q.url+"/api/v1/activityHistory/streams/"+target+"/verify", mint(t, "auditors"), nil))
	if resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(`"verified":true,"records":12`)) {
		t.Fatalf("verify through a query-only process: %d %s", resp.StatusCode, body)
	}
	resp, body = chk.Do(t, nil, request(t, http.MethodGet, q.url+"/api/v1/activityHistory/export?pageSize=5", mint(t, "auditors"), nil))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Next-Token") == "" || bytes.Count(body, []byte(`"id":`)) != 5 {
		t.Fatalf("export through a query-only process: %d %s", resp.StatusCode, body)
	}
}
