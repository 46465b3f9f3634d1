package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/council/activityhistory/apitest"
	"github.com/council/activityhistory/command/ingest"
	"github.com/council/activityhistory/internal/testkit/natstest"
)

func startNATS(t *testing.T) *server.Server {
	t.Helper()
	return natstest.Server(t, t.TempDir(), 0)
}

// startIngesting runs the service on an external JetStream server with
// ingest on, and a publisher to that server.
func startIngesting(t *testing.T) (*server.Server, *service, *publisher) {
	t.Helper()
	ns := startNATS(t)
	env := baseEnv(t.TempDir())
	env["EVENTSTORE_URL"] = ns.ClientURL()
	env["INGEST_ENABLED"] = "true"
	return ns, start(t, env), newPublisher(t, ns.ClientURL())
}

// publisher is a domain service publishing entity events.
type publisher struct {
	t  *testing.T
	js nats.JetStreamContext
}

func newPublisher(t *testing.T, url string, opts ...nats.Option) *publisher {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	return &publisher{t: t, js: js}
}

// publish waits for the consumer to have created the stream.
func (p *publisher) publish(subject string, ev map[string]any) {
	p.t.Helper()
	b, err := json.Marshal(ev)
	if err != nil {
		p.t.Fatal(err)
	}
	checkFor(p.t, 10*time.Second, func() error {
		_, err := p.js.Publish(subject, b)
		return err
	})
}

func entityEvent(eventType, entity string, user any) map[string]any {
	return map[string]any{
		"id": uuid.NewString(), "eventType": eventType, "sourceDomain": "Housing", "sourceSystem": "TenureAPI",
		"version": "v1", "correlationId": uuid.NewString(), "dateTime": "2021-02-19T15:12:00.5Z",
		"user": user, "entityId": entity,
		"eventData": map[string]any{"oldData": map[string]any{"a": 1}, "newData": map[string]any{"a": 2, "b": "x"}},
	}
}

var officer = map[string]any{"name": "Ann Officer", "email": "ann@example.org"}

// expectedActivity is the exact JSON of the activity an event becomes,
// in the pilot's property order, with its source last.
func expectedActivity(ev map[string]any, typ, targetType, author string) string {
	return fmt.Sprintf(`{"id":%q,"targetId":%q,"type":%q,"targetType":%q,"createdAt":"2021-02-19T15:12:00.5Z",`+
		`"timetoLiveForRecord":0,"oldData":{"a":1},"newData":{"a":2,"b":"x"},"authorDetails":%s,"sourceDomain":"Housing",`+
		`"source":{"eventId":%q,"eventType":%q,"sourceSystem":"TenureAPI","correlationId":%q}}`,
		ingest.ActivityID(ev["id"].(string)), ev["entityId"], typ, targetType, author,
		ev["id"], ev["eventType"], ev["correlationId"])
}

// getActivity polls GET /api/v1/activityHistory/{id} until it is found.
func getActivity(t *testing.T, chk *apitest.Checker, base, token, id string) string {
	t.Helper()
	var body []byte
	checkFor(t, 15*time.Second, func() error {
		var resp *http.Response
		resp, body = chk.Do(t, nil, request(t, http.MethodGet, base+"/api/v1/activityHistory/"+id, token, nil))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d", id, resp.StatusCode)
		}
		return nil
	})
	return string(body)
}

// metric reads one sample of the service's /metrics.
func metric(t *testing.T, base, sample string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func waitMetric(t *testing.T, base, sample string, want float64) {
	t.Helper()
	checkFor(t, 15*time.Second, func() error {
		if got := metric(t, base, sample); got != want {
			return fmt.Errorf("%s = %v, want %v", sample, got, want)
		}
		return nil
	})
}

func ingestResult(r string) string {
	return `activityhistory_ingest_messages_total{result="` + r + `"}`
}

// Every event type of the pilot's table, published to JetStream, is read
// back over HTTP as exactly the activity the table says; ignored types
// write nothing; an event without a user is recorded with an empty author.
func TestIngestEveryMappedEventType(t *testing.T) {
	t.Parallel()
	_, s, pub := startIngesting(t)
	chk := apitest.New(t)
	read := mint(t, "readers")

	table := [][3]string{
		{"ContractCreatedEvent", "create", "contract"}, {"AssetCreatedEvent", "create", "asset"},
		{"PersonCreatedEvent", "create", "person"}, {"ContactDetailAddedEvent", "create", "contactDetails"},
		{"TenureCreatedEvent", "create", "tenure"}, {"PersonAddedToTenureEvent", "create", "tenurePerson"},
		{"HousingApplicationCreatedEvent", "create", "housingApplication"},
		{"EqualityInformationCreatedEvent", "create", "personEqualityInformation"},
		{"ProcessStartedEvent", "create", "process"}, {"NoteCreatedAgainstProcessEvent", "create", "process"},
		{"ProcessStartedAgainstTenureEvent", "create", "tenure"}, {"ProcessStartedAgainstPersonEvent", "create", "person"},
		{"CautionaryAlertCreatedEvent", "create", "cautionaryAlert"},
		{"ContractUpdatedEvent", "update", "contract"}, {"AssetUpdatedEvent", "update", "asset"},
		{"PersonUpdatedEvent", "update", "person"}, {"TenureUpdatedEvent", "update", "tenure"},
		{"HousingApplicationUpdatedEvent", "update", "housingApplication"},
		{"EqualityInformationUpdatedEvent", "update", "personEqualityInformation"},
		{"ProcessUpdatedEvent", "update", "process"}, {"ProcessClosedEvent", "update", "process"},
		{"ProcessCompletedEvent", "update", "process"}, {"PatchOrAreaResEntityEditedEvent", "update", "patchesAndAreas"},
		{"ContactDetailDeletedEvent", "delete", "contactDetails"}, {"PersonRemovedFromTenureEvent", "delete", "tenurePerson"},
		{"CautionaryAlertEndedEvent", "end", "cautionaryAlert"},
	}
	ignored := []string{"ContactDetailEditedEvent", "NoteCreatedAgainstAssetEvent", "NoteCreatedAgainstTenureEvent", "NoteCreatedAgainstPersonEvent"}
	var ignoredEntities []string
	for _, et := range ignored {
		e := uuid.NewString()
		ignoredEntities = append(ignoredEntities, e)
		pub.publish("entityevents.misc", entityEvent(et, e, officer))
	}
	events := make([]map[string]any, len(table))
	for i, row := range table {
		events[i] = entityEvent(row[0], uuid.NewString(), officer)
		pub.publish("entityevents."+strings.ToLower(row[2]), events[i])
	}
	noUser := entityEvent("TenureUpdatedEvent", uuid.NewString(), nil)
	pub.publish("entityevents.tenure", noUser)

	author := `{"fullName":"Ann Officer","email":"ann@example.org"}`
	for i, row := range table {
		got := getActivity(t, chk, s.url, read, ingest.ActivityID(events[i]["id"].(string)))
		if want := expectedActivity(events[i], row[1], row[2], author); got != want {
			t.Errorf("%s:\n got %s\nwant %s", row[0], got, want)
		}
	}
	got := getActivity(t, chk, s.url, read, ingest.ActivityID(noUser["id"].(string)))
	if want := expectedActivity(noUser, "update", "tenure", `{"fullName":null,"email":null}`); got != want {
		t.Errorf("null user:\n got %s\nwant %s", got, want)
	}

	waitMetric(t, s.url, ingestResult("ignored"), float64(len(ignored)))
	waitMetric(t, s.url, ingestResult("recorded"), float64(len(table)+1))
	waitMetric(t, s.url, `activityhistory_ingest_warnings_total{warning="missing_user"}`, 1)
	for _, e := range ignoredEntities {
		resp, body := chk.Do(t, nil, request(t, http.MethodGet, s.url+"/api/v1/activityHistory?targetId="+e, read, nil))
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("ignored event's target: %d %s", resp.StatusCode, body)
		}
	}
	if n := metric(t, s.url, ingestResult("dead_lettered")); n != 0 {
		t.Errorf("%v dead-lettered", n)
	}
	if !strings.Contains(s.logs.String(), `"warning":"missing_user"`) {
		t.Error("no warning logged for the event without a user")
	}
}

// nullAuthor is how the domain shows an author whose name and email were
// sent as null: what an event without a user must be recorded with.
// An unknown event type is dead-lettered with its reason; dlq replay
// leaves it while the mapping does not know it, and records it (and
// empties the DLQ) once INGEST_MAPPING_FILE maps it.
func TestIngestDeadLetterReplay(t *testing.T) {
	t.Parallel()
	ns, s, pub := startIngesting(t)
	ev := entityEvent("ChargeRaisedEvent", uuid.NewString(), officer)
	pub.publish("entityevents.finance", ev)
	waitMetric(t, s.url, ingestResult("dead_lettered"), 1)
	if !strings.Contains(s.logs.String(), `"reason":"unknown_event_type"`) {
		t.Errorf("no dead-letter log line with the reason:\n%s", s.logs)
	}

	dlq := func(env map[string]string, args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append([]string{"dlq"}, args...), func(k string) string { return env[k] }, &out, io.Discard)
		return out.String(), err
	}
	cli := map[string]string{"EVENTSTORE_URL": ns.ClientURL(), "DATA_DIR": t.TempDir()}
	out, err := dlq(cli, "list")
	if err != nil || !strings.Contains(out, "unknown_event_type") || !strings.Contains(out, ev["id"].(string)) || !strings.Contains(out, "entityevents.finance") {
		t.Fatalf("dlq list: %v\n%s", err, out)
	}
	if out, err := dlq(cli, "list", "--reason", "malformed_json"); err != nil || strings.Contains(out, ev["id"].(string)) {
		t.Errorf("dlq list --reason malformed_json: %v\n%s", err, out)
	}
	if out, err := dlq(cli, "replay", "--all"); err == nil || !strings.Contains(out, "still fails") {
		t.Errorf("replay without a mapping: %v\n%s", err, out)
	}

	mapping := filepath.Join(t.TempDir(), "mapping.txt")
	if err := os.WriteFile(mapping, []byte("# finance\nChargeRaisedEvent  create  account\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli["INGEST_MAPPING_FILE"] = mapping
	if out, err := dlq(cli, "replay", "--all"); err != nil || !strings.Contains(out, "recorded as activity "+ingest.ActivityID(ev["id"].(string))) {
		t.Fatalf("replay with the mapping: %v\n%s", err, out)
	}
	if out, err := dlq(cli, "list"); err != nil || strings.Count(out, "\n") != 1 {
		t.Errorf("the DLQ is not empty after the replay: %v\n%s", err, out)
	}
	want := expectedActivity(ev, "create", "account", `{"fullName":"Ann Officer","email":"ann@example.org"}`)
	if got := getActivity(t, apitest.New(t), s.url, mint(t, "readers"), ingest.ActivityID(ev["id"].(string))); got != want {
		t.Errorf("replayed:\n got %s\nwant %s", got, want)
	}

	// A bad mapping file stops the service at start, naming the line.
	bad := filepath.Join(t.TempDir(), "bad.txt")
	if err := os.WriteFile(bad, []byte("A create person\nB creat person\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env2 := baseEnv(t.TempDir())
	env2["INGEST_MAPPING_FILE"] = bad
	err = run(context.Background(), []string{"serve"}, func(k string) string { return env2[k] }, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), bad+" line 2") {
		t.Errorf("bad mapping file: %v", err)
	}
}

// POST /api/v1/entityEvents records events through the same mapping.
func TestEntityEventsOverHTTP(t *testing.T) {
	t.Parallel()
	s := start(t, baseEnv(t.TempDir()))
	chk := apitest.New(t)
	write, read := mint(t, "writers"), mint(t, "readers")
	created := entityEvent("PersonCreatedEvent", uuid.NewString(), officer)
	ignoredEv := entityEvent("NoteCreatedAgainstPersonEvent", uuid.NewString(), officer)
	body := []map[string]any{created, ignoredEv}

	post := func(body any) (int, string) {
		resp, b := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/entityEvents", write, body))
		return resp.StatusCode, string(b)
	}
	status, got := post(body)
	want := `{"results":[{"eventId":"` + created["id"].(string) + `","result":"recorded","activity":` +
		expectedActivity(created, "create", "person", `{"fullName":"Ann Officer","email":"ann@example.org"}`) +
		`},{"eventId":"` + ignoredEv["id"].(string) + `","result":"ignored","activity":null}]}`
	if status != http.StatusCreated || got != want {
		t.Fatalf("POST: %d\n got %s\nwant %s", status, got, want)
	}
	if status, again := post(body); status != http.StatusOK || again != want {
		t.Errorf("re-POST: %d %s", status, again)
	}
	if got := getActivity(t, chk, s.url, read, ingest.ActivityID(created["id"].(string))); !strings.Contains(want, got) {
		t.Errorf("GET: %s", got)
	}

	unknown := entityEvent("ChargeRaisedEvent", uuid.NewString(), officer)
	status, got = post([]map[string]any{entityEvent("PersonUpdatedEvent", uuid.NewString(), officer), unknown})
	if status != http.StatusBadRequest || !strings.Contains(got, `"[1].eventType":["\"ChargeRaisedEvent\" is not in the mapping (unknown_event_type)"]`) {
		t.Errorf("unknown type: %d %s", status, got)
	}
	resp, _ := chk.Do(t, nil, request(t, http.MethodPost, s.url+"/api/v1/entityEvents", read, created))
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST with a read token: %d", resp.StatusCode)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// With the embedded store, NATS_LISTEN lets publishers in, with the
// credentials it is given and not without.
func TestIngestEmbeddedListen(t *testing.T) {
	t.Parallel()
	addr := freePort(t)
	env := baseEnv(t.TempDir())
	env["INGEST_ENABLED"] = "true"
	env["NATS_LISTEN"] = addr
	env["NATS_USER"] = "publisher"
	env["NATS_PASSWORD"] = "a-publisher-password"
	s := start(t, env)
	if nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("connected without credentials")
	}
	pub := newPublisher(t, "nats://"+addr, nats.UserInfo("publisher", "a-publisher-password"))
	ev := entityEvent("AssetUpdatedEvent", uuid.NewString(), officer)
	pub.publish("entityevents.asset", ev)
	want := expectedActivity(ev, "update", "asset", `{"fullName":"Ann Officer","email":"ann@example.org"}`)
	if got := getActivity(t, apitest.New(t), s.url, mint(t, "readers"), ingest.ActivityID(ev["id"].(string))); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestIngestConfigErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"listen beyond loopback", map[string]string{"NATS_LISTEN": "0.0.0.0:4222"}, "NATS_LISTEN"},
		{"listen with external store", map[string]string{"NATS_LISTEN": "127.0.0.1:4222", "EVENTSTORE_URL": "nats://127.0.0.1:1"}, "embedded event store only"},
		{"user without password", map[string]string{"NATS_LISTEN": "127.0.0.1:4222", "NATS_USER": "u"}, "NATS_PASSWORD"},
		{"ingest without command", map[string]string{"INGEST_ENABLED": "true", "ROLES": "projector"}, "command role"},
		{"esdb without ingest url", map[string]string{"INGEST_ENABLED": "true", "EVENTSTORE_URL": "esdb://localhost:2113"}, "INGEST_URL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := baseEnv(t.TempDir())
			for k, v := range c.env {
				env[k] = v
			}
			_, err := parseServeConfig(nil, func(k string) string { return env[k] }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an error mentioning %q", err, c.want)
			}
		})
	}
}
