package audit

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/eventstore"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/query"
)

// Routes, under query.APIPath.
const (
	EventsPath = query.APIPath + "/streams/:targetId/events"
	VerifyPath = query.APIPath + "/streams/:targetId/verify"
	ErasePath  = query.APIPath + "/streams/:targetId/erase"
	ExportPath = query.APIPath + "/export"
)

// Headers of the ndjson and csv exports, which carry no envelope.
const (
	NextTokenHeader   = "X-Next-Token"
	ResumeTokenHeader = "X-Resume-Token"
)

// CSVColumns are the columns of a CSV export, in order.
var CSVColumns = []string{
	"id", "targetId", "targetType", "type", "createdAt", "sourceDomain",
	"authorFullName", "authorEmail", "timetoLiveForRecord", "oldData", "newData",
}

// Routes mount the service.
type Routes struct {
	// Audit runs before replay, verify and erase, Export before export
	// (auth).
	Audit, Export []gin.HandlerFunc
	// Erase is where the erase route goes: the engine that receives the
	// process's writes (nil: the one Mount is given).
	Erase gin.IRouter
	// Registerer receives the audit metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Mount adds replay, verify and export to r (the query engine).
func Mount(r gin.IRouter, svc *Service, routes Routes) {
	reg := routes.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	f := promauto.With(reg)
	h := handlers{svc: svc,
		calls: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_audit_requests_total",
			Help: "Replay, verify and export calls by endpoint, caller group and outcome.",
		}, []string{"endpoint", "group", "outcome"}),
		records: f.NewCounterVec(prometheus.CounterOpts{
			Name: "activityhistory_audit_records_total",
			Help: "Records served by replay, verified, or exported, by endpoint and caller group.",
		}, []string{"endpoint", "group"}),
	}
	// Clipped, so that no two routes share the handlers' backing array.
	r.GET(EventsPath, append(slices.Clip(routes.Audit), h.replay)...)
	r.GET(VerifyPath, append(slices.Clip(routes.Audit), h.verify)...)
	r.GET(ExportPath, append(slices.Clip(routes.Export), h.export)...)
	if routes.Erase == nil {
		routes.Erase = r
	}
	routes.Erase.POST(ErasePath, append(slices.Clip(routes.Audit), h.erase)...)
}

type handlers struct {
	svc     *Service
	calls   *prometheus.CounterVec
	records *prometheus.CounterVec
}

// done logs the audit line of one call and counts it: who, what, how many.
func (h handlers) done(c *gin.Context, endpoint string, start time.Time, records int, err error, attrs ...slog.Attr) bool {
	who := httpapi.CallerOf(c)
	group := who.Group
	if group == "" {
		group = "none"
	}
	out := query.Outcome(err)
	h.calls.WithLabelValues(endpoint, group, out).Inc()
	h.records.WithLabelValues(endpoint, group).Add(float64(records))
	attrs = append(attrs,
		slog.String("endpoint", endpoint),
		slog.String("caller", who.Email),
		slog.String("group", who.Group),
		slog.Int("records", records),
		slog.Float64("durationMs", float64(time.Since(start).Microseconds())/1000),
		slog.String("outcome", out))
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	httpapi.Logger(c).LogAttrs(c.Request.Context(), slog.LevelInfo, "audit", attrs...)
	// What only these routes can meet is answered here, the rest as every
	// query-side route answers it.
	var broken *BrokenError
	switch {
	case err == nil:
		return true
	case errors.As(err, &broken):
		httpapi.Error(c, http.StatusConflict, broken.Error(), nil)
	case errors.Is(err, ErrNoExport):
		httpapi.Error(c, http.StatusNotImplemented, err.Error(), nil)
	case errors.Is(err, errors.ErrUnsupported):
		// The store cannot erase: say why in the one place a 5xx may.
		httpapi.Error(c, http.StatusNotImplemented, "", map[string][]string{"eventStore": {err.Error()}})
	default:
		query.Fail(c, err)
	}
	return false
}

// params reads the single-valued parameters of a request, refusing any
// given twice.
type params struct {
	q    url.Values
	dups map[string][]string
}

func (p *params) one(name string) string {
	vs := query.Params(p.q, name)
	if len(vs) > 1 {
		if p.dups == nil {
			p.dups = map[string][]string{}
		}
		p.dups[name] = []string{"must be given once"}
	}
	if len(vs) == 0 {
		return ""
	}
	return vs[0]
}

func (p *params) err() error {
	if p.dups != nil {
		return &activity.ValidationError{Fields: p.dups}
	}
	return nil
}

// size parses a page size; an unparsable one becomes 0, which the service
// refuses with its own wording.
func size(raw string, def int) int {
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		return 0
	}
	return n
}

// replay serves GET EventsPath?fromRevision=&pageSize=&paginationToken=.
func (h handlers) replay(c *gin.Context) {
	start := time.Now()
	p := &params{q: c.Request.URL.Query()}
	req := ReplayRequest{TargetID: query.PathParam(c, "targetId"), Token: p.one("paginationToken")}
	rawFrom, rawSize := p.one("fromRevision"), p.one("pageSize")
	req.PageSize = size(rawSize, DefaultReplayPageSize)
	err := p.err()
	if err == nil && rawFrom != "" {
		n, perr := strconv.ParseUint(rawFrom, 10, 64)
		switch {
		case perr != nil:
			err = activity.Invalid("fromRevision", "must be a revision: an integer from 0")
		case req.Token != "":
			err = activity.Invalid("fromRevision", "must not be given with paginationToken, which carries the revision to continue from")
		}
		req.FromRevision = n
	}
	var page ReplayPage
	if err == nil {
		page, err = h.svc.Replay(c.Request.Context(), req)
	}
	if !h.done(c, "replay", start, len(page.Records), err,
		slog.String("targetId", page.TargetID), slog.Uint64("fromRevision", req.FromRevision), slog.Bool("token", req.Token != "")) {
		return
	}
	var b bytes.Buffer
	b.WriteString(`{"targetId":`)
	writeJSON(&b, page.TargetID)
	b.WriteString(`,"results":[`)
	for i, r := range page.Records {
		if i > 0 {
			b.WriteByte(',')
		}
		writeRecord(&b, r)
	}
	b.WriteString(`],"paginationDetails":{"nextToken":`)
	writeJSON(&b, page.NextToken)
	b.WriteString(`}}`)
	c.Data(http.StatusOK, "application/json; charset=utf-8", b.Bytes())
}

// writeRecord writes one replayed record. data is the stored bytes
// verbatim (not re-encoded), and dataBase64 the same bytes for clients
// that cannot take a JSON value's text as it was sent. chain is the
// record's chain form; a v2 record carries its payload's digest, which an
// erased one keeps (erased: true, no data).
func writeRecord(b *bytes.Buffer, r eventstore.Record) {
	chain, digest := max(r.Version, eventstore.ChainV1), r.Digest
	if chain >= eventstore.ChainV2 && !r.Erased {
		digest = eventstore.Digest(r.Data)
	}
	meta, _ := json.Marshal(struct {
		Revision   uint64 `json:"revision"`
		Position   uint64 `json:"position"`
		ID         string `json:"id"`
		Type       string `json:"type"`
		RecordedAt string `json:"recordedAt"`
		PrevHash   string `json:"prevHash"`
		Hash       string `json:"hash"`
		Chain      int    `json:"chain"`
		Digest     string `json:"digest,omitempty"`
		Erased     bool   `json:"erased,omitempty"`
		DataBase64 string `json:"dataBase64"`
	}{r.Revision, r.Position, r.ID, r.Type, r.RecordedAt.UTC().Format(time.RFC3339Nano), r.PrevHash, r.Hash,
		chain, digest, r.Erased, base64.StdEncoding.EncodeToString(r.Data)}) // plain fields always encode
	b.Write(meta[:len(meta)-1])
	b.WriteString(`,"data":`)
	if !r.Erased && json.Valid(r.Data) {
		b.Write(r.Data)
	} else {
		b.WriteString("null")
	}
	b.WriteByte('}')
}

func writeJSON(b *bytes.Buffer, v any) {
	j, _ := json.Marshal(v) // strings and string pointers always encode
	b.Write(j)
}

// verify serves GET VerifyPath.
func (h handlers) verify(c *gin.Context) {
	start := time.Now()
	v, err := h.svc.Verify(c.Request.Context(), query.PathParam(c, "targetId"))
	if !h.done(c, "verify", start, int(v.Records), err,
		slog.String("targetId", v.TargetID), slog.Bool("verified", v.Verified)) {
		return
	}
	type head struct {
		Revision uint64 `json:"revision"`
		Hash     string `json:"hash"`
		Position uint64 `json:"position"`
	}
	type failure struct {
		Revision uint64 `json:"revision"`
		Reason   string `json:"reason"`
	}
	headOf := func(h *eventstore.Head) *head {
		if h == nil {
			return nil
		}
		return &head{h.Revision, h.Hash, h.Position}
	}
	body := struct {
		TargetID        string   `json:"targetId"`
		Verified        bool     `json:"verified"`
		Records         uint64   `json:"records"`
		Erased          int      `json:"erased"`
		ErasedRevisions []uint64 `json:"erasedRevisions"`
		Head            *head    `json:"head"`
		RecordedHead    *head    `json:"recordedHead"`
		Failure         *failure `json:"failure"`
	}{TargetID: v.TargetID, Verified: v.Verified, Records: v.Records, Erased: len(v.Erased), ErasedRevisions: v.Erased,
		Head: headOf(v.Head), RecordedHead: headOf(v.RecordedHead)}
	if body.ErasedRevisions == nil {
		body.ErasedRevisions = []uint64{}
	}
	if v.Failure != nil {
		body.Failure = &failure{v.Failure.Revision, v.Failure.Reason}
	}
	c.JSON(http.StatusOK, body)
}

// eraseBody is the body of an erase request.
type eraseBody struct {
	IDs    []string `json:"ids"`
	Reason string   `json:"reason"`
}

// erase serves POST ErasePath {"reason", "ids"}: it removes the payloads
// of the target's records (all of them when ids is absent or empty).
func (h handlers) erase(c *gin.Context) {
	start := time.Now()
	var body eraseBody
	dec := json.NewDecoder(c.Request.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if err != nil {
		err = activity.Invalid("body", `must be a JSON object: {"reason": "…", "ids": ["…"]}`)
	}
	who := httpapi.CallerOf(c)
	by := who.Email
	if by == "" {
		by = "anonymous (authentication off)"
	}
	var res EraseResult
	if err == nil {
		res, err = h.svc.Erase(c.Request.Context(), EraseRequest{TargetID: query.PathParam(c, "targetId"), IDs: body.IDs, Reason: body.Reason, By: by})
	}
	if !h.done(c, "erase", start, len(res.Erased), err,
		slog.String("targetId", res.TargetID), slog.String("reason", body.Reason), slog.Int("alreadyErased", res.Already)) {
		return
	}
	if res.Position > 0 {
		c.Header("X-Activity-Position", strconv.FormatUint(res.Position, 10))
	}
	if res.Erased == nil {
		res.Erased = []eventstore.ErasedRecord{}
	}
	c.JSON(http.StatusOK, gin.H{"targetId": res.TargetID, "erased": len(res.Erased), "erasedRecords": res.Erased,
		"alreadyErased": res.Already, "reason": strings.TrimSpace(body.Reason), "by": by})
}

// export serves GET ExportPath?format=&targetType=&sourceDomain=&type=&from=&to=&pageSize=&paginationToken=.
func (h handlers) export(c *gin.Context) {
	start := time.Now()
	q := c.Request.URL.Query()
	p := &params{q: q}
	format := p.one("format")
	req := ExportRequest{Token: p.one("paginationToken"), PageSize: size(p.one("pageSize"), DefaultExportPageSize)}
	req.Filter = activity.FilterInput{
		From: p.one("from"), To: p.one("to"),
		Types:         query.Params(q, "type"),
		SourceDomains: query.Params(q, "sourceDomain"),
		TargetTypes:   query.Params(q, "targetType"),
	}
	err := p.err()
	if err == nil {
		switch format {
		case "", "json", "ndjson", "csv":
		default:
			err = activity.Invalid("format", "must be json, ndjson or csv")
		}
	}
	var page ExportPage
	if err == nil {
		page, err = h.svc.Export(c.Request.Context(), req)
	}
	if !h.done(c, "export", start, len(page.Activities), err,
		slog.String("format", format), slog.String("filter", page.Filter),
		slog.Uint64("after", page.From), slog.Uint64("last", page.Last), slog.Int("scanned", page.Scanned)) {
		return
	}
	hdr := c.Writer.Header()
	hdr.Set(ResumeTokenHeader, page.ResumeToken)
	if page.NextToken != nil {
		hdr.Set(NextTokenHeader, *page.NextToken)
		hdr.Set("Link", "<"+nextURL(c.Request.URL, *page.NextToken)+`>; rel="next"`)
	}
	var b bytes.Buffer
	switch format {
	case "", "json":
		writeExportJSON(&b, page)
		c.Data(http.StatusOK, "application/json; charset=utf-8", b.Bytes())
	case "ndjson":
		for _, a := range page.Activities {
			doc, _ := a.MarshalJSON() // decoded from JSON, so it encodes
			b.Write(doc)
			b.WriteByte('\n')
		}
		c.Data(http.StatusOK, "application/x-ndjson", b.Bytes())
	case "csv":
		writeCSV(&b, page.Activities)
		c.Data(http.StatusOK, "text/csv; charset=utf-8; header=present", b.Bytes())
	}
}

func writeExportJSON(b *bytes.Buffer, page ExportPage) {
	b.WriteString(`{"results":[`)
	for i, a := range page.Activities {
		if i > 0 {
			b.WriteByte(',')
		}
		doc, _ := a.MarshalJSON() // decoded from JSON, so it encodes
		b.Write(doc)
	}
	b.WriteString(`],"paginationDetails":{"nextToken":`)
	writeJSON(b, page.NextToken)
	b.WriteString(`,"resumeToken":`)
	writeJSON(b, page.ResumeToken)
	b.WriteString(`}}`)
}

// writeCSV writes RFC 4180 CSV (CRLF line ends, quoted where needed) with
// a header row.
func writeCSV(b *bytes.Buffer, acts []activity.Activity) {
	w := csv.NewWriter(b)
	w.UseCRLF = true
	_ = w.Write(CSVColumns) // a bytes.Buffer does not fail
	for _, a := range acts {
		_ = w.Write([]string{
			a.ID, a.TargetID, string(a.TargetType), string(a.Type),
			a.CreatedAt.UTC().Format(time.RFC3339Nano), a.SourceDomain,
			a.AuthorDetails.FullName, a.AuthorDetails.Email,
			strconv.Itoa(a.TimeToLiveForRecord), dataText(a.OldData), dataText(a.NewData),
		})
	}
	w.Flush()
}

func dataText(m json.RawMessage) string {
	if len(m) == 0 {
		return "null"
	}
	return string(m)
}

// nextURL is the request's URL (path and query, relative) with the next
// token in place of the one it carried.
func nextURL(u *url.URL, token string) string {
	q := u.Query()
	for k := range q {
		if strings.EqualFold(k, "paginationToken") {
			q.Del(k)
		}
	}
	q.Set("paginationToken", token)
	return u.Path + "?" + q.Encode()
}
