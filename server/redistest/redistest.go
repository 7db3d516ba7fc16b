// Package redistest gives tests a real Redis with a key prefix of their
// own, so tests share one server and still run in parallel.
//
// The server is named by STARLING_TEST_REDIS_URL, by default
// redis://127.0.0.1:6379/0. When it cannot be reached the test is skipped,
// unless STARLING_TEST_REQUIRE_SERVICES=1 (as in CI), where it fails.
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

// DefaultURL is the server tests use when STARLING_TEST_REDIS_URL is unset.
const DefaultURL = "redis://127.0.0.1:6379/0"

// Client returns a client of the test Redis, closed when the test ends,
// and a key (and channel) prefix unique to the test; the keys under it are
// deleted when the test ends.
func Client(t testing.TB) (redis.UniversalClient, string) {
	t.Helper()
	c := Dial(t, URL(t))
	b := make([]byte, 6)
	rand.Read(b)
	prefix := "starling-test-" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
	return c, prefix
}

// URL returns the test Redis's URL once it answers; the test is skipped
// (or fails, in CI) when it does not.
func URL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("STARLING_TEST_REDIS_URL")
	if url == "" {
		url = DefaultURL
	}
	c := Dial(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		msg := "Redis not reachable at " + url + " (" + err.Error() + "); set STARLING_TEST_REDIS_URL or start it"
		if os.Getenv("STARLING_TEST_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return url
}

// Dial returns a client of the Redis at url (the test Redis through a
// testproxy, say), closed when the test ends.
func Dial(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("redistest: Redis URL %q: %v", url, err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}
