package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/council/activityhistory/guard"
	"github.com/council/activityhistory/projection"
)

// config is everything serve needs, from flags or the environment.
type config struct {
	Roles             []string
	HTTPAddr          string
	DataDir           string
	EventStoreURL     string
	EventStoreRepl    int
	EventStoreSync    string
	RedisURL          string
	RedisPrefix       string
	RedisCluster      bool
	TargetIDFormat    string
	ExtraTargetTypes  []string
	CursorSecret      string
	LogLevel          string
	LogFormat         string
	ShutdownTimeout   time.Duration
	DepTimeout        time.Duration
	SlowQueryMS       int
	ReadWaitMax       time.Duration
	ProjectorLeaseTTL time.Duration
	PprofAddr         string
	PageCacheMB       int
	SweepInterval     time.Duration
	SweepBatch        int

	AuthDisabled      bool
	AuthDev           bool
	AuthJWTSecret     string
	AuthPublicKeys    string
	AuthReadGroups    []string
	AuthWriteGroups   []string
	AuthAuditGroups   []string
	AuthExportGroups  []string
	AuthClockSkew     time.Duration
	AuthRequireExp    bool
	AuthMaxTokenAge   time.Duration
	AuthJWKSURLs      []string
	AuthIssuer        string
	AuthAudience      []string
	AuthGroupsClaim   string
	AuthNameClaim     string
	AuthEmailClaim    string
	CORSAllowedOrigin []string
	CORSAllowedHeader []string

	ingestConfig
}

// summaries are the one-line summaries of the sub-commands, as in usage.
var summaries = map[string]string{
	"serve":  "run the service (roles: command, query, projector)",
	"token":  "mint a development JWT",
	"verify": "verify the hash chain of one stream or all of them",
	"load":   "drive a running service with writers and readers; report throughput and latency",
}

// newFlags returns the flag set of sub-command name: its -h starts with
// the command's one-line summary.
func newFlags(name string, getenv func(string) string, stderr io.Writer) (*flag.FlagSet, *envFlags) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "activityhistory %s: %s\n\nUsage: activityhistory %s [flags]\n\nFlags:\n", name, summaries[name], name)
		fs.PrintDefaults()
	}
	return fs, &envFlags{fs: fs, getenv: getenv}
}

// errHelp is -h or --help: the usage was printed, and that is success.
var errHelp = errors.New("help requested")

// envFlags binds flags to environment variables: a flag's default is its
// variable's value when set, so the command line wins over the environment.
type envFlags struct {
	fs     *flag.FlagSet
	getenv func(string) string
	errs   []error
}

func (e *envFlags) env(name, def string) string {
	if v, ok := lookup(e.getenv, name); ok {
		return v
	}
	return def
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := strings.TrimSpace(getenv(name))
	return v, v != ""
}

func (e *envFlags) str(p *string, flagName, envName, def, help string) {
	e.fs.StringVar(p, flagName, e.env(envName, def), help+" (env "+envName+")")
}

func (e *envFlags) list(p *[]string, flagName, envName, def, help string) {
	*p = splitList(e.env(envName, def))
	help += ", comma-separated (env " + envName + ")"
	if def != "" {
		help += fmt.Sprintf(` (default %q)`, def)
	}
	e.fs.Func(flagName, help, func(s string) error {
		*p = splitList(s)
		return nil
	})
}

// envValue is the value of envName parsed by parse, or def when unset; a
// bad value is recorded with want in its message.
func envValue[T any](e *envFlags, envName string, def T, parse func(string) (T, error), want string) T {
	s, ok := lookup(e.getenv, envName)
	if !ok {
		return def
	}
	v, err := parse(s)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s=%q: want %s", envName, s, want))
	}
	return v
}

func (e *envFlags) boolean(p *bool, flagName, envName string, def bool, help string) {
	v := envValue(e, envName, def, strconv.ParseBool, "true or false")
	e.fs.BoolVar(p, flagName, v, help+" (env "+envName+")")
}

func (e *envFlags) integer(p *int, flagName, envName string, def int, help string) {
	v := envValue(e, envName, def, strconv.Atoi, "an integer")
	e.fs.IntVar(p, flagName, v, help+" (env "+envName+")")
}

func (e *envFlags) duration(p *time.Duration, flagName, envName string, def time.Duration, help string) {
	v := envValue(e, envName, def, time.ParseDuration, "a duration such as 30s")
	e.fs.DurationVar(p, flagName, v, help+" (env "+envName+")")
}

// parse parses args, then reports bad environment values; -h gives
// errHelp, bad flags errUsage.
func (e *envFlags) parse(args []string) error {
	if err := e.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if e.fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, e.fs.Args())
	}
	return errors.Join(e.errs...)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func parseServeConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	_, e := newFlags("serve", getenv, stderr)
	e.list(&c.Roles, "roles", "ROLES", "command,query,projector", "roles to run: command, query, projector")
	e.str(&c.HTTPAddr, "http-addr", "HTTP_ADDR", "127.0.0.1:8080", "address to serve HTTP on")
	e.str(&c.DataDir, "data-dir", "DATA_DIR", "./data", "directory for the embedded event store and generated dev secrets")
	e.str(&c.EventStoreURL, "eventstore-url", "EVENTSTORE_URL", "", "event store: empty = embedded JetStream; nats://host:4222[,nats://…] = JetStream server or cluster; esdb:// or kurrentdb:// = EventStoreDB/KurrentDB")
	e.integer(&c.EventStoreRepl, "eventstore-replicas", "EVENTSTORE_REPLICAS", 1, "JetStream stream replicas (3 recommended on a cluster)")
	e.str(&c.EventStoreSync, "eventstore-sync", "EVENTSTORE_SYNC", "default", "embedded JetStream fsync: default (batched, every 2 min) or always (before every ack)")
	e.str(&c.RedisURL, "redis-url", "REDIS_URL", "", "Redis read model (redis://host:6379/0); empty = in-memory read model rebuilt at start")
	e.str(&c.RedisPrefix, "redis-prefix", "REDIS_PREFIX", "ah:", "prefix of every Redis key")
	e.boolean(&c.RedisCluster, "redis-cluster", "REDIS_CLUSTER", false, "REDIS_URL names a Redis Cluster: redis://host1:6379?addr=host2:6379&addr=host3:6379")
	e.str(&c.TargetIDFormat, "target-id-format", "TARGET_ID_FORMAT", "uuid", "targetId format: uuid or opaque (1-128 of A-Za-z0-9._~+/=-)")
	e.list(&c.ExtraTargetTypes, "extra-target-types", "ACTIVITY_EXTRA_TARGET_TYPES", "", "target types accepted besides the built-in ones")
	e.str(&c.CursorSecret, "cursor-secret", "CURSOR_SECRET", "", "secret (32+ bytes) signing pagination tokens; same on every query replica; empty = generated once under the data dir")
	e.str(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "debug, info, warn or error")
	e.str(&c.LogFormat, "log-format", "LOG_FORMAT", "json", "json or text")
	e.integer(&c.SlowQueryMS, "slow-query-ms", "SLOW_QUERY_MS", 200, "reads slower than this many milliseconds are logged at warn")
	e.duration(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 15*time.Second, "how long to drain requests on SIGTERM")
	e.integer(&c.PageCacheMB, "page-cache-mb", "PAGE_CACHE_MB", 64, "MB of first pages kept in process with the in-memory read model (its projector invalidates them exactly); 0 = off")
	e.str(&c.PprofAddr, "pprof-addr", "PPROF_ADDR", "", "serve Go's profiling endpoints (/debug/pprof/) on this address, e.g. 127.0.0.1:6060; empty = off")
	e.duration(&c.DepTimeout, "dependency-timeout", "DEPENDENCY_TIMEOUT", guard.DefaultTimeout, "deadline of each event store and read model call of a request; past it the request answers 503 with Retry-After")
	e.duration(&c.ReadWaitMax, "read-wait-max", "READ_WAIT_MAX", 2*time.Second, "how long a read waits for the read model to apply minPosition (or the store's position as of start) before answering 503")
	e.duration(&c.ProjectorLeaseTTL, "projector-lease-ttl", "PROJECTOR_LEASE_TTL", 10*time.Second, "with Redis, one projector applies at a time; a standby takes over within this time of its death")
	e.duration(&c.SweepInterval, "retention-sweep-interval", "RETENTION_SWEEP_INTERVAL", time.Minute, "how often the projector removes expired activities (timetoLiveForRecord) from the read model; reads skip them from the second they expire; 0 = never")
	e.integer(&c.SweepBatch, "retention-sweep-batch", "RETENTION_SWEEP_BATCH", projection.DefaultSweepBatch, "the most expired activities one sweep removes")
	e.boolean(&c.AuthDisabled, "auth-disabled", "AUTH_DISABLED", false, "turn authentication off (logs a warning at every start)")
	e.boolean(&c.AuthDev, "dev-auth", "AUTH_DEV", false, "development auth when none is configured: generate a secret under the data dir and print a token")
	e.str(&c.AuthJWTSecret, "auth-jwt-secret", "AUTH_JWT_SECRET", "", "HS256 shared secret of user tokens (32+ bytes)")
	e.str(&c.AuthPublicKeys, "auth-jwt-public-keys", "AUTH_JWT_PUBLIC_KEYS", "", "PEM file of RS256/ES256 public keys")
	e.list(&c.AuthReadGroups, "auth-read-groups", "AUTH_READ_GROUPS", "", "groups allowed to read history")
	e.list(&c.AuthWriteGroups, "auth-write-groups", "AUTH_WRITE_GROUPS", "", "groups allowed to record activities")
	e.list(&c.AuthAuditGroups, "auth-audit-groups", "AUTH_AUDIT_GROUPS", "", "groups allowed to replay and verify streams, and to export")
	e.list(&c.AuthExportGroups, "auth-export-groups", "AUTH_EXPORT_GROUPS", "", "groups allowed to export (besides the audit groups)")
	e.duration(&c.AuthClockSkew, "auth-clock-skew", "AUTH_CLOCK_SKEW", 30*time.Second, "allowed clock skew for exp/nbf/iat")
	e.boolean(&c.AuthRequireExp, "auth-require-exp", "AUTH_REQUIRE_EXP", true, "refuse tokens without exp; false accepts the council's user tokens, which have none (warns at start)")
	e.duration(&c.AuthMaxTokenAge, "auth-max-token-age", "AUTH_MAX_TOKEN_AGE", 0, "refuse tokens whose iat is older than this, and tokens without iat; 0 = no limit")
	e.list(&c.AuthJWKSURLs, "auth-jwks-url", "AUTH_JWKS_URL", "", "JWKS URLs of RS256/ES256 signing keys (Cognito: https://cognito-idp.<region>.amazonaws.com/<pool>/.well-known/jwks.json)")
	e.str(&c.AuthIssuer, "auth-issuer", "AUTH_ISSUER", "", "required iss of tokens; empty = not checked")
	e.list(&c.AuthAudience, "auth-audience", "AUTH_AUDIENCE", "", "accepted aud values of tokens; empty = not checked")
	e.str(&c.AuthGroupsClaim, "auth-groups-claim", "AUTH_GROUPS_CLAIM", "groups", "claim holding the caller's groups: an array, or a string split on ; and , (Cognito: custom:groups)")
	e.str(&c.AuthNameClaim, "auth-name-claim", "AUTH_NAME_CLAIM", "name", "claim giving authorDetails.fullName when a POST has none")
	e.str(&c.AuthEmailClaim, "auth-email-claim", "AUTH_EMAIL_CLAIM", "email", "claim giving authorDetails.email when a POST has none")
	e.list(&c.CORSAllowedOrigin, "cors-allowed-origins", "CORS_ALLOWED_ORIGINS", "*", "origins allowed by CORS")
	e.list(&c.CORSAllowedHeader, "cors-allowed-headers", "CORS_ALLOWED_HEADERS", "*", "request headers allowed by CORS besides Authorization, Content-Type, x-correlation-id and traceparent; * = any")
	c.ingestConfig.flags(e, true)
	if err := e.parse(args); err != nil {
		return c, err
	}
	return c, c.check()
}

func (c *config) check() error {
	var errs []error
	if len(c.Roles) == 0 {
		errs = append(errs, errors.New("roles: at least one of command, query, projector is needed"))
	}
	for _, r := range c.Roles {
		if r != "command" && r != "query" && r != "projector" {
			errs = append(errs, fmt.Errorf("roles: unknown role %q (want command, query, projector)", r))
		}
	}
	if c.EventStoreSync != "default" && c.EventStoreSync != "always" {
		errs = append(errs, fmt.Errorf("EVENTSTORE_SYNC=%q: want default or always", c.EventStoreSync))
	}
	if c.EventStoreRepl < 1 || c.EventStoreRepl > 5 {
		errs = append(errs, fmt.Errorf("EVENTSTORE_REPLICAS=%d: want 1 to 5", c.EventStoreRepl))
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want json or text", c.LogFormat))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel))
	}
	if c.AuthDisabled && (c.AuthJWTSecret != "" || c.AuthPublicKeys != "" || len(c.AuthJWKSURLs) > 0) {
		errs = append(errs, errors.New("AUTH_DISABLED=true with AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEYS or AUTH_JWKS_URL set: choose one"))
	}
	if c.AuthMaxTokenAge < 0 {
		errs = append(errs, fmt.Errorf("AUTH_MAX_TOKEN_AGE=%s: must not be negative", c.AuthMaxTokenAge))
	}
	if c.PageCacheMB < 0 {
		errs = append(errs, fmt.Errorf("PAGE_CACHE_MB=%d: want 0 (off) or more", c.PageCacheMB))
	}
	if c.DepTimeout <= 0 || c.DepTimeout >= httpWriteTimeout {
		errs = append(errs, fmt.Errorf("DEPENDENCY_TIMEOUT=%s: want more than 0 and less than the HTTP write timeout (%s)", c.DepTimeout, httpWriteTimeout))
	}
	if c.SlowQueryMS < 1 {
		errs = append(errs, fmt.Errorf("SLOW_QUERY_MS=%d: want a positive number of milliseconds", c.SlowQueryMS))
	}
	if c.ReadWaitMax <= 0 {
		errs = append(errs, fmt.Errorf("READ_WAIT_MAX=%v: want a positive duration", c.ReadWaitMax))
	}
	if c.ProjectorLeaseTTL < time.Second {
		errs = append(errs, fmt.Errorf("PROJECTOR_LEASE_TTL=%v: want at least 1s", c.ProjectorLeaseTTL))
	}
	if c.SweepInterval < 0 {
		errs = append(errs, fmt.Errorf("RETENTION_SWEEP_INTERVAL=%v: want 0 (off) or a positive duration", c.SweepInterval))
	}
	if c.SweepBatch < 1 {
		errs = append(errs, fmt.Errorf("RETENTION_SWEEP_BATCH=%d: want 1 or more", c.SweepBatch))
	}
	if c.CursorSecret != "" && len(c.CursorSecret) < 32 {
		errs = append(errs, errors.New("CURSOR_SECRET: must be at least 32 bytes"))
	}
	errs = append(errs, c.checkIngest()...)
	return errors.Join(errs...)
}

func (c *config) has(role string) bool {
	for _, r := range c.Roles {
		if r == role {
			return true
		}
	}
	return false
}

func newLogger(c config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
