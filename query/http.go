package query

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/httpapi"
)

// APIPath is the route of the history; the activity by id is APIPath/{id}.
// Requests match it whatever the case of its letters.
const APIPath = "/api/v1/activityHistory"

const jsonContentType = "application/json; charset=utf-8"

var jsonContentTypes = []string{jsonContentType}

// EngineDeps are what the query engine needs besides the Service.
type EngineDeps struct {
	// Logger is the base request logger; nil means slog.Default().
	Logger *slog.Logger
	// Metrics records requests; nil records nothing.
	Metrics *httpapi.Metrics
	// Middleware runs before the API handlers (after correlation, access
	// log, recovery, metrics), on the API routes only: the place for auth.
	Middleware []gin.HandlerFunc
}

// Engine is the query gin engine. Serve it through its own ServeHTTP (as an
// http.Handler): that is what makes the API path case-insensitive. Routes
// may be added to it as to any gin engine.
type Engine struct {
	*httpapi.FoldedEngine
}

// NewEngine returns the query engine: GET APIPath and GET APIPath/:id. It
// holds no ops endpoints; cmd mounts those.
func NewEngine(svc *Service, deps EngineDeps) *Engine {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	e := httpapi.NewEngine("query", log, deps.Metrics)
	// Redirects suit browsers; an API client gets its answer or a 404.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	// Route on the escaped path, so that an opaque target id holding '/'
	// (sent as %2F) is one path segment. gin would unescape values as a
	// query ('+' → ' '); PathParam unescapes them as a path instead.
	e.UseRawPath = true
	e.UnescapePathValues = false
	h := handlers{svc: svc}
	api := e.Group(APIPath, deps.Middleware...)
	api.Use(h.await)
	api.GET("", h.history)
	api.GET("/:id", h.get)
	return &Engine{FoldedEngine: httpapi.Fold(e)}
}

type handlers struct {
	svc *Service
}

// history serves GET APIPath?targetId=&pageSize=&paginationToken= and
// the filters from, to, type and sourceDomain.
func (h handlers) history(c *gin.Context) {
	start := time.Now()
	q := queryOf(c)
	var dups map[string][]string
	one := func(name string) string {
		v, ok := param(q, name)
		if !ok {
			if dups == nil {
				dups = map[string][]string{}
			}
			dups[name] = []string{"must be given once"}
		}
		return v
	}
	req := HistoryRequest{TargetID: one("targetId"), Token: one("paginationToken"), MinPosition: c.GetUint64(awaitedKey)}
	rawSize := one("pageSize")
	req.Filter = activity.FilterInput{
		From: one("from"), To: one("to"),
		Types: Params(q, "type"), SourceDomains: Params(q, "sourceDomain"),
	}
	if dups != nil {
		h.fail(c, &activity.ValidationError{Fields: dups})
		return
	}
	req.PageSize = h.svc.defaultPageSize
	if rawSize != "" {
		n, err := strconv.Atoi(rawSize)
		if err != nil {
			// Out of range for the service, which words the error.
			n = 0
		}
		req.PageSize = n
	}

	page, err := h.svc.History(c.Request.Context(), req)

	// The support analysts' view of which read served the request.
	r := page.Read
	logged := r.TargetID
	if logged == "" {
		logged = clip(req.TargetID)
	}
	// Sized for what logQuery adds, so the slice is allocated once.
	attrs := append(make([]slog.Attr, 0, 18),
		slog.String("query", "history"),
		slog.String("targetId", logged),
		slog.String("filter", r.Filter),
		slog.Int("pageSize", req.PageSize),
		slog.Bool("token", req.Token != ""),
		slog.String("index", r.Index),
		slog.String("before", r.Before),
		slog.String("from", r.Lower),
		slog.String("to", r.Upper),
		slog.Int("limit", r.Limit),
		slog.Int("calls", r.Calls),
		slog.Int("scanned", r.Scanned),
		slog.Int("results", len(page.Results)),
		slog.Bool("hasNext", page.NextToken != nil),
	)
	if !h.logQuery(c, start, attrs, err) {
		h.fail(c, err)
		return
	}
	writePage(c, page)
}

// logQuery writes the query log line with the caller, the read's outcome
// and duration (at warn when slow), and reports whether the read succeeded.
func (h handlers) logQuery(c *gin.Context, start time.Time, attrs []slog.Attr, err error) bool {
	took := time.Since(start)
	attrs = append(attrs,
		slog.String("caller", httpapi.CallerOf(c).Email),
		slog.Float64("durationMs", float64(took.Microseconds())/1000),
		slog.String("outcome", Outcome(err)))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	level := slog.LevelInfo
	if took > h.svc.slowQuery {
		level = slog.LevelWarn
	}
	httpapi.LogAttrs(c, level, "query", attrs...)
	return err == nil
}

// get serves GET APIPath/:id.
func (h handlers) get(c *gin.Context) {
	start := time.Now()
	id := PathParam(c, "id")
	doc, err := h.svc.Get(c.Request.Context(), id)
	attrs := []slog.Attr{
		slog.String("query", "get"),
		slog.String("id", clip(id)),
	}
	if !h.logQuery(c, start, attrs, err) {
		h.fail(c, err)
		return
	}
	c.Data(http.StatusOK, jsonContentType, doc)
}

// MinPositionHeader asks a read to wait until the read model has applied
// the position, as the minPosition parameter does.
const MinPositionHeader = "X-Min-Position"

// awaitedKey holds, in the gin context, the position await waited for.
const awaitedKey = "query.minPosition"

// await holds a read until the read model has applied what it needs: the
// position the client asked for (header or parameter; the higher counts)
// and what the store held at start.
func (h handlers) await(c *gin.Context) {
	start := time.Now()
	var want uint64
	var bad map[string][]string
	refuse := func(field, why string) {
		if bad == nil {
			bad = map[string][]string{}
		}
		bad[field] = []string{why}
	}
	if v := c.GetHeader(MinPositionHeader); v != "" {
		n, err := ParsePosition(v)
		if err != nil {
			refuse(MinPositionHeader, err.Error())
		}
		want = n
	}
	switch v, ok := param(queryOf(c), "minPosition"); {
	case !ok:
		refuse("minPosition", "must be given once")
	case v != "":
		n, err := ParsePosition(v)
		if err != nil {
			refuse("minPosition", err.Error())
		}
		want = max(want, n)
	}
	if bad != nil {
		h.fail(c, &activity.ValidationError{Fields: bad})
		return
	}
	if err := h.svc.Await(c.Request.Context(), want); err != nil {
		h.logQuery(c, start, []slog.Attr{slog.String("query", "await"), slog.Uint64("minPosition", want)}, err)
		h.fail(c, err)
		return
	}
	if want > 0 {
		c.Set(awaitedKey, want)
	}
	c.Next()
}

// Fail answers err the way every query-side route does: 400 with the
// fields of a *activity.ValidationError, 404 for ErrNotFound, else 500.
func Fail(c *gin.Context, err error) { handlers{}.fail(c, err) }

// fail maps every error of the query side to its HTTP answer.
func (h handlers) fail(c *gin.Context, err error) {
	var bad *activity.ValidationError
	switch {
	case errors.As(err, &bad):
		httpapi.Error(c, http.StatusBadRequest, "the request has invalid parameters", bad.Fields)
	case errors.Is(err, ErrNotFound):
		msg := "no activity history for this targetId"
		if c.FullPath() == APIPath+"/:id" {
			msg = "no activity with this id"
		}
		httpapi.Error(c, http.StatusNotFound, msg, nil)
	case errors.Is(err, ErrBehind):
		httpapi.Unavailable(c, err)
	default:
		httpapi.Internal(c, err)
	}
}

// Outcome names how a read ended, for logs and metrics: ok, invalid,
// notFound, behind (the read model has not caught up) or error.
func Outcome(err error) string {
	var bad *activity.ValidationError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &bad):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "notFound"
	case errors.Is(err, ErrBehind):
		return "behind"
	default:
		return "error"
	}
}

// queryKey holds the request's parsed query string in the gin context.
const queryKey = "query.values"

// queryOf is the request's query string, parsed once per request (await
// and the handler both read it).
func queryOf(c *gin.Context) url.Values {
	if v, ok := c.Get(queryKey); ok {
		return v.(url.Values)
	}
	q := c.Request.URL.Query()
	c.Set(queryKey, q)
	return q
}

// param returns the value of a query parameter, "" when absent. Names
// match case-insensitively, as in the pilot (ASP.NET binding). ok is false
// when it is given more than once: that is refused rather than guessed at.
func param(q url.Values, name string) (v string, ok bool) {
	vals := q[name]
	for k, vs := range q {
		if k != name && httpapi.EqualFoldASCII(k, name) {
			vals = append(vals[:len(vals):len(vals)], vs...)
		}
	}
	switch len(vals) {
	case 0:
		return "", true
	case 1:
		return vals[0], true
	default:
		return "", false
	}
}

// PathParam is a path parameter, percent-decoded as a path segment (a '+'
// stays a '+'); left as sent when it is not valid percent-encoding.
func PathParam(c *gin.Context, name string) string {
	v := c.Param(name)
	if u, err := url.PathUnescape(v); err == nil {
		return u
	}
	return v
}

// Params returns every value of a repeatable query parameter, names
// matched case-insensitively as by param. Comma lists are left to the
// caller to split.
func Params(q url.Values, name string) []string {
	var out []string
	for k, vs := range q {
		if httpapi.EqualFoldASCII(k, name) {
			out = append(out, vs...)
		}
	}
	return out
}

// clip keeps client input in logs short.
func clip(s string) string {
	const max = 128
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// writePage sends the response around the documents as stored: they are
// neither decoded nor re-encoded, but copied into one buffer so that the
// page leaves in one write rather than one per buffer-full.
func writePage(c *gin.Context, p HistoryPage) {
	const (
		head = `{"results":[`
		mid  = `],"paginationDetails":{"nextToken":`
		tail = `}}`
	)
	next := "null"
	if p.NextToken != nil {
		// base64url needs no JSON escaping.
		next = `"` + *p.NextToken + `"`
	}
	n := len(head) + len(mid) + len(next) + len(tail) + max(len(p.Results)-1, 0)
	for _, r := range p.Results {
		n += len(r)
	}
	bp := pageBuffers.Get().(*[]byte)
	b := append((*bp)[:0], head...)
	for i, r := range p.Results {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, mid...)
	b = append(b, next...)
	b = append(b, tail...)
	h := c.Writer.Header()
	h["Content-Type"] = jsonContentTypes // shared: net/http only reads it
	h["Content-Length"] = []string{strconv.Itoa(n)}
	c.Status(http.StatusOK)
	// A failed write means the client went away; nothing is left to tell it.
	_, _ = c.Writer.Write(b)
	if cap(b) <= maxPooledPage {
		*bp = b
		pageBuffers.Put(bp)
	}
}

// maxPooledPage keeps a rare huge page from pinning its buffer.
const maxPooledPage = 256 << 10

var pageBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 32<<10); return &b }}
