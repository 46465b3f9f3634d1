package bench

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuick runs the whole harness with tiny volumes, so that `make bench`
// cannot rot: every step runs and the table has every figure.
func TestQuick(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, tool := range []string{"go", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the bench needs %s on PATH (apt-get install -y redis-server for Redis)", tool)
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "activityhistory")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.CommandContext(ctx, "go", append(args, "../cmd/activityhistory")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The repository's bin/, where make bench puts it too: installed once.
	vegeta, err := InstallVegeta(ctx, filepath.Join("..", "bin"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Quick()
	cfg.Bin, cfg.Vegeta, cfg.WorkDir = bin, vegeta, filepath.Join(dir, "work")
	if err := os.MkdirAll(cfg.WorkDir, 0o750); err != nil {
		t.Fatal(err)
	}
	var log, out bytes.Buffer
	cfg.Log = &log
	if err := Run(ctx, cfg, &out); err != nil {
		t.Fatalf("run: %v\nprogress:\n%s", err, log.String())
	}
	table := out.String()
	t.Logf("\n%s", table)
	for _, figure := range []string{
		"page of 20, head, Redis model",
		"head, Redis model, query-only process",
		"page of 20, below the 1,000th, Redis model",
		"page of 20, head, in-memory model",
		"page of 20, below the 1,000th, in-memory model",
		"one activity per POST, 8 clients, 20 targets",
		"one activity per POST, 8 clients, one target",
		"arrays of 500 into one target",
		"arrays of 500 over 20 targets",
		"projection catch-up into Redis",
		"projection lag",
		"service RSS, Redis read model",
		"service RSS, in-memory read model",
		"Redis memory of the activities",
		"EVENTSTORE_SYNC=always",
	} {
		line := lineWith(table, figure)
		if line == "" {
			t.Errorf("no row %q in the table", figure)
			continue
		}
		if strings.Contains(line, "failed") {
			t.Errorf("row %q has failures: %s", figure, line)
		}
	}
	// The raw parts are measured beside the service, not left out.
	for _, figure := range []string{"head, Redis model", "one activity per POST, 8 clients, 20 targets", "EVENTSTORE_SYNC=always"} {
		cells := strings.Split(lineWith(table, figure), "|")
		if len(cells) < 6 || !strings.Contains(cells[4], "/s") {
			t.Errorf("row %q has no raw figure: %q", figure, cells)
		}
	}
}

func lineWith(table, s string) string {
	for line := range strings.SplitSeq(table, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
