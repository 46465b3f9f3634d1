package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/council/activityhistory/auth"
)

// token mints a development HS256 token.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	e := &envFlags{fs: fs, getenv: getenv}
	var secret, email, name, subject string
	var groups []string
	var ttl time.Duration
	e.str(&secret, "secret", "AUTH_JWT_SECRET", "", "HS256 secret to sign with (32+ bytes)")
	fs.Func("groups", "groups claim, comma-separated", func(s string) error {
		groups = splitList(s)
		return nil
	})
	fs.StringVar(&email, "email", "developer@example.org", "email claim")
	fs.StringVar(&name, "name", "Developer", "name claim")
	fs.StringVar(&subject, "sub", "developer", "subject claim")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	if err := e.parse(args); err != nil {
		return err
	}
	if secret == "" {
		fmt.Fprintln(stderr, "token: --secret (or AUTH_JWT_SECRET) is required")
		return errUsage
	}
	t, err := auth.Mint([]byte(secret), auth.MintClaims{Subject: subject, Name: name, Email: email, Groups: groups, TTL: ttl}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}
