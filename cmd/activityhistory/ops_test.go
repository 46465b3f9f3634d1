package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
)

// A dependency that is down makes the ping 503 Unhealthy, names it, and
// takes the instance out of readiness.
func TestHealthReportsAFailingDependency(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	ready := &atomic.Bool{}
	ready.Store(true)
	down := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	o := &ops{ready: ready, reg: prometheus.NewRegistry(), checks: []check{
		{name: "EventStore", description: "embedded JetStream", ping: func(context.Context) error { return nil }},
		{name: "ReadModel", description: "Redis read model", ping: func(context.Context) error { return down }},
	}}
	e := httpapi.NewEngine("test", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	o.mount(e)

	resp, body := chk.Serve(t, e, httptest.NewRequest(http.MethodGet, "/api/v1/healthcheck/ping", nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("ping: %d %s", resp.StatusCode, body)
	}
	var rep healthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	rm := rep.Entries["ReadModel"]
	if rep.Status != "Unhealthy" || rm.Status != "Unhealthy" || rm.ExceptionMessage == nil || *rm.ExceptionMessage != down.Error() {
		t.Fatalf("report %s", body)
	}
	if rep.Entries["EventStore"].Status != "Healthy" {
		t.Fatalf("healthy dependency reported as %s", rep.Entries["EventStore"].Status)
	}
	resp, body = chk.Serve(t, e, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a dependency down: %d %s", resp.StatusCode, body)
	}
	ready.Store(false)
	o.checks = o.checks[:1]
	resp, _ = chk.Serve(t, e, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz while starting: %d", resp.StatusCode)
	}
}

// A dependency whose ping ignores its deadline does not hold the health
// answer back: it is reported unhealthy once the health timeout passes.
func TestHealthAnswersWithinItsTimeout(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	ready := &atomic.Bool{}
	ready.Store(true)
	hung := make(chan struct{})
	t.Cleanup(func() { close(hung) })
	o := &ops{ready: ready, reg: prometheus.NewRegistry(), checks: []check{
		{name: "EventStore", description: "embedded JetStream", ping: func(context.Context) error { return nil }},
		{name: "ReadModel", description: "Redis read model", ping: func(context.Context) error { <-hung; return nil }},
	}}
	e := httpapi.NewEngine("test", slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	o.mount(e)
	resp, body := chk.Serve(t, e, httptest.NewRequest(http.MethodGet, "/api/v1/healthcheck/ping", nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("ping: %d %s", resp.StatusCode, body)
	}
	var rep healthReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Entries["ReadModel"].Status != "Unhealthy" || rep.Entries["EventStore"].Status != "Healthy" {
		t.Fatalf("report %s", body)
	}
	resp, _ = chk.Serve(t, e, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with a hung dependency: %d", resp.StatusCode)
	}
}
