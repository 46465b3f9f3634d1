package redistest

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestClientDeletesItsKeysAtCleanup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var prefix string
	t.Run("user", func(t *testing.T) {
		c, p := Client(t)
		prefix = p
		if !strings.HasPrefix(p, "test:") || !strings.HasSuffix(p, ":") {
			t.Fatalf("prefix %q", p)
		}
		for _, k := range []string{p + "{a}:idx", p + "{a}:doc", p + "id:1", p + "checkpoint"} {
			if err := c.Set(ctx, k, "x", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	c, other := Client(t)
	if other == prefix {
		t.Fatalf("two tests share prefix %q", prefix)
	}
	keys, err := c.Keys(ctx, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("left after cleanup: %v", keys)
	}
}

// fatalTB records Fatalf and ends the goroutine, as testing.T does.
type fatalTB struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.msg = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestClientSaysHowToStartRedis(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		clientAt(tb, "redis://"+addr)
		t.Error("clientAt returned without failing")
	}()
	<-done
	if !strings.Contains(tb.msg, "redis-server --daemonize yes") {
		t.Fatalf("failure message %q does not say how to start redis", tb.msg)
	}
}
