// Package redistest connects tests to the real Redis the read model runs
// on, one key prefix per test so tests can run in parallel.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	defaultURL = "redis://127.0.0.1:6379"
	howToStart = "start one with: redis-server --daemonize yes --port 6379 --save '' (apt-get install -y redis-server)"
)

// Client connects to REDIS_URL (default redis://127.0.0.1:6379) and returns
// a key prefix of the form "test:<random>:" that no other test uses. At
// cleanup every key under the prefix is deleted and the client closed. The
// test fails, saying how to start Redis, when it cannot be reached.
func Client(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	url := os.Getenv("REDIS_URL")
	if url == "" {
		url = defaultURL
	}
	return clientAt(tb, url)
}

func clientAt(tb testing.TB, url string) (*redis.Client, string) {
	tb.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		tb.Fatalf("REDIS_URL %q: %v", url, err)
	}
	c := redis.NewClient(opt)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		tb.Fatalf("redis at %s is not reachable (%v); %s", url, err, howToStart)
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "test:" + hex.EncodeToString(b[:]) + ":"
	tb.Cleanup(func() {
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, c, prefix); err != nil {
			tb.Errorf("delete test keys %s*: %v", prefix, err)
		}
	})
	return c, prefix
}

// deletePrefix removes every key starting with prefix (hash-tagged keys
// such as "<prefix>{target}:idx" included). The prefix holds only hex and
// colons, so it needs no glob escaping.
func deletePrefix(ctx context.Context, c *redis.Client, prefix string) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// Cluster starts a Redis Cluster of three masters on loopback (redis-server
// --cluster-enabled yes on free ports, joined by redis-cli --cluster
// create) for the test, stopped at cleanup. It returns a client and a URL
// for REDIS_URL with REDIS_CLUSTER=true. The test is skipped only where
// redis-server or redis-cli is not installed.
func Cluster(tb testing.TB) (*redis.ClusterClient, string) {
	tb.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s is not installed (apt-get install -y redis-server): %v", bin, err)
		}
	}
	dir := tb.TempDir()
	var addrs []string
	for i := range 3 {
		addrs = append(addrs, startNode(tb, filepath.Join(dir, strconv.Itoa(i))))
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	tb.Cleanup(func() { _ = c.Close() })
	// The cluster is usable once every node agrees that all slots are served.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		for _, a := range addrs {
			node := redis.NewClient(&redis.Options{Addr: a})
			info, err := node.ClusterInfo(context.Background()).Result()
			_ = node.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok = false
			}
		}
		if ok && c.Ping(context.Background()).Err() == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal("redis cluster not ready after 20s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	url := "redis://" + addrs[0] + "?addr=" + addrs[1] + "&addr=" + addrs[2]
	return c, url
}

// startNode starts one cluster node in dir and returns its address. A
// node needs its port and port+10000 (the cluster bus) free; another
// process may take either meanwhile, so it tries a few ports.
func startNode(tb testing.TB, dir string) string {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		tb.Fatal(err)
	}
	logFile := filepath.Join(dir, "redis.log")
	var lastErr error
	for range 5 {
		port := freePort(tb)
		if port > 55535 || !portFree(port+10000) {
			continue
		}
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-node-timeout", "2000", "--dir", dir, "--save", "", "--appendonly", "no",
			"--logfile", logFile)
		if err := cmd.Start(); err != nil {
			tb.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		tb.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
		})
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if lastErr = waitPing(addr, exited); lastErr == nil {
			return addr
		}
		_ = os.Remove(filepath.Join(dir, "nodes.conf"))
	}
	out, _ := os.ReadFile(logFile)
	tb.Fatalf("redis-server did not start: %v\n%s", lastErr, out)
	return ""
}

func portFree(port int) bool {
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return false
	}
	_ = ln.Close()
	return true
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitPing waits until the node at addr answers, or its process exits.
func waitPing(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for c.Ping(context.Background()).Err() != nil {
		select {
		case <-exited:
			return fmt.Errorf("redis-server at %s exited", addr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server at %s not answering after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
