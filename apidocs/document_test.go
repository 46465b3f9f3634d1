package apidocs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/apidocs"
	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/httpapi"
)

func load(t *testing.T, spec []byte) *openapi3.T {
	t.Helper()
	l := openapi3.NewLoader()
	doc, err := l.LoadFromData(spec)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(context.Background(), openapi3.EnableMultiError()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return doc
}

func TestDocumentValidates(t *testing.T) {
	t.Parallel()
	fromYAML := load(t, apidocs.YAML())
	fromJSON := load(t, apidocs.JSON())
	if fromYAML.OpenAPI != "3.0.3" {
		t.Errorf("openapi version %q, want 3.0.3", fromYAML.OpenAPI)
	}
	if !json.Valid(apidocs.JSON()) {
		t.Fatal("JSON() is not valid JSON")
	}
	a, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(fromJSON)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Error("the JSON document differs from the YAML one")
	}
}

func TestYAMLIsACopy(t *testing.T) {
	t.Parallel()
	y := apidocs.YAML()
	y[0] = 'X'
	if apidocs.YAML()[0] == 'X' {
		t.Fatal("YAML() exposes the embedded bytes")
	}
}

// example is one example found in the document with the schema it illustrates.
type example struct {
	where    string
	schema   *openapi3.SchemaRef
	value    any
	response bool
}

// examples collects every example of the document: of parameters, request
// bodies, responses, response headers and schemas.
func examples(doc *openapi3.T) []example {
	var out []example
	media := func(where string, content openapi3.Content, response bool) {
		for mt, m := range content {
			if m.Example != nil {
				out = append(out, example{where + " " + mt, m.Schema, m.Example, response})
			}
			for name, ex := range m.Examples {
				out = append(out, example{where + " " + mt + " example " + name, m.Schema, ex.Value.Value, response})
			}
		}
	}
	for path, item := range doc.Paths.Map() {
		params := slices.Clone(item.Parameters)
		for method, op := range item.Operations() {
			where := method + " " + path
			for _, p := range append(params, op.Parameters...) {
				if p.Value.Example != nil {
					out = append(out, example{where + " parameter " + p.Value.Name, p.Value.Schema, p.Value.Example, false})
				}
			}
			if op.RequestBody != nil {
				media(where+" request", op.RequestBody.Value.Content, false)
			}
			for code, r := range op.Responses.Map() {
				media(where+" "+code, r.Value.Content, true)
				for name, h := range r.Value.Headers {
					if h.Value.Example != nil {
						out = append(out, example{where + " " + code + " header " + name, h.Value.Schema, h.Value.Example, true})
					}
				}
			}
		}
	}
	for name, s := range doc.Components.Schemas {
		if s.Value.Example != nil {
			out = append(out, example{"schema " + name, s, s.Value.Example, true})
		}
		for prop, ps := range s.Value.Properties {
			if ps.Value.Example != nil {
				out = append(out, example{"schema " + name + "." + prop, ps, ps.Value.Example, true})
			}
		}
	}
	return out
}

func validate(ex example) error {
	opts := append(apitest.FormatOptions(), openapi3.MultiErrors())
	if ex.response {
		opts = append(opts, openapi3.VisitAsResponse())
	} else {
		opts = append(opts, openapi3.VisitAsRequest())
	}
	// Round-trip through JSON: what a client sees, with numbers as float64.
	b, err := json.Marshal(ex.value)
	if err != nil {
		return err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	return ex.schema.Value.VisitJSON(v, opts...)
}

func TestExamplesMatchSchemas(t *testing.T) {
	t.Parallel()
	doc := load(t, apidocs.YAML())
	exs := examples(doc)
	if len(exs) < 30 {
		t.Fatalf("found only %d examples; the walk is broken", len(exs))
	}
	for _, ex := range exs {
		if ex.schema == nil {
			t.Errorf("%s: example without a schema", ex.where)
			continue
		}
		if err := validate(ex); err != nil {
			t.Errorf("%s: example does not match its schema: %v", ex.where, err)
		}
	}
}

// The check above must be able to fail: a broken example is caught.
func TestExampleCheckCatchesBrokenExample(t *testing.T) {
	t.Parallel()
	doc := load(t, apidocs.YAML())
	good := doc.Components.Examples["ActivityUpdate"].Value.Value.(map[string]any)
	schema := doc.Components.Schemas["Activity"]
	if err := validate(example{"good", schema, good, true}); err != nil {
		t.Fatalf("good example rejected: %v", err)
	}
	for name, mutate := range map[string]func(m map[string]any){
		"missing id":     func(m map[string]any) { delete(m, "id") },
		"id not a uuid":  func(m map[string]any) { m["id"] = "not-a-uuid" },
		"unknown type":   func(m map[string]any) { m["type"] = "rename" },
		"extra property": func(m map[string]any) { m["hasNext"] = true },
		"negative ttl":   func(m map[string]any) { m["timetoLiveForRecord"] = -1 },
		"bad createdAt":  func(m map[string]any) { m["createdAt"] = "yesterday" },
		"data not object": func(m map[string]any) {
			m["newData"] = "text"
		},
	} {
		bad := make(map[string]any, len(good))
		for k, v := range good {
			bad[k] = v
		}
		mutate(bad)
		if err := validate(example{name, schema, bad, true}); err == nil {
			t.Errorf("%s: broken example accepted", name)
		}
	}
}

func TestEveryComponentExampleIsUsed(t *testing.T) {
	t.Parallel()
	refs := string(apidocs.YAML())
	doc := load(t, apidocs.YAML())
	for name := range doc.Components.Examples {
		if !strings.Contains(refs, "'#/components/examples/"+name+"'") {
			t.Errorf("example %s is never referenced, so never checked against a schema", name)
		}
	}
}

// Request examples are accepted by the real validator, and response examples
// are exactly what the domain type marshals.
func TestExamplesAgreeWithDomain(t *testing.T) {
	t.Parallel()
	doc := load(t, apidocs.YAML())
	v, err := activity.NewValidator(activity.Rules{
		Now: func() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"InputSingle", "InputMinimal", "InputBatch"} {
		b, _ := json.Marshal(doc.Components.Examples[name].Value.Value)
		if _, _, err := v.Decode(b); err != nil {
			t.Errorf("request example %s rejected by activity.Validator: %v", name, err)
		}
	}

	var activities []any
	add := func(v any) { activities = append(activities, v) }
	add(doc.Components.Examples["ActivityUpdate"].Value.Value)
	for _, a := range doc.Components.Examples["RecordedBatch"].Value.Value.([]any) {
		add(a)
	}
	for _, name := range []string{"PageWithNext", "LastPage"} {
		for _, a := range doc.Components.Examples[name].Value.Value.(map[string]any)["results"].([]any) {
			add(a)
		}
	}
	for i, ex := range activities {
		want, _ := json.Marshal(ex)
		var a activity.Activity
		if err := json.Unmarshal(want, &a); err != nil {
			t.Errorf("activity example %d: %v", i, err)
			continue
		}
		got, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		if !jsonEqual(t, got, want) {
			t.Errorf("activity example %d is not what activity.Activity marshals:\n got %s\nwant %s", i, got, want)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// jsonKeys lists the top-level JSON keys v marshals to, in order.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%T does not marshal to an object: %s", v, b)
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// The document's schemas follow the Go types and limits they describe.
func TestSchemasMatchDomain(t *testing.T) {
	t.Parallel()
	doc := load(t, apidocs.YAML())
	schema := func(name string) *openapi3.Schema {
		t.Helper()
		s := doc.Components.Schemas[name]
		if s == nil {
			t.Fatalf("no schema %s", name)
		}
		return s.Value
	}
	activityKeys := []string{"id", "targetId", "type", "targetType", "createdAt", "timetoLiveForRecord",
		"oldData", "newData", "authorDetails", "sourceDomain"}
	if got := jsonKeys(t, activity.Activity{}); !slices.Equal(got, activityKeys) {
		t.Fatalf("activity.Activity marshals keys %v; update this test and the document", got)
	}
	act := schema("Activity")
	if !slices.Equal(act.Required, activityKeys) {
		t.Errorf("Activity.required = %v, want %v", act.Required, activityKeys)
	}
	// source: only on activities made from entity events (omitted otherwise).
	if got, want := slices.Sorted(mapKeys(act.Properties)), slices.Sorted(slices.Values(append(slices.Clone(activityKeys), "source"))); !slices.Equal(got, want) {
		t.Errorf("Activity properties %v, want %v", got, want)
	}
	if got := jsonKeys(t, activity.Activity{Source: &activity.Source{}}); got[len(got)-1] != "source" {
		t.Errorf("activity.Activity with a source marshals keys %v; want source last", got)
	}
	in := schema("ActivityInput")
	if got := slices.Sorted(mapKeys(in.Properties)); !slices.Equal(got, slices.Sorted(slices.Values(activityKeys))) {
		t.Errorf("ActivityInput properties %v, want %v", got, activityKeys)
	}

	var types []any
	for _, ty := range activity.Types {
		types = append(types, string(ty))
	}
	if got := schema("ActivityType").Enum; !reflect.DeepEqual(got, types) {
		t.Errorf("ActivityType enum %v, want %v", got, types)
	}
	for _, s := range []*openapi3.Schema{act.Properties["targetType"].Value, in.Properties["targetType"].Value} {
		if len(s.Enum) != 0 {
			t.Error("targetType must stay an open string: more can be configured")
		}
		for _, tt := range activity.DefaultTargetTypes {
			if !strings.Contains(s.Description, "`"+string(tt)+"`") {
				t.Errorf("targetType description does not list default %q", tt)
			}
		}
	}

	limits := []struct {
		name string
		got  any
		want int
	}{
		{"AuthorDetails.fullName maxLength", schema("AuthorDetails").Properties["fullName"].Value.MaxLength, activity.MaxFullNameLen},
		{"AuthorDetails.email maxLength", schema("AuthorDetails").Properties["email"].Value.MaxLength, activity.MaxEmailLen},
		{"AuthorDetailsInput.fullName maxLength", schema("AuthorDetailsInput").Properties["fullName"].Value.MaxLength, activity.MaxFullNameLen},
		{"AuthorDetailsInput.email maxLength", schema("AuthorDetailsInput").Properties["email"].Value.MaxLength, activity.MaxEmailLen},
		{"Activity.sourceDomain maxLength", act.Properties["sourceDomain"].Value.MaxLength, activity.MaxSourceDomainLen},
		{"ActivityInput.sourceDomain maxLength", in.Properties["sourceDomain"].Value.MaxLength, activity.MaxSourceDomainLen},
		{"TargetId maxLength", schema("TargetId").MaxLength, activity.MaxOpaqueTargetID},
		{"ActivityInputBatch maxItems", schema("ActivityInputBatch").MaxItems, activity.MaxBatch},
		{"ActivityInput.timetoLiveForRecord maximum", in.Properties["timetoLiveForRecord"].Value.Max, activity.MaxTimeToLiveDays},
	}
	for _, l := range limits {
		var n float64
		switch v := l.got.(type) {
		case *uint64:
			if v != nil {
				n = float64(*v)
			}
		case *float64:
			if v != nil {
				n = *v
			}
		}
		if n != float64(l.want) {
			t.Errorf("%s = %v, want %d", l.name, n, l.want)
		}
	}
	if !strings.Contains(schema("Data").Description, "64 KiB") || activity.MaxDataBytes != 64<<10 {
		t.Errorf("Data description must state the %d-byte limit", activity.MaxDataBytes)
	}

	errKeys := jsonKeys(t, httpapi.ErrorBody{Errors: map[string][]string{"f": {"m"}}})
	if got := slices.Sorted(mapKeys(schema("Error").Properties)); !slices.Equal(got, slices.Sorted(slices.Values(errKeys))) {
		t.Errorf("Error properties %v, want httpapi.ErrorBody's %v", got, errKeys)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Every activityHistory operation needs the bearer token and documents 401
// with WWW-Authenticate; every response carries x-correlation-id.
func TestSecurityAndHeaders(t *testing.T) {
	t.Parallel()
	doc := load(t, apidocs.YAML())
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			where := method + " " + path
			protected := strings.HasPrefix(path, "/api/v1/activityHistory") || path == "/api/v1/entityEvents"
			if op.Security == nil {
				t.Errorf("%s: security must be explicit", where)
			} else if protected != (len(*op.Security) == 1 && (*op.Security)[0]["bearerAuth"] != nil) {
				t.Errorf("%s: bearerAuth required = %v, want %v", where, !protected, protected)
			}
			if r := op.Responses.Status(401); protected && (r == nil || r.Value.Headers["WWW-Authenticate"] == nil) {
				t.Errorf("%s: 401 with WWW-Authenticate not documented", where)
			}
			if op.Responses.Default() != nil {
				t.Errorf("%s: a default response would let undocumented statuses pass", where)
			}
			for code, r := range op.Responses.Map() {
				h := r.Value.Headers["x-correlation-id"]
				if h == nil || !h.Value.Required {
					t.Errorf("%s %s: x-correlation-id not a required response header", where, code)
				}
			}
			params := append(slices.Clone(item.Parameters), op.Parameters...)
			if !slices.ContainsFunc(params, func(p *openapi3.ParameterRef) bool {
				return p.Value.In == "header" && p.Value.Name == "x-correlation-id" && !p.Value.Required
			}) {
				t.Errorf("%s: optional x-correlation-id request header not documented", where)
			}
		}
	}
}
