package query_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
	"github.com/council/activityhistory/query"
)

func TestNewRejects(t *testing.T) {
	t.Parallel()
	mem := projection.NewMemory()
	good := []byte(secret)
	cases := []struct {
		name string
		r    query.Reader
		opts query.Options
	}{
		{"no reader", nil, query.Options{CursorSecret: good}},
		{"no secret", mem, query.Options{}},
		{"short secret", mem, query.Options{CursorSecret: good[:query.MinSecretLen-1]}},
		{"default above max", mem, query.Options{CursorSecret: good, DefaultPageSize: 20, MaxPageSize: 10}},
		{"negative default", mem, query.Options{CursorSecret: good, DefaultPageSize: -1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if svc, err := query.New(tc.r, tc.opts); err == nil {
				t.Errorf("New = %v, nil error; want an error", svc)
			}
		})
	}
}

func TestConfiguredPageSizes(t *testing.T) {
	t.Parallel()
	mem := projection.NewMemory()
	f := &fixture{model: mem, chk: apitest.New(t)}
	acts := f.add(t, targetA, 60)
	svc, err := query.New(mem, query.Options{CursorSecret: []byte(secret), DefaultPageSize: 25, MaxPageSize: 50})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(query.NewEngine(svc, query.EngineDeps{}))
	t.Cleanup(srv.Close)
	f.url = srv.URL

	p := decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA)))
	if len(p.results) != 25 || p.results[0].ID != newestFirst(acts)[0] {
		t.Errorf("default page: %d results", len(p.results))
	}
	decodePage(t, f.get(t, historyURL(f.url, "targetId", targetA, "pageSize", "50")))
	r := f.get(t, historyURL(f.url, "targetId", targetA, "pageSize", "51"))
	checkError(t, r, http.StatusBadRequest, "pageSize")
	var e httpapi.ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil || !strings.Contains(strings.Join(e.Errors["pageSize"], " "), "1 to 50") {
		t.Errorf("pageSize message %v does not give the range", e.Errors)
	}
}
