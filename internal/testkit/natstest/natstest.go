// Package natstest runs real, in-process nats-servers for tests, reached
// over TCP the way an external server is, and a plain JetStream client that
// goes behind the store's back, the way someone with server access could
// tamper with it.
package natstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StartServer runs a JetStream server on a free loopback port with its
// files in a temp dir. It stops when the test ends.
func StartServer(t testing.TB) *server.Server {
	t.Helper()
	return Server(t, t.TempDir(), 0)
}

// Server runs a JetStream server with its files in dir: on a free port, or
// on port to restart one there. It stops when the test ends.
func Server(t testing.TB, dir string, port int) *server.Server {
	t.Helper()
	if port == 0 {
		port = server.RANDOM_PORT
	}
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return ns
}

// Tamperer writes to and reads a JetStream stream directly.
type Tamperer struct {
	JS     jetstream.JetStream
	Stream jetstream.Stream
}

// NewTamperer connects to url and opens the JetStream stream named stream
// (natsjs's default is "ACTIVITY").
func NewTamperer(t testing.TB, url, stream string) *Tamperer {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	return &Tamperer{JS: js, Stream: st}
}

// Publish writes m straight to the JetStream stream, past the dedupe
// window when m repeats a recorded event id.
func (x *Tamperer) Publish(t testing.TB, m *nats.Msg) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		ack, err := x.JS.PublishMsg(ctx, m)
		if err != nil {
			t.Fatalf("publish to %s: %v", m.Subject, err)
		}
		if !ack.Duplicate {
			return ack.Sequence
		}
		select {
		case <-ctx.Done():
			t.Fatal("publish: still a duplicate")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Message returns the stored message at seq with the event headers it
// carries (not those of the batch it came in, nor those a get adds).
func (x *Tamperer) Message(t testing.TB, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := x.Stream.GetMsg(ctx, seq)
	if err != nil {
		t.Fatalf("get message %d: %v", seq, err)
	}
	for h := range m.Header {
		if strings.HasPrefix(h, "Nats-") && h != jetstream.MsgIDHeader {
			m.Header.Del(h)
		}
	}
	return m
}

// Forged is a made-up record that looks right: the next revision of a
// stream (on subject), linked to the real head prevHash, with a hash the
// forger could not compute for its data.
func Forged(subject string, revision uint64, prevHash string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("forged-%d", revision))
	m.Header.Set("Ah-Revision", strconv.FormatUint(revision, 10))
	m.Header.Set("Ah-Type", "TestEvent")
	m.Header.Set("Ah-Prev-Hash", prevHash)
	sum := sha256.Sum256([]byte("forged"))
	m.Header.Set("Ah-Hash", hex.EncodeToString(sum[:]))
	m.Data = []byte(`{"forged":true}`)
	return m
}

// FilesHold reports whether any file under dir (a store's data dir)
// holds b: where an erased payload could linger.
func FilesHold(t testing.TB, dir string, b []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || found {
			return err
		}
		data, err := os.ReadFile(path)
		found = bytes.Contains(data, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}
