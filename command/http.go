package command

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/httpapi"
)

const (
	// APIPath is the collection route; it is matched case-insensitively.
	APIPath = "/api/v1/activityHistory"
	// MaxBodyBytes bounds a POST body.
	MaxBodyBytes = 1 << 20
	// PositionHeader carries the global position of the last event of a
	// successful write, so a client can wait for the read side to reach it.
	PositionHeader = "X-Activity-Position"
)

// EngineDeps are what the command engine needs besides the Service.
type EngineDeps struct {
	Logger  *slog.Logger // slog.Default() when nil
	Metrics *httpapi.Metrics
	// Middleware runs before the handler on the API route (auth).
	Middleware []gin.HandlerFunc
	// Author, when set, supplies the author of activities sent without
	// authorDetails (both fields empty), e.g. from the caller's token.
	Author func(c *gin.Context) (activity.Author, bool)
	// Events, when set, serves POST EventsPath: entity events recorded
	// through this mapping.
	Events EventMapper
}

// Engine is the command gin engine; paths under APIPath match in any case.
type Engine struct{ *httpapi.FoldedEngine }

// NewEngine returns the command engine: POST APIPath.
func NewEngine(svc *Service, deps EngineDeps) *Engine {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	api := httpapi.NewEngine("command", log, deps.Metrics)
	h := &recordHandler{svc: svc, author: deps.Author}
	api.POST(APIPath, append(slices.Clip(deps.Middleware), h.serve)...)
	if deps.Events != nil {
		eh := &eventsHandler{recordHandler: h, mapper: deps.Events}
		api.POST(EventsPath, append(slices.Clip(deps.Middleware), eh.serve)...)
	}

	return &Engine{FoldedEngine: httpapi.Fold(api)}
}

type recordHandler struct {
	svc    *Service
	author func(c *gin.Context) (activity.Author, bool)
}

// serve handles POST APIPath: one activity object or an array of them.
func (h *recordHandler) serve(c *gin.Context) {
	body, ok := readBody(c)
	if !ok {
		return
	}
	acts, many, err := h.svc.validator.Decode(body)
	if err != nil {
		h.fail(c, err)
		return
	}
	if h.author != nil {
		if err := h.fillAuthor(c, acts); err != nil {
			httpapi.Error(c, http.StatusBadRequest,
				"the author details of the caller's token are unusable: send authorDetails, or use a token with a valid name and email", err.Fields)
			return
		}
	}

	res, err := h.svc.Record(c.Request.Context(), acts)
	if err != nil {
		h.failRecord(c, many, err)
		return
	}
	status := http.StatusCreated
	if res.AllRecorded {
		status = http.StatusOK
	}
	c.Header(PositionHeader, strconv.FormatUint(res.Position, 10))
	if !many {
		c.Header("Location", APIPath+"/"+res.Activities[0].ID)
		c.Data(status, jsonType, res.Docs[0])
		return
	}
	c.Data(status, jsonType, jsonArray(res.Docs))
}

// jsonType is what gin's c.JSON sends.
const jsonType = "application/json; charset=utf-8"

// jsonArray joins JSON documents into an array.
func jsonArray(docs [][]byte) []byte {
	n := 2
	for _, d := range docs {
		n += len(d) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, d := range docs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, d...)
	}
	return append(b, ']')
}

// readBody reads a JSON body of at most MaxBodyBytes; when it cannot, it
// answers and returns false.
func readBody(c *gin.Context) ([]byte, bool) {
	if !jsonContent(c.GetHeader("Content-Type")) {
		httpapi.Error(c, http.StatusUnsupportedMediaType, "Content-Type must be application/json", nil)
		return nil, false
	}
	if c.Request.ContentLength > MaxBodyBytes {
		httpapi.Error(c, http.StatusRequestEntityTooLarge, tooLargeMessage, nil)
		return nil, false
	}
	body, err := readAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes), c.Request.ContentLength)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		httpapi.Error(c, http.StatusRequestEntityTooLarge, tooLargeMessage, nil)
		return nil, false
	}
	if err != nil {
		httpapi.Error(c, http.StatusBadRequest, "the request body could not be read",
			map[string][]string{"body": {"could not be read"}})
		return nil, false
	}
	return body, true
}

// readAll is io.ReadAll into a buffer sized by the Content-Length, so a
// body is read without regrowing it.
func readAll(r io.Reader, size int64) ([]byte, error) {
	b := make([]byte, 0, min(max(size, 0), MaxBodyBytes)+1)
	for {
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
	}
}

const tooLargeMessage = "the request body is larger than 1 MiB"

// jsonContent accepts application/json and application/*+json, in UTF-8.
func jsonContent(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return false
	}
	return mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")
}

// fillAuthor gives activities sent without authorDetails the caller's
// token's, validated as posted ones are: a token's claims are input too.
func (h *recordHandler) fillAuthor(c *gin.Context, acts []activity.Activity) *activity.ValidationError {
	var author activity.Author
	looked, ok := false, false
	for i := range acts {
		// An author sent as null stays null, as sent.
		if acts[i].AuthorDetails != (activity.Author{}) || acts[i].Nulls&(activity.NullFullName|activity.NullEmail) != 0 {
			continue
		}
		if !looked {
			looked = true
			if author, ok = h.author(c); ok {
				var err error
				if author, err = activity.CheckAuthor(author); err != nil {
					var ve *activity.ValidationError
					errors.As(err, &ve)
					for f, msgs := range ve.Fields {
						for j, m := range msgs {
							msgs[j] = "the token's " + claimOf(f) + " claim " + m
						}
						ve.Fields[f] = msgs
					}
					return ve
				}
			}
		}
		if !ok {
			return nil
		}
		acts[i].AuthorDetails = author
	}
	return nil
}

// claimOf names the token claim an author field comes from.
func claimOf(field string) string {
	if strings.HasSuffix(field, "email") {
		return "email"
	}
	return "name"
}

// fail answers a validation error with 400, anything else through
// httpapi.Internal (503 for a dependency down, else 500).
func (h *recordHandler) fail(c *gin.Context, err error) {
	var ve *activity.ValidationError
	if errors.As(err, &ve) {
		httpapi.Error(c, http.StatusBadRequest, "the request holds invalid activities", ve.Fields)
		return
	}
	httpapi.Internal(c, err)
}

// failRecord maps the errors of Service.Record to statuses: the one place
// where that is decided.
func (h *recordHandler) failRecord(c *gin.Context, many bool, err error) {
	var ce *ConflictError
	switch {
	case errors.As(err, &ce):
		if ce.Index < 0 {
			httpapi.Error(c, http.StatusConflict,
				"an activity id for target "+ce.TargetID+" is already recorded with different content", nil)
			return
		}
		field := "id"
		if many {
			field = fmt.Sprintf("[%d].id", ce.Index)
		}
		msg := "activity id " + ce.ID + " is already recorded with different content"
		httpapi.Error(c, http.StatusConflict, msg, map[string][]string{field: {"is already recorded with different content"}})
	case errors.As(err, new(*activity.ValidationError)):
		h.fail(c, err)
	case errors.Is(err, eventstore.ErrTooLarge):
		httpapi.Error(c, http.StatusRequestEntityTooLarge, "the activities are too large for the event store to record at once", nil)
	case errors.Is(err, eventstore.ErrInvalid):
		// The validator should have caught it; a 400 still names a field.
		httpapi.Error(c, http.StatusBadRequest, "the event store cannot take these activities: check targetId and id",
			map[string][]string{"body": {"the event store cannot take these activities"}})
	case errors.Is(err, eventstore.ErrUnavailable), errors.Is(err, eventstore.ErrConflict),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// ErrConflict cannot mean a failed expectation (Record appends with
		// Any): the store gave up on a contended stream. Both are worth a
		// retry with the same ids.
		httpapi.Unavailable(c, err)
	default:
		httpapi.Internal(c, err)
	}
}
