package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

// verifyRun runs the verify sub-command on dir and returns its error and
// stdout.
func verifyRun(t *testing.T, dir string, args ...string) (error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{"verify", "--data-dir", dir}, args...), func(string) string { return "" }, &stdout, &stderr)
	t.Logf("verify %v: %v\nstdout:\n%sstderr:\n%s", args, err, stdout.String(), stderr.String())
	return err, stdout.String()
}

// tamper publishes straight to the embedded store's JetStream, the way
// someone with access to the data dir could: a server of its own on the
// files, no store in between.
func tamper(t *testing.T, dir string, msgs ...*nats.Msg) {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "activityhistory",
		JetStream:  true,
		StoreDir:   filepath.Join(dir, "eventstore", "jetstream"),
		DontListen: true,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	defer func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	}()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("server not ready")
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, m := range msgs {
		// A request: the stream acknowledges what it stored.
		resp, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil || bytes.Contains(resp.Data, []byte(`"error"`)) {
			t.Fatalf("publish to %s: %v %s", m.Subject, err, resp.Data)
		}
	}
}

// eventSubject is the JetStream subject of stream's events.
func eventSubject(stream string) string {
	return "ah.ev." + base64.RawURLEncoding.EncodeToString([]byte(stream))
}

func TestVerifyAll(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := natsjs.Open(ctx, natsjs.Config{DataDir: filepath.Join(dir, "eventstore")})
	if err != nil {
		t.Fatal(err)
	}
	var heads []eventstore.Record
	for _, target := range []string{"person-1", "tenure-2", "asset-3"} {
		for i := range 3 {
			ev := eventstore.Event{ID: target + "-" + string(rune('a'+i)), Type: "ActivityRecorded", Data: []byte(`{"n":1}`)}
			res, err := s.Append(ctx, target, eventstore.Any, ev)
			if err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				heads = append(heads, res.Records[0])
			}
		}
	}
	s.Close()

	err, out := verifyRun(t, dir, "--all")
	if err != nil || !strings.Contains(out, "OK all 3 streams") {
		t.Fatalf("untouched store: %v, %q; want OK all 3 streams", err, out)
	}
	err, out = verifyRun(t, dir, "--target", "tenure-2")
	if err != nil || !strings.HasPrefix(out, "OK tenure-2: 3 records") {
		t.Fatalf("untouched target: %v, %q", err, out)
	}
	// A target with no stream is not a failed verification: exit 2.
	err, _ = verifyRun(t, dir, "--target", "nobody-0")
	if !errors.Is(err, errNoStream) || exitCode(err) != 2 || !strings.Contains(err.Error(), "no such stream") {
		t.Fatalf("unknown target: %v (exit %d), want no such stream, exit 2", err, exitCode(err))
	}

	// A record appended behind the store's back, with made-up headers.
	forged := natstest.Forged(eventSubject("tenure-2"), 3, heads[1].Hash)
	// A recorded head whose stream has no records.
	ghost := nats.NewMsg("$KV.ACTIVITY_HEADS." + base64.RawURLEncoding.EncodeToString([]byte("ghost-9")))
	ghost.Data = []byte(`{"stream":"ghost-9","revision":4,"hash":"` + strings.Repeat("cd", 32) + `","position":99}`)
	tamper(t, dir, forged, ghost)

	err, out = verifyRun(t, dir, "--all")
	if err == nil || !strings.Contains(out, "FAIL tenure-2:") || !strings.Contains(out, "FAIL ghost-9:") {
		t.Fatalf("tampered store: %v, %q; want FAIL for tenure-2 and ghost-9", err, out)
	}
	if strings.Contains(out, "FAIL person-1") || strings.Contains(out, "FAIL asset-3") {
		t.Fatalf("untouched streams failed: %q", out)
	}
	if err, out = verifyRun(t, dir, "--target", "tenure-2"); err == nil || !strings.HasPrefix(out, "FAIL tenure-2:") {
		t.Fatalf("tampered target: %v, %q", err, out)
	}
	if err, out = verifyRun(t, dir, "--target", "ghost-9"); err == nil || !strings.HasPrefix(out, "FAIL ghost-9:") {
		t.Fatalf("target with a head and no records: %v, %q", err, out)
	}
	if err, _ = verifyRun(t, dir, "--target", "person-1"); err != nil {
		t.Fatalf("untouched target of a tampered store: %v", err)
	}
}
