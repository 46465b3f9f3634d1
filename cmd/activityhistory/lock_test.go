//go:build unix

package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/apitest"
)

// buildBinary builds this command into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "activityhistory")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is the binary running as its own process.
type proc struct {
	cmd    *exec.Cmd
	logs   *syncBuffer
	addr   chan string
	exited chan error
}

func startProc(t *testing.T, bin string, env map[string]string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, logs: &syncBuffer{}, addr: make(chan string, 1), exited: make(chan error, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(p.logs, line)
			var l struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "serving" {
				p.addr <- l.Addr
			}
		}
		p.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// url waits for the process to serve.
func (p *proc) url(t *testing.T) string {
	t.Helper()
	select {
	case a := <-p.addr:
		return "http://" + a
	case err := <-p.exited:
		t.Fatalf("exited before serving: %v\n%s", err, p.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("not serving after 60 s\n%s", p.logs)
	}
	return ""
}

// wait is the process's exit, within d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.exited:
		return err
	case <-time.After(d):
		t.Fatalf("still running after %v\n%s", d, p.logs)
	}
	return nil
}

// Two processes on one DATA_DIR: the second serve, and verify, refuse at
// once naming the dir and the holder's pid; the holder keeps serving, and
// after it is killed (-9: the kernel drops the lock) every acknowledged
// write is there.
func TestSecondProcessOnADataDirRefuses(t *testing.T) {
	t.Parallel()
	chk := apitest.New(t)
	bin := buildBinary(t)
	dir := t.TempDir()
	env := baseEnv(dir)
	env["LOG_FORMAT"] = "json"
	env["LOG_LEVEL"] = "info"
	tok := mint(t, "readers", "writers")
	target := uuid.NewString()

	first := startProc(t, bin, env, "serve")
	base := first.url(t)
	(&service{url: base}).waitReady(t)
	acked := postAll(t, chk, base, tok, target, 5)

	for _, args := range [][]string{{"serve"}, {"verify", "--all"}} {
		p := startProc(t, bin, env, args...)
		began := time.Now()
		err := p.wait(t, 20*time.Second)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() == 0 {
			t.Fatalf("%v on a locked dir: %v, want a non-zero exit\n%s", args, err, p.logs)
		}
		msg := p.logs.String()
		abs, _ := filepath.Abs(filepath.Join(dir, "eventstore"))
		if !strings.Contains(msg, abs) || !strings.Contains(msg, "locked by process "+strconv.Itoa(first.cmd.Process.Pid)) {
			t.Errorf("%v: message does not name %s and pid %d:\n%s", args, abs, first.cmd.Process.Pid, msg)
		}
		if d := time.Since(began); d > 10*time.Second {
			t.Errorf("%v took %v to refuse", args, d)
		}
	}

	// The holder was not disturbed.
	acked = append(acked, postAll(t, chk, base, tok, target, 5)...)
	slices.Sort(acked)
	sameIDs := func(base string) error {
		got := history(t, chk, base, tok, target)
		slices.Sort(got)
		if !slices.Equal(got, acked) {
			return fmt.Errorf("history %v, want %v", got, acked)
		}
		return nil
	}
	checkFor(t, 10*time.Second, func() error { return sameIDs(base) })
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.wait(t, 10*time.Second)

	second := startProc(t, bin, env, "serve")
	base = second.url(t)
	(&service{url: base}).waitReady(t)
	if err := sameIDs(base); err != nil {
		t.Errorf("after kill -9 and restart: %v", err)
	}
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.wait(t, 20*time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, second.logs)
	}
	// A clean stop is quiet: no warning, no error, no "disconnected".
	for _, line := range strings.Split(second.logs.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, "disconnected") {
			t.Errorf("a clean start and stop logged: %s", line)
		}
	}
}
