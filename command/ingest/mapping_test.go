package ingest_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/council/activityhistory/activity"
	"github.com/council/activityhistory/command/ingest"
)

// pilotTable is REFERENCE.md's table, written out independently of
// mapping.txt so that a mistake in either shows.
var pilotTable = map[string][2]string{
	"ContractCreatedEvent":             {"create", "contract"},
	"AssetCreatedEvent":                {"create", "asset"},
	"PersonCreatedEvent":               {"create", "person"},
	"ContactDetailAddedEvent":          {"create", "contactDetails"},
	"TenureCreatedEvent":               {"create", "tenure"},
	"PersonAddedToTenureEvent":         {"create", "tenurePerson"},
	"HousingApplicationCreatedEvent":   {"create", "housingApplication"},
	"EqualityInformationCreatedEvent":  {"create", "personEqualityInformation"},
	"ProcessStartedEvent":              {"create", "process"},
	"NoteCreatedAgainstProcessEvent":   {"create", "process"},
	"ProcessStartedAgainstTenureEvent": {"create", "tenure"},
	"ProcessStartedAgainstPersonEvent": {"create", "person"},
	"CautionaryAlertCreatedEvent":      {"create", "cautionaryAlert"},
	"ContractUpdatedEvent":             {"update", "contract"},
	"AssetUpdatedEvent":                {"update", "asset"},
	"PersonUpdatedEvent":               {"update", "person"},
	"TenureUpdatedEvent":               {"update", "tenure"},
	"HousingApplicationUpdatedEvent":   {"update", "housingApplication"},
	"EqualityInformationUpdatedEvent":  {"update", "personEqualityInformation"},
	"ProcessUpdatedEvent":              {"update", "process"},
	"ProcessClosedEvent":               {"update", "process"},
	"ProcessCompletedEvent":            {"update", "process"},
	"PatchOrAreaResEntityEditedEvent":  {"update", "patchesAndAreas"},
	"ContactDetailDeletedEvent":        {"delete", "contactDetails"},
	"PersonRemovedFromTenureEvent":     {"delete", "tenurePerson"},
	"CautionaryAlertEndedEvent":        {"end", "cautionaryAlert"},
}

var pilotIgnored = []string{"ContactDetailEditedEvent", "NoteCreatedAgainstAssetEvent", "NoteCreatedAgainstTenureEvent", "NoteCreatedAgainstPersonEvent"}

func TestBuiltinMappingIsThePilots(t *testing.T) {
	t.Parallel()
	m, err := ingest.LoadMapping("", activity.DefaultTargetTypes)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(m.EventTypes()), len(pilotTable)+len(pilotIgnored); got != want {
		t.Errorf("%d event types mapped, want %d: %v", got, want, m.EventTypes())
	}
	for et, want := range pilotTable {
		r, ok := m.Lookup(et)
		if !ok || r.Ignore || string(r.Type) != want[0] || string(r.TargetType) != want[1] {
			t.Errorf("%s → %+v (mapped %v), want %v", et, r, ok, want)
		}
	}
	for _, et := range pilotIgnored {
		if r, ok := m.Lookup(et); !ok || !r.Ignore {
			t.Errorf("%s → %+v (mapped %v), want ignored", et, r, ok)
		}
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mapping.txt")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMappingFile(t *testing.T) {
	t.Parallel()
	targets := append(activity.DefaultTargetTypes, "repairJob")
	p := writeFile(t, "# finance and repairs\n\nChargeRaisedEvent create account\n  PaymentReceivedEvent\tupdate   account  \nRepairRaisedEvent create repairJob\nPersonCreatedEvent ignore\n")
	m, err := ingest.LoadMapping(p, targets)
	if err != nil {
		t.Fatal(err)
	}
	for et, want := range map[string]ingest.Rule{
		"ChargeRaisedEvent":    {Type: "create", TargetType: "account"},
		"PaymentReceivedEvent": {Type: "update", TargetType: "account"},
		"RepairRaisedEvent":    {Type: "create", TargetType: "repairJob"},
		"PersonCreatedEvent":   {Ignore: true}, // overrides the built-in
		"PersonUpdatedEvent":   {Type: "update", TargetType: "person"},
	} {
		if got, ok := m.Lookup(et); !ok || got != want {
			t.Errorf("%s → %+v, want %+v", et, got, want)
		}
	}

	for _, tc := range []struct{ name, text, want string }{
		{"unknown type", "A create person\nB creat person\n", "line 2: activity type \"creat\""},
		{"unknown target", "\n\nA create persons\n", "line 3: target type \"persons\""},
		{"too few", "A create\n", "line 1: want"},
		{"too many", "A ignore person\n", "line 1: \"ignore\" takes no target type"},
		{"four", "A create person x\n", "line 1: want"},
		{"bad name", "A*B create person\n", "line 1: event type \"A*B\""},
		{"repeated", "A create person\n# x\nA update person\n", "line 3: A is already mapped on line 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.text)
			_, err := ingest.LoadMapping(p, targets)
			if err == nil || !strings.Contains(err.Error(), p+" "+tc.want) {
				t.Errorf("error %v, want it to contain %q", err, p+" "+tc.want)
			}
		})
	}
	if _, err := ingest.LoadMapping(filepath.Join(t.TempDir(), "missing"), targets); err == nil {
		t.Error("a missing mapping file was accepted")
	}
}

func newTranslator(t *testing.T) *ingest.Translator {
	t.Helper()
	m, err := ingest.LoadMapping("", activity.DefaultTargetTypes)
	if err != nil {
		t.Fatal(err)
	}
	v, err := activity.NewValidator(activity.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	return ingest.NewTranslator(m, v)
}

func TestTranslate(t *testing.T) {
	t.Parallel()
	tr := newTranslator(t)
	eventID := uuid.NewString()
	entity := uuid.NewString()
	ev := `{"id":"` + strings.ToUpper(eventID) + `","eventType":"PersonUpdatedEvent","sourceDomain":"Person","sourceSystem":"PersonAPI",
		"version":"v1","correlationId":"c-1","dateTime":"2021-02-19T15:12:00.1234567","user":{"name":"Mehdi Kimakhe","email":"mehdi@example.org"},
		"entityId":"` + entity + `","eventData":{"oldData":{"surname":"K"},"newData":{"surname":"Kimakhe"}},"extra":1}`
	got, err := tr.Translate([]byte(ev))
	if err != nil {
		t.Fatal(err)
	}
	wantID := uuid.NewSHA1(uuid.MustParse(ingest.Namespace), []byte(eventID)).String()
	want := activity.Activity{
		ID: wantID, TargetID: entity, Type: "update", TargetType: "person",
		CreatedAt: time.Date(2021, 2, 19, 15, 12, 0, 123456700, time.UTC),
		OldData:   json.RawMessage(`{"surname":"K"}`), NewData: json.RawMessage(`{"surname":"Kimakhe"}`),
		AuthorDetails: activity.Author{FullName: "Mehdi Kimakhe", Email: "mehdi@example.org"}, SourceDomain: "Person",
		Source: &activity.Source{EventID: strings.ToUpper(eventID), EventType: "PersonUpdatedEvent", SourceSystem: "PersonAPI", CorrelationID: "c-1"},
	}
	if got.Activity == nil || !got.Activity.Equal(want) {
		t.Fatalf("got %+v\nwant %+v", got.Activity, want)
	}
	if len(got.Warnings) != 0 {
		t.Errorf("warnings %v", got.Warnings)
	}
	if ingest.ActivityID(eventID) != wantID || ingest.ActivityID("not-a-uuid") == ingest.ActivityID("Not-a-uuid") {
		t.Error("ActivityID: UUIDs are case-folded, other ids are not")
	}

	for _, user := range []string{`"user":null,`, ``, `"user":{},`} {
		ev := `{"id":"e1",` + user + `"eventType":"TenureCreatedEvent","dateTime":"2024-01-01T00:00:00Z","entityId":"` + entity + `"}`
		got, err := tr.Translate([]byte(ev))
		if err != nil {
			t.Fatalf("%s: %v", ev, err)
		}
		if len(got.Warnings) != 1 || got.Warnings[0] != ingest.WarningMissingUser {
			t.Errorf("%s: warnings %v", ev, got.Warnings)
		}
		if got.Activity.OldData != nil || got.Activity.NewData != nil {
			t.Errorf("%s: data %s %s", ev, got.Activity.OldData, got.Activity.NewData)
		}
	}

	if got, err := tr.Translate([]byte(`{"id":"e2","eventType":"NoteCreatedAgainstPersonEvent","entityId":"x"}`)); err != nil || got.Activity != nil {
		t.Errorf("ignored type: %+v, %v", got, err)
	}
}

func TestTranslateRejects(t *testing.T) {
	t.Parallel()
	tr := newTranslator(t)
	entity := uuid.NewString()
	for _, tc := range []struct{ name, event, reason, field string }{
		{"not JSON", `{"id":`, ingest.ReasonMalformed, "body"},
		{"not an object", `[1]`, ingest.ReasonMalformed, "body"},
		{"wrong type", `{"id":1,"eventType":"PersonCreatedEvent","entityId":"x"}`, ingest.ReasonMalformed, "id"},
		{"no id", `{"eventType":"PersonCreatedEvent","entityId":"` + entity + `","dateTime":"2024-01-01T00:00:00Z"}`, ingest.ReasonMissingField, "id"},
		{"no entityId", `{"id":"e","eventType":"PersonCreatedEvent","dateTime":"2024-01-01T00:00:00Z"}`, ingest.ReasonMissingField, "entityId"},
		{"no dateTime", `{"id":"e","eventType":"PersonCreatedEvent","entityId":"` + entity + `"}`, ingest.ReasonMissingField, "dateTime"},
		{"unknown type", `{"id":"e","eventType":"ChargeRaisedEvent","entityId":"` + entity + `","dateTime":"2024-01-01T00:00:00Z"}`, ingest.ReasonUnknownType, "eventType"},
		{"bad entityId", `{"id":"e","eventType":"PersonCreatedEvent","entityId":"nope","dateTime":"2024-01-01T00:00:00Z"}`, ingest.ReasonInvalid, "entityId"},
		{"bad dateTime", `{"id":"e","eventType":"PersonCreatedEvent","entityId":"` + entity + `","dateTime":"yesterday"}`, ingest.ReasonInvalid, "dateTime"},
		{"bad data", `{"id":"e","eventType":"PersonCreatedEvent","entityId":"` + entity + `","dateTime":"2024-01-01T00:00:00Z","eventData":{"newData":[1]}}`, ingest.ReasonInvalid, "eventData.newData"},
		{"bad email", `{"id":"e","eventType":"PersonCreatedEvent","entityId":"` + entity + `","dateTime":"2024-01-01T00:00:00Z","user":{"email":"x"}}`, ingest.ReasonInvalid, "user.email"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tr.Translate([]byte(tc.event))
			rej, ok := err.(*ingest.Rejection)
			if !ok || rej.Reason != tc.reason || rej.Fields[tc.field] == nil {
				t.Errorf("got %v, want %s on %s", err, tc.reason, tc.field)
			}
		})
	}
}
