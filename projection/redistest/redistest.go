// Package redistest connects tests to the real Redis the read model runs
// on, one key prefix per test so tests can run in parallel.
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
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
