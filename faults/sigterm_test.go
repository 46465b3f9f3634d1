package faults

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// SIGTERM while writers POST: the request in flight when it arrives — here
// one whose body is still being sent — completes with 201, the process
// exits 0, and after a restart nothing acknowledged is missing.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	at := storeAt{dataDir: t.TempDir()}
	s := newService(t, at.env())
	l := newLedger(pick(20, 200))
	stop := l.run(t, s.url, pick(4, 16), "", 0, nil)
	terms := pick(1, 3)
	phases(t, terms, pick(1500*time.Millisecond, 12*time.Second), func(int) {
		target := l.targets[0]
		id := uuid.NewString()
		body, _ := json.Marshal(map[string]any{"id": id, "targetId": target, "type": "create", "targetType": "person"})
		conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		half := len(body) / 2
		fmt.Fprintf(conn, "POST /api/v1/activityHistory HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:half])
		// Let the server start on the request before the signal.
		time.Sleep(200 * time.Millisecond)
		s.proc.signal(syscall.SIGTERM)
		time.Sleep(300 * time.Millisecond)
		if _, err := conn.Write(body[half:]); err != nil {
			t.Fatalf("the in-flight request was cut at SIGTERM: %v", err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("the in-flight request got no answer after SIGTERM: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("in-flight POST after SIGTERM: %d", resp.StatusCode)
		}
		l.mu.Lock()
		l.acked[id] = target
		l.mu.Unlock()
		select {
		case <-s.proc.done:
		case <-time.After(30 * time.Second):
			t.Fatal("still running 30s after SIGTERM")
		}
		if s.proc.err != nil {
			t.Fatalf("exit after SIGTERM: %v", s.proc.err)
		}
		s.start()
	})
	stop()
	if t.Failed() {
		return
	}
	l.finish(t, s.url, at, func() { s.proc.term(30 * time.Second) })
	logFigure(t, "SIGTERM under load, then restart", terms, l)
}
