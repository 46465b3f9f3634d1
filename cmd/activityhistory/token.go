package main

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/council/activityhistory/auth"
)

// token mints an HS256 token for development and tests. With no secret
// given it signs with the dev secret serve --dev-auth keeps in the data
// dir; with no groups it grants what the service is configured to allow
// (the dev group when nothing is), so the token is not 403 everywhere.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, e := newFlags("token", getenv, stderr)
	var secret, dataDir, email, name, subject string
	var groups, readGroups, writeGroups, auditGroups []string
	var ttl time.Duration
	e.str(&secret, "secret", "AUTH_JWT_SECRET", "", "HS256 secret to sign with (32+ bytes); empty = DATA_DIR/dev-jwt.key, the secret of serve --dev-auth")
	e.str(&dataDir, "data-dir", "DATA_DIR", "./data", "data directory holding dev-jwt.key")
	fs.Func("groups", "groups claim, comma-separated; default: the groups of AUTH_READ_GROUPS, AUTH_WRITE_GROUPS and AUTH_AUDIT_GROUPS, or "+devGroup+" when none is set", func(v string) error {
		groups = splitList(v)
		return nil
	})
	readGroups = splitList(getenv("AUTH_READ_GROUPS"))
	writeGroups = splitList(getenv("AUTH_WRITE_GROUPS"))
	auditGroups = splitList(getenv("AUTH_AUDIT_GROUPS"))
	fs.StringVar(&email, "email", "developer@example.org", "email claim")
	fs.StringVar(&name, "name", "Developer", "name claim")
	fs.StringVar(&subject, "sub", "", "subject claim; empty = --email, else --name")
	fs.DurationVar(&ttl, "ttl", time.Hour, "how long the token is valid")
	if err := e.parse(args); err != nil {
		return err
	}
	if secret == "" {
		path := filepath.Join(dataDir, "dev-jwt.key")
		b, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "token: give --secret (or AUTH_JWT_SECRET), or run serve --dev-auth once to create %s\n", path)
			return errUsage
		}
		if err != nil {
			return fmt.Errorf("dev secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if len(groups) == 0 {
		for _, g := range slices.Concat(readGroups, writeGroups, auditGroups) {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
		if len(groups) == 0 {
			groups = []string{devGroup}
		}
	}
	if subject == "" {
		subject = cmp.Or(email, name)
	}
	t, err := auth.Mint([]byte(secret), auth.MintClaims{Subject: subject, Name: name, Email: email, Groups: groups, TTL: ttl}, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, t)
	return nil
}
