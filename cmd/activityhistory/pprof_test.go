package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
)

func TestPprofOffByDefaultAndServedWhenAsked(t *testing.T) {
	t.Parallel()
	cfg, err := parseServeConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PprofAddr != "" {
		t.Fatalf("pprof is on by default: %q", cfg.PprofAddr)
	}
	cfg, err = parseServeConfig([]string{"--pprof-addr", "127.0.0.1:0"}, func(string) string { return "" }, io.Discard)
	if err != nil || cfg.PprofAddr != "127.0.0.1:0" {
		t.Fatalf("--pprof-addr: %q, %v", cfg.PprofAddr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := servePprof(ctx, cfg.PprofAddr, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("pprof answered %d with %d bytes", resp.StatusCode, len(body))
	}
}
