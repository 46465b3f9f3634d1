package esdb

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/council/activityhistory/eventstore"
)

func TestConnectionString(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url      string
		ok       bool
		address  string
		insecure bool
	}{
		{"esdb://localhost:2113?tls=false", true, "localhost:2113", true},
		{"kurrentdb://localhost:2113?tls=false", true, "localhost:2113", true},
		{"ESDB://localhost:2113?tls=false", true, "localhost:2113", true},
		{"kurrent://db.example:2113", true, "db.example:2113", false},
		{"kdb://db.example:2113", true, "db.example:2113", false},
		{"  esdb://admin:changeit@localhost:2113?tls=false  ", true, "localhost:2113", true},
		{"esdb+discover://cluster.example:2113", true, "", false},
		{"kurrentdb+discover://cluster.example:2113", true, "", false},
		{"", false, "", false},
		{"localhost:2113", false, "", false},
		{"http://localhost:2113", false, "", false},
		{"tcp://localhost:1113", false, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			t.Parallel()
			conf, err := parseConfig(tt.url)
			if !tt.ok {
				if !errors.Is(err, eventstore.ErrInvalid) {
					t.Fatalf("got %+v, %v; want ErrInvalid", conf, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.address != "" && conf.Address != tt.address {
				t.Errorf("address %q, want %q", conf.Address, tt.address)
			}
			if conf.DisableTLS != tt.insecure {
				t.Errorf("DisableTLS %v, want %v", conf.DisableTLS, tt.insecure)
			}
		})
	}
}

func TestOpenRefusesBadURLWithoutDialling(t *testing.T) {
	t.Parallel()
	for _, url := range []string{"", "http://localhost:2113", "esdb://admin:s3cret@local host:2113"} {
		_, err := Open(context.Background(), Config{URL: url})
		if !errors.Is(err, eventstore.ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", url, err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Open(%q): error shows the password: %v", url, err)
		}
	}
}

func TestRedact(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"esdb://admin:changeit@localhost:2113?tls=false": "esdb://admin:xxxxx@localhost:2113?tls=false",
		"esdb://localhost:2113?tls=false":                "esdb://localhost:2113?tls=false",
		"esdb://admin@localhost:2113":                    "esdb://admin@localhost:2113",
		"esdb://localhost:2113?x=a@b":                    "esdb://localhost:2113?x=a@b",
		"esdb://u:p@a:2113,b:2113,c:2113":                "esdb://u:xxxxx@a:2113,b:2113,c:2113",
	}
	for in, want := range tests {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOpenNothingListening(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, Config{URL: "esdb://admin:s3cret@" + addr + "?tls=false"})
	if err == nil {
		_ = s.Close()
		t.Fatal("Open succeeded with nothing listening")
	}
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
}
