package query

import (
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/httpapi"
)

// APIPath is the route of the history; the activity by id is APIPath/{id}.
// Requests match it whatever the case of its letters.
const APIPath = "/api/v1/activityHistory"

const jsonContentType = "application/json; charset=utf-8"

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
	h := handlers{svc: svc}
	api := e.Group(APIPath, deps.Middleware...)
	api.GET("", h.history)
	api.GET("/:id", h.get)
	return &Engine{FoldedEngine: httpapi.Fold(e)}
}

func lowerASCII(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

type handlers struct {
	svc *Service
}

// history serves GET APIPath?targetId=&pageSize=&paginationToken=.
func (h handlers) history(c *gin.Context) {
	start := time.Now()
	q := c.Request.URL.Query()
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
	targetID, rawSize, token := one("targetId"), one("pageSize"), one("paginationToken")
	if dups != nil {
		h.fail(c, &activity.ValidationError{Fields: dups})
		return
	}
	size := h.svc.defaultPageSize
	if rawSize != "" {
		n, err := strconv.Atoi(rawSize)
		if err != nil {
			// Out of range for the service, which words the error.
			n = 0
		}
		size = n
	}

	page, err := h.svc.History(c.Request.Context(), targetID, size, token)

	// The support analysts' view of which read served the request.
	logged := page.targetID
	if logged == "" {
		logged = clip(targetID)
	}
	attrs := []slog.Attr{
		slog.String("query", "history"),
		slog.String("targetId", logged),
		slog.Int("pageSize", size),
		slog.Bool("token", token != ""),
		slog.String("before", page.before),
		slog.Int("results", len(page.Results)),
		slog.Bool("hasNext", page.NextToken != nil),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
	}
	if !logQuery(c, attrs, err) {
		h.fail(c, err)
		return
	}
	writePage(c, page)
}

// logQuery writes the query log line with the read's outcome and reports
// whether the read succeeded.
func logQuery(c *gin.Context, attrs []slog.Attr, err error) bool {
	attrs = append(attrs, slog.String("outcome", outcome(err)))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	httpapi.Logger(c).LogAttrs(c.Request.Context(), slog.LevelInfo, "query", attrs...)
	return err == nil
}

// get serves GET APIPath/:id.
func (h handlers) get(c *gin.Context) {
	start := time.Now()
	id := c.Param("id")
	doc, err := h.svc.Get(c.Request.Context(), id)
	attrs := []slog.Attr{
		slog.String("query", "get"),
		slog.String("id", clip(id)),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
	}
	if !logQuery(c, attrs, err) {
		h.fail(c, err)
		return
	}
	c.Data(http.StatusOK, jsonContentType, doc)
}

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
	default:
		httpapi.Internal(c, err)
	}
}

func outcome(err error) string {
	var bad *activity.ValidationError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &bad):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "notFound"
	default:
		return "error"
	}
}

// param returns the value of a query parameter, "" when absent. Names
// match case-insensitively, as in the pilot (ASP.NET binding). ok is false
// when it is given more than once: that is refused rather than guessed at.
func param(q url.Values, name string) (v string, ok bool) {
	vals := q[name]
	for k, vs := range q {
		if k != name && len(k) == len(name) && foldEqual(k, name) {
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

// foldEqual compares strings of equal length, ignoring ASCII case.
func foldEqual(a, b string) bool {
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
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
// neither decoded, re-encoded nor copied into one buffer.
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
	h := c.Writer.Header()
	h.Set("Content-Type", jsonContentType)
	h.Set("Content-Length", strconv.Itoa(n))
	c.Status(http.StatusOK)
	w := c.Writer
	// A failed write means the client went away; nothing is left to tell it.
	_, _ = w.WriteString(head)
	for i, r := range p.Results {
		if i > 0 {
			_, _ = w.WriteString(",")
		}
		_, _ = w.Write(r)
	}
	_, _ = w.WriteString(mid)
	_, _ = w.WriteString(next)
	_, _ = w.WriteString(tail)
}
