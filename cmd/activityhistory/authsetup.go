package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/council/activityhistory/auth"
)

// devGroup is the group of development mode's generated token.
const devGroup = "activity-history-dev"

// devTokens mints development mode's tokens.
type devTokens struct {
	secret []byte
	// pageGroups are the groups of the timeline page's token: it reads and audits.
	pageGroups []string
}

// pageToken is a token for the timeline page, valid one hour.
func (d *devTokens) pageToken() (string, time.Time, error) {
	const ttl = time.Hour
	now := time.Now()
	tok, err := auth.Mint(d.secret, auth.MintClaims{
		Subject: "developer", Name: "Developer", Email: "developer@example.org", Groups: d.pageGroups, TTL: ttl,
	}, now)
	return tok, now.Add(ttl), err
}

// newAuthenticator builds the authenticator from the configuration. With
// nothing configured it refuses to start, unless development mode is asked
// for: then it generates a secret under the data dir and prints a token,
// and returns what mints more (nil otherwise).
func newAuthenticator(cfg config, log *slog.Logger, stdout io.Writer) (*auth.Authenticator, *devTokens, error) {
	if cfg.AuthDisabled {
		log.Warn("AUTHENTICATION IS DISABLED (AUTH_DISABLED=true): anyone who can reach this service can read and write history")
		a, err := auth.New(auth.Config{Disabled: true})
		return a, nil, err
	}
	ac := auth.Config{
		ReadGroups:      cfg.AuthReadGroups,
		WriteGroups:     cfg.AuthWriteGroups,
		AuditGroups:     cfg.AuthAuditGroups,
		ExportGroups:    cfg.AuthExportGroups,
		Skew:            cfg.AuthClockSkew,
		JWKSURLs:        cfg.AuthJWKSURLs,
		Issuer:          cfg.AuthIssuer,
		Audience:        cfg.AuthAudience,
		GroupsClaim:     cfg.AuthGroupsClaim,
		NameClaim:       cfg.AuthNameClaim,
		EmailClaim:      cfg.AuthEmailClaim,
		AllowMissingExp: !cfg.AuthRequireExp,
		MaxTokenAge:     cfg.AuthMaxTokenAge,
	}
	if cfg.AuthJWTSecret != "" {
		ac.HMACSecret = []byte(cfg.AuthJWTSecret)
	}
	if cfg.AuthPublicKeys != "" {
		pem, err := os.ReadFile(cfg.AuthPublicKeys)
		if err != nil {
			return nil, nil, fmt.Errorf("AUTH_JWT_PUBLIC_KEYS: %w", err)
		}
		ac.PublicKeysPEM = pem
	}
	dev := ac.HMACSecret == nil && ac.PublicKeysPEM == nil && len(ac.JWKSURLs) == 0
	if dev && !cfg.AuthDev {
		return nil, nil, errors.New("no authentication configured: set AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEYS and/or AUTH_JWKS_URL with AUTH_READ_GROUPS/AUTH_WRITE_GROUPS, " +
			"or --dev-auth (AUTH_DEV=true) for a development token, or AUTH_DISABLED=true to run without authentication")
	}
	if dev {
		secret, err := persistedSecret(filepath.Join(cfg.DataDir, "dev-jwt.key"))
		if err != nil {
			return nil, nil, err
		}
		ac.HMACSecret = secret
		for _, g := range []*[]string{&ac.ReadGroups, &ac.WriteGroups, &ac.AuditGroups} {
			if len(*g) == 0 {
				*g = []string{devGroup}
			}
		}
	}
	var missing []string
	if cfg.has("query") && len(ac.ReadGroups) == 0 {
		missing = append(missing, "AUTH_READ_GROUPS (nobody could read history)")
	}
	if cfg.has("command") && len(ac.WriteGroups) == 0 {
		missing = append(missing, "AUTH_WRITE_GROUPS (nobody could record activities)")
	}
	if len(missing) > 0 {
		return nil, nil, fmt.Errorf("auth: set %s", strings.Join(missing, " and "))
	}
	a, err := auth.New(ac)
	if err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	if kids := a.KeyIDs(); len(kids) > 0 {
		log.Info("auth: public keys loaded", "kids", kids)
	}
	if len(ac.JWKSURLs) > 0 {
		log.Info("auth: signing keys from JWKS", "urls", ac.JWKSURLs, "groupsClaim", cfg.AuthGroupsClaim)
		if err := a.Ready(context.Background()); err != nil {
			// Tokens are 401 and /readyz says why until a fetch succeeds.
			log.Warn("auth: JWKS not available yet", "err", err)
		}
	}
	if !cfg.AuthRequireExp {
		log.Warn("auth: tokens without exp are accepted (AUTH_REQUIRE_EXP=false): a leaked token stays valid until its signing key changes" +
			ageNote(cfg.AuthMaxTokenAge))
	}
	if dev {
		log.Warn("auth: development mode, with a secret generated in the data dir; do not use in production",
			"secretFile", filepath.Join(cfg.DataDir, "dev-jwt.key"))
		tok, err := auth.Mint(ac.HMACSecret, auth.MintClaims{
			Subject: "developer", Name: "Developer", Email: "developer@example.org",
			Groups: []string{devGroup}, TTL: 12 * time.Hour,
		}, time.Now())
		if err != nil {
			return nil, nil, err
		}
		printDevBanner(stdout, cfg.HTTPAddr, tok)
	}
	if !dev {
		return a, nil, nil
	}
	groups := append(slices.Clone(ac.ReadGroups), ac.AuditGroups...)
	return a, &devTokens{secret: ac.HMACSecret, pageGroups: slices.Compact(slices.Sorted(slices.Values(groups)))}, nil
}

func ageNote(maxAge time.Duration) string {
	if maxAge == 0 {
		return "; set AUTH_MAX_TOKEN_AGE to bound it"
	}
	return " or is older than AUTH_MAX_TOKEN_AGE=" + maxAge.String()
}

// printDevBanner goes to stdout, not the log: tokens never go into logs.
func printDevBanner(w io.Writer, addr, tok string) {
	base := "http://" + addr
	fmt.Fprintf(w, `
Activity History is starting in development auth mode.
A read/write token for group %q, valid 12 hours:

  export TOKEN=%s

Try it:

  curl -s -X POST %s/api/v1/activityHistory -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"targetId":"0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d","type":"create","targetType":"person","newData":{"surname":"Kimakhe"}}'
  curl -s -H "Authorization: Bearer $TOKEN" '%s/api/v1/activityHistory?targetId=0a4a1e2c-4cf3-4b5e-9d89-6f2a1c3e5b7d'

API docs: %s/swagger/

`, devGroup, tok, base, base, base)
}
