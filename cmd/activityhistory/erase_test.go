package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

// personalName is the personal data of the i-th activity: what erasure removes.
func personalName(target string, i int) string {
	return fmt.Sprintf("Jane Erasable-%s-%d", target[:8], i)
}

// postPersonal records n activities of target holding personal data.
func postPersonal(t *testing.T, chk *apitest.Checker, base, target string, n int) []string {
	t.Helper()
	var items []map[string]any
	var ids []string
	for i := range n {
		a := activityBody(target, i)
		a["newData"] = map[string]any{"name": personalName(target, i)}
		a["timetoLiveForRecord"] = 0
		items = append(items, a)
		ids = append(ids, a["id"].(string))
	}
	resp, body := chk.Do(t, nil, request(t, http.MethodPost, base+"/api/v1/activityHistory", mint(t, "writers"), items))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	return ids
}

func TestEraseOverHTTPAndCLIThenVerify(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := start(t, baseEnv(dir))
	chk := apitest.New(t)
	target := uuid.NewString()
	ids := postPersonal(t, chk, s.url, target, 3)
	auditor, reader := mint(t, "auditors"), mint(t, "readers")
	eraseURL := s.url + "/api/v1/activityHistory/streams/" + target + "/erase"
	checkFor(t, 10*time.Second, func() error {
		if got := history(t, chk, s.url, reader, target); len(got) != 3 {
			return fmt.Errorf("history: %v", got)
		}
		return nil
	})

	// Only auditors erase; bad requests name the field.
	for _, tok := range []string{reader, mint(t, "writers")} {
		if resp, body := chk.Do(t, nil, request(t, http.MethodPost, eraseURL, tok, map[string]any{"reason": "r"})); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("erase by a non-auditor: %d %s", resp.StatusCode, body)
		}
	}
	for field, body := range map[string]map[string]any{
		"reason": {"ids": []string{ids[0]}},
		"ids":    {"reason": "request", "ids": []string{uuid.NewString()}},
	} {
		resp, b := chk.Do(t, nil, request(t, http.MethodPost, eraseURL, auditor, body))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"`+field+`"`) {
			t.Fatalf("erase without a good %s: %d %s", field, resp.StatusCode, b)
		}
	}
	unknown := s.url + "/api/v1/activityHistory/streams/" + uuid.NewString() + "/erase"
	if resp, b := chk.Do(t, nil, request(t, http.MethodPost, unknown, auditor, map[string]any{"reason": "r"})); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("erase of an unknown target: %d %s", resp.StatusCode, b)
	}

	// Erase the first over HTTP; again changes nothing.
	type result struct {
		Erased        int    `json:"erased"`
		AlreadyErased int    `json:"alreadyErased"`
		By            string `json:"by"`
	}
	for i, want := range []result{{Erased: 1, By: "writer@example.org"}, {AlreadyErased: 1, By: "writer@example.org"}} {
		resp, b := chk.Do(t, nil, request(t, http.MethodPost, eraseURL, auditor, map[string]any{"reason": "subject request 118", "ids": []string{ids[0]}}))
		var got result
		if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got != want {
			t.Fatalf("erase #%d: %d %s, want %+v", i+1, resp.StatusCode, b, want)
		}
	}
	// The second by the CLI, through the API.
	err, out, _ := remoteRun(t, "erase", "--url", s.url, "--token", auditor, "--target", target, "--id", ids[1], "--reason", "subject request 119")
	if err != nil || !strings.HasPrefix(out, "OK "+target+": 1 record erased (revisions 1)") {
		t.Fatalf("erase by CLI over HTTP: %v %q", err, out)
	}

	// Gone from every read.
	checkFor(t, 10*time.Second, func() error {
		if got := history(t, chk, s.url, reader, target); !slices.Equal(got, []string{ids[2]}) {
			return fmt.Errorf("history after erasure: %v, want only %s", got, ids[2])
		}
		return nil
	})
	for _, id := range ids[:2] {
		if resp, b := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/"+id, reader, nil)); resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET erased %s: %d %s", id, resp.StatusCode, b)
		}
	}
	resp, b := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/export?format=ndjson", auditor, nil))
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), ids[0]) || strings.Contains(string(b), ids[1]) || !strings.Contains(string(b), ids[2]) {
		t.Fatalf("export after erasure: %d %s", resp.StatusCode, b)
	}

	// Verified, with the erased records reported as erased.
	resp, b = chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/streams/"+target+"/verify", auditor, nil))
	var v struct {
		Verified        bool     `json:"verified"`
		Records         int      `json:"records"`
		Erased          int      `json:"erased"`
		ErasedRevisions []uint64 `json:"erasedRevisions"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || !v.Verified || v.Records != 5 || v.Erased != 2 || !slices.Equal(v.ErasedRevisions, []uint64{0, 1}) {
		t.Fatalf("verify route: %d %s", resp.StatusCode, b)
	}
	err, out, _ = remoteRun(t, "verify", "--url", s.url, "--token", auditor, "--target", target)
	if err != nil || !strings.HasPrefix(out, "OK "+target+": 5 records recomputed (2 erased: revisions 0, 1), head 4:") {
		t.Fatalf("verify --url: %v %q", err, out)
	}
	err, out, _ = remoteRun(t, "replay", "--url", s.url, "--token", auditor, "--target", target, "--format", "ndjson")
	if err != nil || strings.Count(out, `"erased":true`) != 2 || strings.Contains(out, personalName(target, 0)) || !strings.Contains(out, personalName(target, 2)) {
		t.Fatalf("replay: %v %s", err, out)
	}

	// With the service stopped: the payloads are gone from the store's
	// files, the one kept is there; the CLI erases the rest in the store.
	s.stop()
	for i, gone := range []bool{true, true, false} {
		if natstest.FilesHold(t, dir, []byte(personalName(target, i))) == gone {
			t.Fatalf("payload %d in the store's files: want gone %v", i, gone)
		}
	}
	err, out, _ = remoteRun(t, "erase", "--data-dir", dir, "--target", target, "--reason", "retention by hand")
	if err != nil || !strings.HasPrefix(out, "OK "+target+": 1 record erased (revisions 2), 2 erased before") {
		t.Fatalf("erase in the store: %v %q", err, out)
	}
	if natstest.FilesHold(t, dir, []byte(personalName(target, 2))) {
		t.Fatal("payload 2 still in the store's files")
	}
	err, out = verifyRun(t, dir, "--target", target)
	if err != nil || !strings.Contains(out, "(3 erased: revisions 0, 1, 2)") {
		t.Fatalf("verify in the store: %v %q", err, out)
	}
	if err, out = verifyRun(t, dir, "--all"); err != nil || !strings.Contains(out, "OK all 1 stream") {
		t.Fatalf("verify --all: %v %q", err, out)
	}
}

// The projector's retention job erases expired payloads from the store.
func TestServiceErasesExpiredPayloads(t *testing.T) {
	t.Parallel()
	env := baseEnv(t.TempDir())
	env["RETENTION_ERASE_INTERVAL"] = "50ms"
	s := start(t, env)
	chk := apitest.New(t)
	target := uuid.NewString()
	a, b := activityBody(target, 0), activityBody(target, 1)
	a["timetoLiveForRecord"] = 1 // created in 2024: long expired
	resp, body := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/activityHistory", mint(t, "writers"), []any{a, b}))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %d %s", resp.StatusCode, body)
	}
	auditor := mint(t, "auditors")
	checkFor(t, 15*time.Second, func() error {
		resp, body := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory/streams/"+target+"/verify", auditor, nil))
		var v struct {
			Verified        bool     `json:"verified"`
			ErasedRevisions []uint64 `json:"erasedRevisions"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &v) != nil || !v.Verified || !slices.Equal(v.ErasedRevisions, []uint64{0}) {
			return fmt.Errorf("verify: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	if got := history(t, chk, s.url, mint(t, "readers"), target); !slices.Equal(got, []string{b["id"].(string)}) {
		t.Fatalf("history: %v", got)
	}
}
