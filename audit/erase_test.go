package audit_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/audit"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/query"
)

func TestRetentionErasesExpiredPayloads(t *testing.T) {
	t.Parallel()
	f := newFixture(t, apitest.New(t), nil)
	at, expiring, kept, long := expirySet()
	record(t, f.store, expiring, kept, long)
	job := f.svc.Retention(audit.RetentionOptions{Scan: 2})
	tick := func(wantScanned, wantErased int) {
		t.Helper()
		scanned, erased, err := job.Tick(t.Context())
		if err != nil || scanned != wantScanned || erased != wantErased {
			t.Fatalf("tick: scanned %d, erased %d, %v; want %d, %d", scanned, erased, err, wantScanned, wantErased)
		}
	}
	// A second before expiry a whole pass erases nothing, Scan at a time.
	f.clock.Set(at.AddDate(0, 0, 2).Add(-time.Second))
	tick(2, 0)
	tick(1, 0)
	// At expiry the next pass erases it, by "system" for "retention".
	f.clock.Set(at.AddDate(0, 0, 2))
	tick(2, 1)
	tick(2, 0) // the rest, and the erasure record
	tick(2, 0) // the next pass: the erased record is gone from the log

	v := decode[struct {
		Verified        bool     `json:"verified"`
		ErasedRevisions []uint64 `json:"erasedRevisions"`
	}](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+expiring.TargetID+"/verify"))
	if !v.Verified || !slices.Equal(v.ErasedRevisions, []uint64{0}) {
		t.Fatalf("verify after retention: %+v", v)
	}
	p := decode[replayPage](t, f.get(t, "auditor", "/api/v1/activityHistory/streams/"+expiring.TargetID+"/events"))
	if len(p.Results) != 4 || !p.Results[0].Erased || p.Results[0].DataBase64 != "" || p.Results[0].Digest == "" || p.Results[1].Erased {
		t.Fatalf("replay after retention: %+v", p.Results)
	}
	var e eventstore.Erasure
	if err := json.Unmarshal(p.Results[3].Data, &e); err != nil || e.By != audit.SystemActor || e.Reason != audit.RetentionReason ||
		len(e.Records) != 1 || e.Records[0].ID != expiring.ID || p.Results[3].Type != eventstore.ErasureType {
		t.Fatalf("erasure record: %s %+v %v", p.Results[3].Data, e, err)
	}
	if n := counterValue(t, f.reg, "activityhistory_erasures_total", "retention"); n != 1 {
		t.Fatalf("erasures_total{kind=retention} = %v, want 1", n)
	}
}

// A store that cannot erase (EventStoreDB) answers 501, naming why.
func TestEraseWithoutAnEraser(t *testing.T) {
	t.Parallel()
	s := openStore(t, natsjs.Config{DataDir: t.TempDir()})
	target := uuid.NewString()
	record(t, s, newActivity(target, time.Now()))
	v, err := activity.NewValidator(activity.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	cs, _ := query.NewCursors([]byte(secret))
	svc, err := audit.New(audit.Store{Streams: s}, audit.Options{Cursors: cs, Validator: v})
	if err != nil {
		t.Fatal(err)
	}
	e := httpapi.NewEngine("audit", slog.New(slog.DiscardHandler), nil)
	audit.Mount(e, svc, audit.Routes{})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL+"/api/v1/activityHistory/streams/"+target+"/erase",
		bytes.NewReader([]byte(`{"reason":"request"}`)))
	req.Header.Set("Content-Type", "application/json")
	resp, body := apitest.New(t).Do(t, nil, req)
	if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(string(body), "EventStoreDB") {
		t.Fatalf("erase without an eraser: %d %s", resp.StatusCode, body)
	}
}
