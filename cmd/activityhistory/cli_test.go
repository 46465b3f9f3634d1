package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// -h and --help on every sub-command succeed, and start with the
// command's one-line summary.
func TestSubCommandHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "token", "verify", "load"} {
		for _, flag := range []string{"-h", "--help"} {
			var out bytes.Buffer
			err := run(context.Background(), []string{cmd, flag}, func(string) string { return "" }, &out, &out)
			if err != nil {
				t.Errorf("%s %s: %v", cmd, flag, err)
			}
			first, _, _ := strings.Cut(out.String(), "\n")
			if want := "activityhistory " + cmd + ": " + summaries[cmd]; first != want {
				t.Errorf("%s %s: first line %q, want %q", cmd, flag, first, want)
			}
		}
	}
	// A bad flag is still a usage error, exit 2.
	err := run(context.Background(), []string{"verify", "--no-such-flag"}, func(string) string { return "" }, io.Discard, io.Discard)
	if !errors.Is(err, errUsage) || exitCode(err) != 2 {
		t.Errorf("bad flag: %v (exit %d)", err, exitCode(err))
	}
}

// tokenClaims decodes the claims of a token without checking it.
func tokenClaims(t *testing.T, tok string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(tok), ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenDefaults(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secret := strings.Repeat("d", 64)
	if err := os.WriteFile(filepath.Join(dir, "dev-jwt.key"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mintWith := func(env map[string]string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"token"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}
	// No --secret: the dev secret of the data dir; no --groups: the dev group.
	tok, err := mintWith(map[string]string{"DATA_DIR": dir}, "--email", "ada@example.org", "--name", "Ada")
	if err != nil {
		t.Fatal(err)
	}
	c := tokenClaims(t, tok)
	if c["sub"] != "ada@example.org" || c["name"] != "Ada" || !sameGroups(c["groups"], devGroup) {
		t.Errorf("claims %v", c)
	}
	// No --groups with groups configured: those groups; --name alone sets sub.
	tok, err = mintWith(map[string]string{"DATA_DIR": dir, "AUTH_READ_GROUPS": "r1,r2", "AUTH_WRITE_GROUPS": "w", "AUTH_AUDIT_GROUPS": "r1"},
		"--name", "Ada", "--email", "")
	if err != nil {
		t.Fatal(err)
	}
	if c := tokenClaims(t, tok); c["sub"] != "Ada" || !sameGroups(c["groups"], "r1", "r2", "w") {
		t.Errorf("claims %v", c)
	}
	// --sub wins; --groups wins.
	tok, err = mintWith(map[string]string{"DATA_DIR": dir}, "--sub", "u-9", "--groups", "x,y")
	if err != nil {
		t.Fatal(err)
	}
	if c := tokenClaims(t, tok); c["sub"] != "u-9" || !sameGroups(c["groups"], "x", "y") {
		t.Errorf("claims %v", c)
	}
	// No secret anywhere: a usage error saying what to do.
	var stderr bytes.Buffer
	err = run(context.Background(), []string{"token", "--data-dir", t.TempDir()}, func(string) string { return "" }, io.Discard, &stderr)
	if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), "--dev-auth") {
		t.Errorf("no secret: %v, %s", err, stderr.String())
	}
}

func sameGroups(v any, want ...string) bool {
	got, _ := v.([]any)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func TestPlural(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "0 streams", 1: "1 stream", 2: "2 streams"} {
		if got := plural(n, "stream"); got != want {
			t.Errorf("plural(%d) = %q, want %q", n, got, want)
		}
	}
}

// A busy port fails before the dev banner, naming the variable to change.
func TestBusyPortFailsBeforeTheBanner(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	env := map[string]string{"DATA_DIR": t.TempDir(), "HTTP_ADDR": ln.Addr().String(), "AUTH_DEV": "true"}
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "HTTP_ADDR") || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("serve on a busy port: %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("printed before failing: %s", stdout.String())
	}
}
