// Package apitest checks HTTP exchanges against the service's OpenAPI document
// (apidocs), so that every handler and end-to-end test is also a contract test:
// a response whose status, headers or body the document does not describe
// fails the test.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/council/activityhistory/apidocs"
)

// Checker validates responses against one loaded OpenAPI document. It is
// safe for concurrent use by parallel tests.
type Checker struct {
	doc       *openapi3.T
	router    routers.Router
	templates [][]string // path templates split on "/", for case-insensitive matching
	opts      *openapi3filter.Options
}

// New loads and validates the service's document (apidocs.YAML) and returns
// a Checker for it, failing t if the document does not load. It takes about
// 20 ms, so share one Checker across the subtests of a test.
func New(t testing.TB) *Checker {
	t.Helper()
	c, err := NewFromYAML(apidocs.YAML())
	if err != nil {
		t.Fatalf("apitest: %v", err)
	}
	return c
}

// FormatOptions are the schema options the Checker validates with: the
// "uuid" format is enforced (RFC 9562, so UUIDv7 ids pass; kin-openapi does
// not check "uuid" by default). Exported so that other checks of the
// document, such as of its examples, use the same rules.
func FormatOptions() []openapi3.SchemaValidationOption {
	uuid := openapi3.NewRegexpFormatValidator(openapi3.FormatOfStringForUUIDOfRFC9562)
	return []openapi3.SchemaValidationOption{openapi3.WithStringFormatValidator("uuid", uuid)}
}

// NewFromYAML builds a Checker for any OpenAPI 3 document; New is the one
// tests use.
func NewFromYAML(spec []byte) (*Checker, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("load openapi document: %w", err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("validate openapi document: %w", err)
	}
	// Tests talk to servers on random ports, and behind no prefix: route on
	// the paths alone.
	doc.Servers = nil
	c := &Checker{doc: doc}
	for p, item := range doc.Paths.Map() {
		item.Servers = nil
		c.templates = append(c.templates, strings.Split(p, "/"))
	}
	if c.router, err = gorillamux.NewRouter(doc); err != nil {
		return nil, fmt.Errorf("openapi router: %w", err)
	}
	// kin-openapi keeps body decoders in a package map: register once.
	registerDecoders.Do(func() { openapi3filter.RegisterBodyDecoder("application/x-ndjson", ndjsonDecoder) })
	c.opts = &openapi3filter.Options{
		IncludeResponseStatus: true, // an undocumented status is a failure
		MultiError:            true,
		AuthenticationFunc:    openapi3filter.NoopAuthenticationFunc,
		// The body is printed with a failure; the schema dump would drown it.
		SchemaValidationOptions: append(FormatOptions(), openapi3.DisableSchemaErrorDetails()),
	}
	return c, nil
}

var registerDecoders sync.Once

// ndjsonDecoder accepts newline-delimited JSON whose every line is a JSON
// object, and hands the body on as text (the documents say type: string).
func ndjsonDecoder(body io.Reader, _ http.Header, _ *openapi3.SchemaRef, _ openapi3filter.EncodingFn) (any, error) {
	b, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		if len(b) == 0 {
			break
		}
		var obj map[string]any
		if err := json.Unmarshal(line, &obj); err != nil {
			return nil, fmt.Errorf("ndjson line %d is not a JSON object: %w", i+1, err)
		}
	}
	return string(b), nil
}

// Do sends req with client (http.DefaultClient when nil), reads the whole
// response, checks the exchange (see Check) and returns the response, whose
// Body can be read again, and its body. A transport error fails the test at
// once.
func (c *Checker) Do(t testing.TB, client *http.Client, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	reqBody := requestBody(t, req)
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("apitest: %s %s: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("apitest: read response of %s %s: %v", req.Method, req.URL, err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.Check(t, req, reqBody, resp, body)
	return resp, body
}

// Serve is Do for an in-process handler (a gin engine): it serves req
// (from httptest.NewRequest) with h and checks the exchange.
func (c *Checker) Serve(t testing.TB, h http.Handler, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	reqBody := requestBody(t, req)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	body := rec.Body.Bytes()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	c.Check(t, req, reqBody, resp, body)
	return resp, body
}

// requestBody reads req's body for failure messages and leaves it readable.
func requestBody(t testing.TB, req *http.Request) []byte {
	t.Helper()
	if req.Body == nil || req.Body == http.NoBody {
		return nil
	}
	if req.GetBody != nil {
		rc, err := req.GetBody()
		if err == nil {
			defer rc.Close()
			if b, err := io.ReadAll(rc); err == nil {
				return b
			}
		}
	}
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("apitest: read request body of %s %s: %v", req.Method, req.URL, err)
	}
	req.Body = io.NopCloser(bytes.NewReader(b))
	req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	return b
}

// Check fails t (with Errorf, so the test goes on) unless the exchange is
// described by the document: the method and path are documented, the status
// is listed for the operation, required headers (x-correlation-id, Location,
// WWW-Authenticate…) are present and valid, the Content-Type is one the
// response lists and the body matches its schema. Requests are not
// validated: tests send bad requests on purpose. reqBody only goes into
// failure messages. When resp.Request is set (after redirects), it is the
// request checked.
func (c *Checker) Check(t testing.TB, req *http.Request, reqBody []byte, resp *http.Response, respBody []byte) {
	t.Helper()
	if resp.Request != nil {
		req = resp.Request
	}
	if err := c.check(req, resp, respBody); err != nil {
		t.Errorf("apitest: %s %s → %d does not match the OpenAPI document:\n%v\n%s",
			req.Method, req.URL.RequestURI(), resp.StatusCode, err, exchange(reqBody, resp, respBody))
	}
}

// CheckNoRoute is Check for requests the document deliberately does not
// describe (an unknown path, or a method a path does not have): it fails t
// unless the route is indeed undocumented and the answer is a 404 or 405
// carrying x-correlation-id and the Error envelope as JSON.
func (c *Checker) CheckNoRoute(t testing.TB, req *http.Request, resp *http.Response, respBody []byte) {
	t.Helper()
	if resp.Request != nil {
		req = resp.Request
	}
	if err := c.checkNoRoute(req, resp, respBody); err != nil {
		t.Errorf("apitest: %s %s → %d: %v\n%s", req.Method, req.URL.RequestURI(), resp.StatusCode, err, exchange(nil, resp, respBody))
	}
}

func (c *Checker) check(req *http.Request, resp *http.Response, respBody []byte) error {
	route, params, err := c.findRoute(req)
	if err != nil {
		return fmt.Errorf("the route is not documented: %w", err)
	}
	ref := route.Operation.Responses.Status(resp.StatusCode)
	if ref == nil || ref.Value == nil {
		// ValidateResponse lets redirects through unchecked; we do not.
		return fmt.Errorf("status %d is not documented for operation %s (documented: %s)",
			resp.StatusCode, route.Operation.OperationID, documentedStatuses(route.Operation))
	}
	if len(ref.Value.Content) == 0 && len(bytes.TrimSpace(respBody)) != 0 {
		return fmt.Errorf("status %d is documented without a body, but the response has one", resp.StatusCode)
	}
	opts := c.opts
	if req.Method == http.MethodHead {
		// HEAD is answered as GET without the body (RFC 9110 9.3.2).
		if len(respBody) != 0 {
			return errors.New("a HEAD response has a body")
		}
		o := *c.opts
		o.ExcludeResponseBody = true
		opts = &o
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request:    req,
			PathParams: params,
			Route:      route,
			Options:    opts,
		},
		Status:  resp.StatusCode,
		Header:  resp.Header,
		Options: opts,
	}
	in.SetBodyBytes(respBody)
	return openapi3filter.ValidateResponse(context.Background(), in)
}

func (c *Checker) checkNoRoute(req *http.Request, resp *http.Response, respBody []byte) error {
	route, _, err := c.findRoute(req)
	switch {
	case err == nil:
		return fmt.Errorf("the route is documented as operation %s: use Check", route.Operation.OperationID)
	case errors.Is(err, routers.ErrPathNotFound):
		if resp.StatusCode != http.StatusNotFound {
			return fmt.Errorf("an unknown path must give 404, not %d", resp.StatusCode)
		}
	case errors.Is(err, routers.ErrMethodNotAllowed):
		if resp.StatusCode != http.StatusMethodNotAllowed {
			return fmt.Errorf("a method the path does not have must give 405, not %d", resp.StatusCode)
		}
	default:
		return err
	}
	if resp.Header.Get("x-correlation-id") == "" {
		return errors.New("response header x-correlation-id is missing")
	}
	mt := resp.Header.Get("Content-Type")
	if base, _, _ := strings.Cut(mt, ";"); strings.TrimSpace(base) != "application/json" {
		return fmt.Errorf("content type %q is not application/json", mt)
	}
	schema := c.doc.Components.Schemas["Error"]
	if schema == nil || schema.Value == nil {
		return errors.New("the document has no Error schema")
	}
	var v any
	if err := json.Unmarshal(respBody, &v); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if err := schema.Value.VisitJSON(v, append(c.opts.SchemaValidationOptions, openapi3.VisitAsResponse(), openapi3.MultiErrors())...); err != nil {
		return fmt.Errorf("body does not match the Error schema: %w", err)
	}
	return nil
}

// findRoute matches req on the document's paths. Literal path segments match
// case-insensitively, as the service routes them (the frontend calls
// /api/v1/activityhistory).
func (c *Checker) findRoute(req *http.Request) (*routers.Route, map[string]string, error) {
	if p := c.canonicalPath(req.URL.EscapedPath()); p != req.URL.EscapedPath() {
		u := *req.URL
		u.Path, u.RawPath = p, ""
		req = req.Clone(req.Context())
		req.URL = &u
	}
	if req.Method == http.MethodHead {
		req = req.Clone(req.Context())
		req.Method = http.MethodGet
	}
	return c.router.FindRoute(req)
}

// canonicalPath returns p with its literal segments spelt as in the document
// when p matches a path template only regardless of case or of a trailing
// slash; otherwise p.
func (c *Checker) canonicalPath(p string) string {
	// One trailing slash is routed as none, as the service does.
	if len(p) > 1 && strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "//") {
		if q := c.canonicalPath(p[:len(p)-1]); c.match(strings.Split(q, "/"), func(a, b string) bool { return a == b }) != nil {
			return q
		}
	}
	segs := strings.Split(p, "/")
	if c.match(segs, func(a, b string) bool { return a == b }) != nil {
		return p
	}
	tpl := c.match(segs, strings.EqualFold)
	if tpl == nil {
		return p
	}
	out := make([]string, len(segs))
	for i, ts := range tpl {
		if isParam(ts) {
			out[i] = segs[i]
		} else {
			out[i] = ts
		}
	}
	return strings.Join(out, "/")
}

// match returns the first template whose literal segments equal segs.
func (c *Checker) match(segs []string, equal func(a, b string) bool) []string {
next:
	for _, tpl := range c.templates {
		if len(tpl) != len(segs) {
			continue
		}
		for i, ts := range tpl {
			if !isParam(ts) && !equal(ts, segs[i]) {
				continue next
			}
		}
		return tpl
	}
	return nil
}

func isParam(seg string) bool {
	return len(seg) > 2 && seg[0] == '{' && seg[len(seg)-1] == '}'
}

func documentedStatuses(op *openapi3.Operation) string {
	var codes []string
	for code := range op.Responses.Map() {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	return strings.Join(codes, ", ")
}

// exchange formats the bodies for a failure message, cut to a readable size.
func exchange(reqBody []byte, resp *http.Response, respBody []byte) string {
	var b strings.Builder
	if len(reqBody) > 0 {
		fmt.Fprintf(&b, "request body: %s\n", cut(reqBody))
	}
	fmt.Fprintf(&b, "response Content-Type: %q\nresponse body: %s", resp.Header.Get("Content-Type"), cut(respBody))
	return b.String()
}

func cut(b []byte) string {
	const max = 2048
	if len(b) > max {
		return string(b[:max]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}
