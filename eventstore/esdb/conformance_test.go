package esdb

import (
	"crypto/rand"
	"log/slog"
	"os"
	"testing"

	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/eventstore/storetest"
)

const skipNoServer = "set ESDB_URL=esdb://localhost:2113?tls=false to run the conformance suite against EventStoreDB/KurrentDB"

// openTestStore opens a store on the server at ESDB_URL under a prefix of
// its own, so that parallel cases and earlier runs do not see each other.
func openTestStore(t *testing.T, url string) *Store {
	t.Helper()
	s, err := Open(t.Context(), Config{
		URL:          url,
		StreamPrefix: "ahtest-" + rand.Text()[:10] + "-",
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("open %s: %v", redact(url), err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	url := os.Getenv("ESDB_URL")
	if url == "" {
		t.Skip(skipNoServer)
	}
	storetest.Run(t, func(t *testing.T) eventstore.Store { return openTestStore(t, url) })
}
