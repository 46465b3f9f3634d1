// Package httpapi holds the HTTP plumbing shared by the command and query
// engines: the error envelope, correlation ids, request logging, recovery
// and request metrics.
package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/council/activityhistory/guard"
)

// CorrelationHeader is echoed on every response, and generated when absent.
const CorrelationHeader = "x-correlation-id"

const (
	ctxRequest     = "ah.request"
	ctxAnnotations = "ah.annotations"
	ctxExpected    = "ah.expected"
)

// The headers Correlation reads and writes as net/http spells them, so
// that no request pays for canonicalising their names.
var (
	correlationKey = http.CanonicalHeaderKey(CorrelationHeader)
	traceparentKey = http.CanonicalHeaderKey("traceparent")
)

// header is h.Get(key) for a key already canonical.
func header(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// ErrorBody is the one error envelope of the service.
type ErrorBody struct {
	Message       string              `json:"message"`
	StatusCode    int                 `json:"statusCode"`
	CorrelationID string              `json:"correlationId"`
	TraceID       string              `json:"traceId"`
	Errors        map[string][]string `json:"errors,omitempty"`
}

// Error writes the error envelope and aborts the request.
func Error(c *gin.Context, status int, message string, fields map[string][]string) {
	if status >= 500 {
		// Clients see a plain message; the cause is logged by the caller.
		message = http.StatusText(status)
	}
	c.AbortWithStatusJSON(status, ErrorBody{
		Message:       message,
		StatusCode:    status,
		CorrelationID: CorrelationID(c),
		TraceID:       TraceID(c),
		Errors:        fields,
	})
}

// Internal answers an error no handler has mapped: 503 with Retry-After
// when a dependency is down or did not answer in time (the request may be
// retried), else a logged 500. It is where those two are told apart.
func Internal(c *gin.Context, err error) {
	if errors.Is(err, guard.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		Unavailable(c, err)
		return
	}
	Logger(c).Error("internal error", "err", err)
	Error(c, http.StatusInternalServerError, "", nil)
}

// RetryAfter is the Retry-After of a 503, in seconds.
const RetryAfter = "1"

// Unavailable logs err and answers 503 with Retry-After: a dependency is
// down or slow, and the same request may be sent again.
func Unavailable(c *gin.Context, err error) {
	Logger(c).Warn("dependency unavailable", "err", err)
	c.Header("Retry-After", RetryAfter)
	Error(c, http.StatusServiceUnavailable, "", nil)
}

var safeCorrelation = regexp.MustCompile(`^[A-Za-z0-9._:/+=-]{1,128}$`)

// Correlation echoes x-correlation-id (or makes one), picks up or makes a
// trace id, and gives the request a logger carrying both.
func Correlation(base *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		id := header(c.Request.Header, correlationKey)
		if !safeCorrelation.MatchString(id) {
			// Absent or unsafe to echo into headers and logs: replace it.
			id = uuid.NewString()
		}
		trace := traceFromParent(header(c.Request.Header, traceparentKey))
		if trace == "" {
			trace = newTraceID()
		}
		c.Set(ctxRequest, &requestLog{base: base, id: id, trace: trace})
		c.Writer.Header()[correlationKey] = []string{id}
		c.Next()
	}
}

// requestLog is a request's ids and its logger. The logger carrying the
// ids (slog.With) is made only when asked for: the lines every request
// writes add the ids themselves (LogAttrs), which costs less.
type requestLog struct {
	base      *slog.Logger
	id, trace string
	with      atomic.Pointer[slog.Logger]
}

func (r *requestLog) logger() *slog.Logger {
	if l := r.with.Load(); l != nil {
		return l
	}
	l := r.base.With("correlationId", r.id, "traceId", r.trace)
	r.with.Store(l)
	return l
}

func requestOf(c *gin.Context) *requestLog {
	r, _ := c.Value(ctxRequest).(*requestLog)
	return r
}

// traceFromParent takes the trace id of a W3C traceparent header.
func traceFromParent(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[1]) != 32 {
		return ""
	}
	if _, err := hex.DecodeString(parts[1]); err != nil || parts[1] == strings.Repeat("0", 32) {
		return ""
	}
	return strings.ToLower(parts[1])
}

func newTraceID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// CorrelationID is the request's correlation id.
func CorrelationID(c *gin.Context) string {
	if r := requestOf(c); r != nil {
		return r.id
	}
	return ""
}

// TraceID is the request's trace id.
func TraceID(c *gin.Context) string {
	if r := requestOf(c); r != nil {
		return r.trace
	}
	return ""
}

// Logger is the request's logger, carrying its correlation and trace ids.
func Logger(c *gin.Context) *slog.Logger {
	if r := requestOf(c); r != nil {
		return r.logger()
	}
	return slog.Default()
}

// LogAttrs writes the line Logger(c).LogAttrs would, without making a
// logger for the request: for the lines every request writes.
func LogAttrs(c *gin.Context, level slog.Level, msg string, attrs ...slog.Attr) {
	r := requestOf(c)
	if r == nil {
		slog.Default().LogAttrs(c.Request.Context(), level, msg, attrs...)
		return
	}
	ctx := c.Request.Context()
	h := r.base.Handler()
	if !h.Enabled(ctx, level) {
		return
	}
	rec := slog.NewRecord(time.Now(), level, msg, 0)
	rec.AddAttrs(slog.String("correlationId", r.id), slog.String("traceId", r.trace))
	rec.AddAttrs(attrs...)
	_ = h.Handle(ctx, rec) // as slog.Logger: a line that cannot be written is dropped
}

// Annotate adds key and value to the request's access line: why it was
// refused, say. Values must not carry secrets.
func Annotate(c *gin.Context, key string, value any) {
	attrs, _ := c.Get(ctxAnnotations)
	list, _ := attrs.([]any)
	c.Set(ctxAnnotations, append(list, key, value))
}

// Expected marks the request's status as part of normal operation (a
// readiness probe answering 503 while the service starts): its access line
// is logged at info.
func Expected(c *gin.Context) { c.Set(ctxExpected, true) }

// AccessLog logs one line per request at the end of it: errors for 5xx
// but 503, which says "not now" (a dependency down) and is logged as a
// warning.
func AccessLog() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		status := c.Writer.Status()
		level := slog.LevelInfo
		switch {
		case c.GetBool(ctxExpected):
		case status == http.StatusServiceUnavailable:
			level = slog.LevelWarn
		case status >= 500:
			level = slog.LevelError
		}
		attrs := make([]slog.Attr, 0, 8)
		attrs = append(attrs,
			slog.String("method", Method(c)),
			slog.String("path", c.Request.URL.Path),
			slog.String("route", c.FullPath()),
			slog.Int("status", status),
			slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
			slog.Int("bytes", c.Writer.Size()),
		)
		if extra, ok := c.Get(ctxAnnotations); ok {
			attrs = append(attrs, slog.Group("", extra.([]any)...).Value.Group()...)
		}
		LogAttrs(c, level, "request", attrs...)
	}
}

// Recovery turns a panic into a logged 500 with the error envelope.
func Recovery() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if rec := recover(); rec != nil {
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				Logger(c).Error("panic serving request", "panic", rec)
				Error(c, http.StatusInternalServerError, "", nil)
			}
		}()
		c.Next()
	}
}

// SecurityHeaders sets the headers every API response carries.
func SecurityHeaders() gin.HandlerFunc {
	return func(c *gin.Context) {
		h := c.Writer.Header()
		for k, v := range securityHeaders {
			// Shared values: net/http only reads them, and Header.Add
			// appends to a full slice, so copies it first.
			h[k] = v
		}
		c.Next()
	}
}

// securityHeaders are the values SecurityHeaders sets, canonical keys.
var securityHeaders = map[string][]string{
	"X-Content-Type-Options":  {"nosniff"},
	"Content-Security-Policy": {"default-src 'none'; frame-ancestors 'none'"},
	"Referrer-Policy":         {"no-referrer"},
	"Cache-Control":           {"no-store"},
}

// NotFound and MethodNotAllowed answer unknown routes with the envelope.
func NotFound(c *gin.Context) {
	Error(c, http.StatusNotFound, "no such endpoint: "+Method(c)+" "+c.Request.URL.Path, nil)
}

// MethodNotAllowed answers a known path with the wrong method.
func MethodNotAllowed(c *gin.Context) {
	Error(c, http.StatusMethodNotAllowed, "method "+Method(c)+" is not allowed on "+c.Request.URL.Path, nil)
}

// NewEngine returns a gin engine with the shared middleware installed: the
// caller adds its routes. name labels its metrics.
func NewEngine(name string, log *slog.Logger, m *Metrics) *gin.Engine {
	e := gin.New()
	e.HandleMethodNotAllowed = true
	e.ContextWithFallback = true
	e.Use(Correlation(log), AccessLog(), Recovery())
	if m != nil {
		e.Use(m.Middleware(name))
	}
	e.Use(SecurityHeaders())
	e.NoRoute(NotFound)
	e.NoMethod(MethodNotAllowed)
	return e
}

const ctxCaller = "ah.caller"

// Caller is who made a request, as authentication established it: for
// logs and per-group metrics, not for decisions.
type Caller struct {
	Email string
	// Group is the token's group that granted the route's permission.
	Group string
}

// SetCaller records the request's caller.
func SetCaller(c *gin.Context, who Caller) { c.Set(ctxCaller, who) }

// CallerOf is the request's caller; zero when none was authenticated.
func CallerOf(c *gin.Context) Caller {
	who, _ := c.Value(ctxCaller).(Caller)
	return who
}
