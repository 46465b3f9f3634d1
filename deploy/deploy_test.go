// Package deploy_test keeps the deployment material honest: the files parse,
// set only settings the binary reads, probe endpoints it serves, and chart
// and alert on metrics it registers.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/council/activityhistory/apidocs"
	"github.com/council/activityhistory/eventstore/natsjs"
	"github.com/council/activityhistory/httpapi"
	"github.com/council/activityhistory/projection"
)

// The test runs in deploy/; the module root is its parent.
const root = ".."

func TestYAMLAndJSONFilesParse(t *testing.T) {
	t.Parallel()
	var yamlFiles, jsonFiles int
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch filepath.Ext(path) {
		case ".yaml", ".yml":
			yamlFiles++
			if docs := yamlDocs[map[string]any](t, path); len(docs) == 0 {
				t.Errorf("%s: no YAML document", path)
			}
		case ".json":
			jsonFiles++
			var v map[string]any
			if err := json.Unmarshal(readFile(t, path), &v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Guards against a walk that silently finds nothing.
	if yamlFiles < 10 || jsonFiles < 1 {
		t.Errorf("found %d YAML and %d JSON files under deploy/, want at least 10 and 1", yamlFiles, jsonFiles)
	}
}

func TestEnvVarsAreKnownToTheBinary(t *testing.T) {
	t.Parallel()
	known := knownEnv(t)
	// Read by the Go runtime, not by the service's config.
	runtimeEnv := []string{"GOMEMLIMIT", "GOGC", "GOMAXPROCS", "GODEBUG", "GOTRACEBACK"}
	check := func(where string, names []string) {
		t.Helper()
		if len(names) == 0 {
			t.Errorf("%s: no environment variables found; is the parser still right?", where)
		}
		for _, n := range names {
			if !known[n] && !slices.Contains(runtimeEnv, n) {
				t.Errorf("%s sets %s, which cmd/activityhistory/config.go does not read", where, n)
			}
		}
	}

	k := loadKustomization(t)
	for _, o := range k.objects {
		switch o.Kind {
		case "ConfigMap":
			check(o.Kind+" "+o.Metadata.Name, slices.Collect(maps.Keys(o.Data)))
		case "Secret":
			check(o.Kind+" "+o.Metadata.Name, append(slices.Collect(maps.Keys(o.StringData)), slices.Collect(maps.Keys(o.Data))...))
		case "Deployment":
			for _, c := range o.Spec.Template.Spec.Containers {
				var names []string
				for _, e := range c.Env {
					names = append(names, e.Name)
				}
				check("Deployment "+o.Metadata.Name, names)
			}
		}
	}

	compose := loadCompose(t)
	for name, svc := range compose.Services {
		if !svc.isApp() {
			continue // NATS and Redis
		}
		env := svc.env(t, name)
		check("docker-compose service "+name, slices.Collect(maps.Keys(env)))
	}

	var dockerEnv []string
	for _, line := range dockerfile(t) {
		if rest, ok := strings.CutPrefix(line, "ENV "); ok {
			for _, kv := range strings.Fields(rest) {
				name, _, _ := strings.Cut(kv, "=")
				dockerEnv = append(dockerEnv, name)
			}
		}
	}
	check("Dockerfile", dockerEnv)
}

// knownEnv reads the variable names bound in config.go and ingest.go, such as
// e.str(&c.HTTPAddr, "http-addr", "HTTP_ADDR", ...).
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	src := readFile(t, filepath.Join(root, "cmd", "activityhistory", "config.go"))
	src = append(src, readFile(t, filepath.Join(root, "cmd", "activityhistory", "ingest.go"))...)
	re := regexp.MustCompile(`e\.(?:str|list|boolean|integer|duration)\(&c\.\w+, "[^"]*", "([A-Z0-9_]+)"`)
	known := map[string]bool{}
	for _, m := range re.FindAllSubmatch(src, -1) {
		known[string(m[1])] = true
	}
	// The README lists 23; fewer means the regexp no longer matches the code.
	for _, must := range []string{"ROLES", "HTTP_ADDR", "EVENTSTORE_URL", "REDIS_URL", "CURSOR_SECRET", "AUTH_JWT_SECRET"} {
		if !known[must] {
			t.Fatalf("config.go: %s not found by %v; found %v", must, re, sorted(known))
		}
	}
	if len(known) < 20 {
		t.Fatalf("config.go: only %d variables found: %v", len(known), sorted(known))
	}
	return known
}

func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	k := loadKustomization(t)
	paths := openAPIPaths(t)
	dockerUID := dockerUser(t)

	configs := map[string]map[string]string{} // ConfigMap and Secret name → keys
	var deployments, services, pdbs []object
	for _, o := range k.objects {
		if o.Metadata.Namespace != "" {
			t.Errorf("%s %s: sets namespace %q; the manifests are namespace-agnostic", o.Kind, o.Metadata.Name, o.Metadata.Namespace)
		}
		switch o.Kind {
		case "ConfigMap":
			configs["ConfigMap/"+o.Metadata.Name] = o.Data
		case "Secret":
			configs["Secret/"+o.Metadata.Name] = o.StringData
			for key, v := range o.StringData {
				// A template: nothing the service would accept as a secret.
				if len(v) >= 32 {
					t.Errorf("Secret %s: %s holds a %d-byte value; keep a placeholder the service refuses (< 32 bytes)", o.Metadata.Name, key, len(v))
				}
			}
		case "Deployment":
			deployments = append(deployments, o)
		case "Service":
			services = append(services, o)
		case "PodDisruptionBudget":
			pdbs = append(pdbs, o)
		}
	}

	roles := map[string]object{}
	for _, d := range deployments {
		name := d.Metadata.Name
		pod := d.Spec.Template.Spec
		if !labelsMatch(d.selector(), d.Spec.Template.Metadata.Labels) {
			t.Errorf("Deployment %s: selector %v does not match its pod labels %v", name, d.selector(), d.Spec.Template.Metadata.Labels)
		}
		if len(pod.Containers) != 1 {
			t.Fatalf("Deployment %s: %d containers, want 1", name, len(pod.Containers))
		}
		c := pod.Containers[0]
		env := map[string]string{}
		for _, ref := range c.EnvFrom {
			var key string
			switch {
			case ref.ConfigMapRef != nil:
				key = "ConfigMap/" + ref.ConfigMapRef.Name
			case ref.SecretRef != nil:
				key = "Secret/" + ref.SecretRef.Name
			}
			data, ok := configs[key]
			if !ok {
				t.Errorf("Deployment %s: envFrom %s is not in kustomization.yaml", name, key)
			}
			for k, v := range data {
				env[k] = v
			}
		}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}

		role := env["ROLES"]
		if !slices.Contains([]string{"command", "query", "projector"}, role) {
			t.Errorf("Deployment %s: ROLES=%q, want exactly one of command, query, projector", name, role)
		} else if _, dup := roles[role]; dup {
			t.Errorf("Deployment %s: a second Deployment for role %s", name, role)
		}
		roles[role] = d
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		// The projector too: a standby holds off behind the lease.
		if replicas < 2 {
			t.Errorf("Deployment %s: %d replicas, want 2 or more", name, replicas)
		}
		if c.Image != k.Images[0].Name {
			t.Errorf("Deployment %s: image %q, want %q (kustomization.yaml images: sets the real one)", name, c.Image, k.Images[0].Name)
		}
		for _, want := range []string{"EVENTSTORE_URL", "REDIS_URL", "HTTP_ADDR", "DATA_DIR"} {
			if env[want] == "" {
				t.Errorf("Deployment %s: %s is not set", name, want)
			}
		}
		if n, _ := strconv.Atoi(env["EVENTSTORE_REPLICAS"]); n != 3 {
			t.Errorf("Deployment %s: EVENTSTORE_REPLICAS=%q, want 3 on a JetStream cluster", name, env["EVENTSTORE_REPLICAS"])
		}

		// The port the service listens on is the one probed and scraped.
		_, portStr, _ := strings.Cut(env["HTTP_ADDR"], ":")
		port, _ := strconv.Atoi(portStr)
		if !strings.HasPrefix(env["HTTP_ADDR"], "0.0.0.0:") {
			t.Errorf("Deployment %s: HTTP_ADDR=%q, want 0.0.0.0:<port> so that probes and Services reach it", name, env["HTTP_ADDR"])
		}
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
			if p.ContainerPort != port {
				t.Errorf("Deployment %s: containerPort %d, but HTTP_ADDR listens on %d", name, p.ContainerPort, port)
			}
		}
		for _, pr := range []struct {
			kind string
			p    *probe
			path string
		}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}} {
			if pr.p == nil || pr.p.HTTPGet == nil {
				t.Errorf("Deployment %s: no HTTP %s probe", name, pr.kind)
				continue
			}
			if pr.p.HTTPGet.Path != pr.path {
				t.Errorf("Deployment %s: %s probe on %s, want %s", name, pr.kind, pr.p.HTTPGet.Path, pr.path)
			}
			if !paths[pr.p.HTTPGet.Path] {
				t.Errorf("Deployment %s: %s probe path %s is not in the OpenAPI document", name, pr.kind, pr.p.HTTPGet.Path)
			}
			if _, ok := ports[fmt.Sprint(pr.p.HTTPGet.Port)]; !ok {
				t.Errorf("Deployment %s: %s probe port %v is not a named container port %v", name, pr.kind, pr.p.HTTPGet.Port, ports)
			}
		}
		ann := d.Spec.Template.Metadata.Annotations
		if !paths[ann["prometheus.io/path"]] || ann["prometheus.io/port"] != strconv.Itoa(port) || ann["prometheus.io/scrape"] != "true" {
			t.Errorf("Deployment %s: scrape annotations %v do not point at the metrics endpoint on port %d", name, ann, port)
		}

		for _, res := range []string{"cpu", "memory"} {
			if c.Resources.Requests[res] == "" || c.Resources.Limits[res] == "" {
				t.Errorf("Deployment %s: no %s request and limit", name, res)
			}
		}
		if sc := pod.SecurityContext; sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != dockerUID {
			t.Errorf("Deployment %s: pod securityContext wants runAsNonRoot: true and runAsUser: %d (the image's USER)", name, dockerUID)
		}
		sc := c.SecurityContext
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			!slices.Contains(sc.Capabilities.Drop, "ALL") {
			t.Errorf("Deployment %s: container securityContext wants readOnlyRootFilesystem, no privilege escalation, drop ALL", name)
		}
		// With a read-only root, the data dir must be a volume.
		if !slices.ContainsFunc(c.VolumeMounts, func(m volumeMount) bool { return m.MountPath == env["DATA_DIR"] }) {
			t.Errorf("Deployment %s: DATA_DIR %s is not a volume mount, and the root filesystem is read-only", name, env["DATA_DIR"])
		}
	}
	for _, role := range []string{"command", "query", "projector"} {
		if _, ok := roles[role]; !ok {
			t.Errorf("no Deployment with ROLES=%s", role)
		}
	}

	// podFor finds the one Deployment whose pods selector picks.
	podFor := func(what string, selector map[string]string) (object, bool) {
		t.Helper()
		var hits []object
		for _, d := range deployments {
			if len(selector) > 0 && labelsMatch(selector, d.Spec.Template.Metadata.Labels) {
				hits = append(hits, d)
			}
		}
		if len(hits) != 1 {
			t.Errorf("%s: selector %v picks %d Deployments, want 1", what, selector, len(hits))
			return object{}, false
		}
		return hits[0], true
	}
	svcPorts := map[string][]servicePort{}
	for _, s := range services {
		svcPorts[s.Metadata.Name] = s.Spec.Ports
		d, ok := podFor("Service "+s.Metadata.Name, s.selector())
		if !ok {
			continue
		}
		for _, p := range s.Spec.Ports {
			if !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(cp containerPort) bool {
				return fmt.Sprint(p.TargetPort) == cp.Name || fmt.Sprint(p.TargetPort) == strconv.Itoa(cp.ContainerPort)
			}) {
				t.Errorf("Service %s: targetPort %v is not a port of Deployment %s", s.Metadata.Name, p.TargetPort, d.Metadata.Name)
			}
		}
	}
	for _, role := range []string{"command", "query"} {
		if _, ok := svcPorts["activityhistory-"+role]; !ok {
			t.Errorf("no Service activityhistory-%s", role)
		}
	}

	covered := map[string]bool{}
	for _, p := range pdbs {
		d, ok := podFor("PodDisruptionBudget "+p.Metadata.Name, p.selector())
		if !ok {
			continue
		}
		role := d.Spec.Template.Metadata.Labels["app.kubernetes.io/component"]
		covered[role] = true
		replicas := 1
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if p.Spec.MinAvailable == nil || *p.Spec.MinAvailable >= replicas {
			t.Errorf("PodDisruptionBudget %s: minAvailable must be set and below the %d replicas of %s, or no node can be drained", p.Metadata.Name, replicas, d.Metadata.Name)
		}
	}
	if !covered["command"] || !covered["query"] {
		t.Errorf("PodDisruptionBudgets cover %v, want command and query", covered)
	}

	// The examples refer to what the manifests define.
	var ing ingress
	decodeOne(t, filepath.Join("kubernetes", "ingress.example.yaml"), &ing)
	for _, r := range ing.Spec.Rules {
		for _, p := range r.HTTP.Paths {
			b := p.Backend.Service
			if !slices.ContainsFunc(svcPorts[b.Name], func(sp servicePort) bool { return sp.Name == b.Port.Name }) {
				t.Errorf("ingress.example.yaml: backend %s port %q is not a Service port", b.Name, b.Port.Name)
			}
		}
	}
	var route httpRoute
	decodeOne(t, filepath.Join("kubernetes", "httproute.example.yaml"), &route)
	var backends []string
	for _, r := range route.Spec.Rules {
		for _, b := range r.BackendRefs {
			backends = append(backends, b.Name)
			if !slices.ContainsFunc(svcPorts[b.Name], func(sp servicePort) bool { return sp.Port == b.Port }) {
				t.Errorf("httproute.example.yaml: backend %s port %d is not a Service port", b.Name, b.Port)
			}
		}
	}
	if !slices.Contains(backends, "activityhistory-command") || !slices.Contains(backends, "activityhistory-query") {
		t.Errorf("httproute.example.yaml: backends %v, want both roles", backends)
	}
	var pm podMonitor
	decodeOne(t, filepath.Join("kubernetes", "podmonitor.example.yaml"), &pm)
	for _, d := range deployments {
		if !labelsMatch(pm.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Errorf("podmonitor.example.yaml: does not select Deployment %s", d.Metadata.Name)
		}
		for _, ep := range pm.Spec.PodMetricsEndpoints {
			if !paths[ep.Path] || !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].Ports, func(cp containerPort) bool { return cp.Name == ep.Port }) {
				t.Errorf("podmonitor.example.yaml: endpoint %s %s is not served by %s", ep.Port, ep.Path, d.Metadata.Name)
			}
		}
	}
	if lbl := pm.Spec.JobLabel; lbl == "" || deployments[0].Spec.Template.Metadata.Labels[lbl] != "activityhistory" {
		t.Errorf(`podmonitor.example.yaml: jobLabel %q does not give job="activityhistory", which rules.yaml expects`, lbl)
	}
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	compose := loadCompose(t)
	seen := map[string]bool{}
	for name, svc := range compose.Services {
		if !svc.isApp() {
			continue
		}
		env := svc.env(t, name)
		role := env["ROLES"]
		if role != name {
			t.Errorf("compose service %s: ROLES=%q, want %q", name, role, name)
		}
		seen[role] = true
		for _, want := range []string{"EVENTSTORE_URL", "REDIS_URL", "CURSOR_SECRET", "AUTH_JWT_SECRET"} {
			if env[want] == "" {
				t.Errorf("compose service %s: %s not set (did the <<: *env merge fail?)", name, want)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("compose roles %v, want command, query and projector", seen)
	}
}

func TestDockerfileMatchesGoMod(t *testing.T) {
	t.Parallel()
	gomod := readFile(t, filepath.Join(root, "go.mod"))
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	want := string(m[1])
	if tc := regexp.MustCompile(`(?m)^toolchain go(\d+\.\d+)`).FindSubmatch(gomod); tc != nil {
		want = string(tc[1])
	}
	var found bool
	for _, line := range dockerfile(t) {
		if rest, ok := strings.CutPrefix(line, "FROM golang:"); ok {
			found = true
			tag, _, _ := strings.Cut(rest, " ")
			if tag != want && !strings.HasPrefix(tag, want+".") && !strings.HasPrefix(tag, want+"-") {
				t.Errorf("Dockerfile builds with golang:%s, go.mod wants Go %s", tag, want)
			}
		}
	}
	if !found {
		t.Error("Dockerfile: no FROM golang: stage")
	}
}

// TestMetricNamesAreRegistered checks every PromQL expression of the rules
// and the dashboard: each metric is one the service registers (or `up`, or a
// recording rule defined earlier), each label one those metrics carry.
func TestMetricNamesAreRegistered(t *testing.T) {
	t.Parallel()
	q := newPromQL(t)

	rf := loadRules(t)
	var alerts int
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			what := "rules.yaml " + r.Record + r.Alert
			labels, err := q.check(r.Expr)
			if err != nil {
				t.Errorf("%s: %v", what, err)
			}
			if r.Record != "" {
				q.series[r.Record] = labels // even on error: one report, not one per use
				continue
			}
			if err != nil {
				continue
			}
			alerts++
			if r.For != "" && !regexp.MustCompile(`^(\d+[smhdwy])+$`).MatchString(r.For) {
				t.Errorf("%s: for: %q is not a duration", what, r.For)
			}
			if !slices.Contains([]string{"critical", "warning", "info"}, r.Labels["severity"]) || r.Annotations["summary"] == "" {
				t.Errorf("%s: wants a severity label (critical, warning, info) and a summary", what)
			}
			for _, a := range r.Annotations {
				for _, m := range regexp.MustCompile(`\$labels\.(\w+)`).FindAllStringSubmatch(a, -1) {
					if !labels[m[1]] {
						t.Errorf("%s: annotation uses $labels.%s, not a label of %s", what, m[1], sorted(labels))
					}
				}
			}
		}
	}
	if alerts < 6 {
		t.Errorf("rules.yaml: %d alerts, want at least 6", alerts)
	}

	d := loadDashboard(t)
	var exprs int
	for _, p := range d.allPanels() {
		for _, tg := range p.Targets {
			exprs++
			labels, err := q.check(tg.Expr)
			if err != nil {
				t.Errorf("dashboard panel %q: %v", p.Title, err)
				continue
			}
			for _, m := range regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`).FindAllStringSubmatch(tg.LegendFormat, -1) {
				if !labels[m[1]] {
					t.Errorf("dashboard panel %q: legend uses {{%s}}, not a label of its query %v", p.Title, m[1], sorted(labels))
				}
			}
		}
	}
	if exprs < 10 {
		t.Errorf("dashboard: %d queries, want at least 10", exprs)
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		m := regexp.MustCompile(`^label_values\((\w+),\s*(\w+)\)$`).FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("dashboard variable %s: want label_values(metric, label), got %q", v.Name, v.Definition)
			continue
		}
		if labels, err := q.check(m[1]); err != nil || !labels[m[2]] {
			t.Errorf("dashboard variable %s: %s has no label %s (%v)", v.Name, m[1], m[2], err)
		}
	}
}

// TestPromtool runs Prometheus' own checker where it is installed: rule
// syntax, the rules' unit tests (prometheus/rules_test.yaml), and the
// dashboard's queries as PromQL.
func TestPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus); rule syntax and alert unit tests not run")
	}
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "prometheus"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", "rules.yaml")
	run("test", "rules", "rules_test.yaml")

	// Dashboard queries, as recording rules with Grafana's variables filled in.
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$job", ".*")
	var rules []map[string]string
	for _, p := range loadDashboard(t).allPanels() {
		for _, tg := range p.Targets {
			rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", len(rules)), "expr": vars.Replace(tg.Expr)})
		}
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	if err := os.WriteFile(f, b, 0o600); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(f)
	if err != nil {
		t.Fatal(err)
	}
	run("check", "rules", abs)
}

// ---- metrics the service registers ----

type metricInfo struct {
	typ    string // COUNTER, GAUGE, HISTOGRAM, SUMMARY, UNTYPED
	labels []string
}

// recorder registers collectors with a real registry and notes their
// names, labels and, for vectors, types (a vector without children does
// not show in Gather).
type recorder struct {
	reg     *prometheus.Registry
	metrics map[string]metricInfo
	err     error
}

func (r *recorder) Register(c prometheus.Collector) error {
	descName := regexp.MustCompile(`fqName: "([^"]+)"`)
	descLabels := regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
	typ := "UNTYPED"
	switch c.(type) {
	case *prometheus.CounterVec:
		typ = "COUNTER"
	case *prometheus.GaugeVec:
		typ = "GAUGE"
	case *prometheus.HistogramVec:
		typ = "HISTOGRAM"
	case *prometheus.SummaryVec:
		typ = "SUMMARY"
	}
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	for d := range ch {
		s := d.String()
		n := descName.FindStringSubmatch(s)
		l := descLabels.FindStringSubmatch(s)
		if n == nil || l == nil {
			r.err = fmt.Errorf("cannot read metric name and labels from %s", s)
			continue
		}
		var labels []string
		for _, v := range strings.Split(l[1], ",") {
			if v = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(v), "c("), ")"); v != "" {
				labels = append(labels, v)
			}
		}
		r.metrics[n[1]] = metricInfo{typ: typ, labels: labels}
	}
	return r.reg.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(c prometheus.Collector) bool { return r.reg.Unregister(c) }

// registeredMetrics builds what cmd/activityhistory's build() registers:
// the Go and process collectors, the HTTP metrics, the projector's and the
// JetStream store's.
func registeredMetrics(t *testing.T) map[string]metricInfo {
	t.Helper()
	r := &recorder{reg: prometheus.NewRegistry(), metrics: map[string]metricInfo{}}
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	httpapi.NewMetrics(r)
	projection.NewProjector(nil, nil, projection.ProjectorOptions{Registerer: r})
	(&natsjs.Store{}).RegisterMetrics(r)
	if r.err != nil {
		t.Fatal(r.err)
	}
	families, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if m, ok := r.metrics[f.GetName()]; ok {
			m.typ = f.GetType().String()
			r.metrics[f.GetName()] = m
		}
	}
	for _, must := range []string{"activityhistory_http_requests_total", "activityhistory_projector_position", "go_goroutines"} {
		if _, ok := r.metrics[must]; !ok {
			t.Fatalf("%s not registered; registered: %v", must, sorted(r.metrics))
		}
	}
	return r.metrics
}

// ---- a small PromQL reader: names and labels, not full syntax ----

type promQL struct {
	series   map[string]map[string]bool // series name → its label names
	funcs    map[string]bool
	keywords map[string]bool
}

func words(s string) map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.Fields(s) {
		out[w] = true
	}
	return out
}

func newPromQL(t *testing.T) *promQL {
	q := &promQL{
		series: map[string]map[string]bool{},
		funcs: words(`rate irate increase delta idelta deriv changes resets absent absent_over_time
			histogram_quantile sum avg min max count topk bottomk quantile count_values stddev stdvar group
			clamp clamp_min clamp_max abs ceil floor round time timestamp vector scalar label_replace label_join
			avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time
			quantile_over_time predict_linear sort sort_desc`),
		keywords: words(`and or unless bool offset by without on ignoring group_left group_right inf nan`),
	}
	// Added by Prometheus (or common scrape configs) to every series.
	targetLabels := []string{"job", "instance", "namespace", "pod", "container"}
	add := func(name string, labels []string, extra ...string) {
		set := map[string]bool{}
		for _, l := range slices.Concat(labels, targetLabels, extra) {
			set[l] = true
		}
		q.series[name] = set
	}
	for name, m := range registeredMetrics(t) {
		switch m.typ {
		case "HISTOGRAM":
			add(name+"_bucket", m.labels, "le")
			add(name+"_sum", m.labels)
			add(name+"_count", m.labels)
		case "SUMMARY":
			add(name, m.labels, "quantile")
			add(name+"_sum", m.labels)
			add(name+"_count", m.labels)
		default:
			add(name, m.labels)
		}
	}
	add("up", nil)
	return q
}

// check returns the label names the expression's metrics carry, or an
// error naming an unknown metric, function or label.
func (q *promQL) check(expr string) (map[string]bool, error) {
	var (
		reVar      = regexp.MustCompile(`\$(__\w+|\{\w+\}|\w+)`)
		reSelector = regexp.MustCompile(`\{([^{}]*)\}`)
		reMatcher  = regexp.MustCompile(`^\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)`)
		reRange    = regexp.MustCompile(`\[([^\]]*)\]`)
		reDuration = regexp.MustCompile(`^\d+[smhdwy](:\d+[smhdwy])?$|^\d+[smhdwy]:$`)
		reGrouping = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
		reString   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
		reIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	)
	// Grafana variables: a range for $__rate_interval and friends, a
	// plain word elsewhere (they only appear inside label values here).
	expr = reVar.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.HasPrefix(v, "$__") {
			return "5m"
		}
		return "var"
	})
	var used []string // label names matched or grouped on
	var errs []error
	expr = reSelector.ReplaceAllStringFunc(expr, func(sel string) string {
		body := sel[1 : len(sel)-1]
		for strings.TrimSpace(body) != "" {
			m := reMatcher.FindStringSubmatch(body)
			if m == nil {
				errs = append(errs, fmt.Errorf("cannot read label matchers %q", sel))
				break
			}
			used = append(used, m[1])
			if m[2] == "=~" || m[2] == "!~" {
				if _, err := regexp.Compile("^(?:" + m[3] + ")$"); err != nil {
					errs = append(errs, fmt.Errorf("label %s: bad regexp %q: %w", m[1], m[3], err))
				}
			}
			body = body[len(m[0]):]
		}
		return " "
	})
	expr = reRange.ReplaceAllStringFunc(expr, func(r string) string {
		if !reDuration.MatchString(strings.TrimSpace(r[1 : len(r)-1])) {
			errs = append(errs, fmt.Errorf("bad range %s", r))
		}
		return " "
	})
	expr = reGrouping.ReplaceAllStringFunc(expr, func(g string) string {
		inner := reGrouping.FindStringSubmatch(g)[2]
		for _, l := range strings.Split(inner, ",") {
			if l = strings.TrimSpace(l); l != "" {
				used = append(used, l)
			}
		}
		return " "
	})
	expr = reString.ReplaceAllString(expr, " ")

	labels := map[string]bool{}
	var metrics int
	for _, loc := range reIdent.FindAllStringIndex(expr, -1) {
		if loc[0] > 0 {
			if prev := expr[loc[0]-1]; prev == '.' || prev >= '0' && prev <= '9' {
				continue // part of a number such as 0.99 or 1e3
			}
		}
		word := expr[loc[0]:loc[1]]
		rest := strings.TrimLeft(expr[loc[1]:], " \t\n")
		switch {
		case q.keywords[strings.ToLower(word)]:
		case strings.HasPrefix(rest, "("):
			if !q.funcs[word] {
				errs = append(errs, fmt.Errorf("unknown function %s", word))
			}
		default:
			set, ok := q.series[word]
			if !ok {
				errs = append(errs, fmt.Errorf("metric %s is not registered by the service (nor a standard Go/process metric, up, or an earlier recording rule)", word))
				continue
			}
			metrics++
			for l := range set {
				labels[l] = true
			}
		}
	}
	if metrics == 0 && len(errs) == 0 {
		errs = append(errs, errors.New("no metric in the expression"))
	}
	for _, l := range used {
		if !labels[l] {
			errs = append(errs, fmt.Errorf("label %s is not a label of the metrics used %v", l, sorted(labels)))
		}
	}
	return labels, errors.Join(errs...)
}

// ---- file shapes ----

type kustomization struct {
	Resources []string `yaml:"resources"`
	Images    []struct {
		Name string `yaml:"name"`
	} `yaml:"images"`
	objects []object
}

type object struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		// A Deployment's or PDB's {matchLabels: …}, a Service's plain map.
		Selector     map[string]any `yaml:"selector"`
		MinAvailable *int           `yaml:"minAvailable"`
		Ports        []servicePort  `yaml:"ports"`
		Template     struct {
			Metadata struct {
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Spec struct {
				SecurityContext struct {
					RunAsNonRoot *bool `yaml:"runAsNonRoot"`
					RunAsUser    *int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []container `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type matchLabels struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

// selector is the object's label selector, whichever its shape.
func (o *object) selector() map[string]string {
	m := o.Spec.Selector
	if ml, ok := m["matchLabels"].(map[string]any); ok {
		m = ml
	}
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

type servicePort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type volumeMount struct {
	MountPath string `yaml:"mountPath"`
}

type container struct {
	Image string `yaml:"image"`
	Env   []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Ports          []containerPort `yaml:"ports"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []volumeMount `yaml:"volumeMounts"`
}

type ingress struct {
	Spec struct {
		Rules []struct {
			HTTP struct {
				Paths []struct {
					Backend struct {
						Service struct {
							Name string `yaml:"name"`
							Port struct {
								Name string `yaml:"name"`
							} `yaml:"port"`
						} `yaml:"service"`
					} `yaml:"backend"`
				} `yaml:"paths"`
			} `yaml:"http"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

type httpRoute struct {
	Spec struct {
		Rules []struct {
			BackendRefs []struct {
				Name string `yaml:"name"`
				Port int    `yaml:"port"`
			} `yaml:"backendRefs"`
		} `yaml:"rules"`
	} `yaml:"spec"`
}

type podMonitor struct {
	Spec struct {
		JobLabel            string      `yaml:"jobLabel"`
		Selector            matchLabels `yaml:"selector"`
		PodMetricsEndpoints []struct {
			Port string `yaml:"port"`
			Path string `yaml:"path"`
		} `yaml:"podMetricsEndpoints"`
	} `yaml:"spec"`
}

// composeFile holds services as plain maps: go-yaml reports a key that
// overrides one brought in by a merge key (<<: *nats) as a duplicate when
// decoding into a struct, though YAML allows it.
type composeFile struct {
	Services map[string]composeService `yaml:"services"`
}

type composeService map[string]any

func (s composeService) isApp() bool { return s["build"] != nil }

func (s composeService) replicas() int {
	d, _ := s["deploy"].(map[string]any)
	n, _ := strconv.Atoi(fmt.Sprint(d["replicas"]))
	return n
}

// env is the service's environment, a map or a list of K=V.
func (s composeService) env(t *testing.T, name string) map[string]string {
	t.Helper()
	out := map[string]string{}
	switch e := s["environment"].(type) {
	case map[string]any:
		for k, v := range e {
			if k == "<<" {
				t.Fatalf("compose service %s: merge key not resolved", name)
			}
			out[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(fmt.Sprint(kv), "=")
			out[k] = v
		}
	case nil:
	default:
		t.Fatalf("compose service %s: environment is a %T", name, e)
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Record      string            `yaml:"record"`
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type panel struct {
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"` // collapsed rows hold theirs
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
}

type dashboard struct {
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// ---- loading ----

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a (possibly multi-document) file.
func yamlDocs[T any](t *testing.T, path string) []T {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
	var docs []T
	for {
		var doc T
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", path, len(docs)+1, err)
		}
		docs = append(docs, doc)
	}
}

func decodeOne(t *testing.T, path string, v any) {
	t.Helper()
	if err := yaml.Unmarshal(readFile(t, path), v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// loadKustomization reads kustomization.yaml and the objects it lists; every
// other manifest there must be an *.example.yaml.
func loadKustomization(t *testing.T) kustomization {
	t.Helper()
	dir := "kubernetes"
	var k kustomization
	decodeOne(t, filepath.Join(dir, "kustomization.yaml"), &k)
	if len(k.Images) != 1 {
		t.Fatalf("kustomization.yaml: %d images, want 1", len(k.Images))
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		listed := slices.Contains(k.Resources, base)
		example := strings.HasSuffix(base, ".example.yaml")
		if base != "kustomization.yaml" && listed == example {
			t.Errorf("kubernetes/%s: list it in kustomization.yaml resources, or name it *.example.yaml (not both)", base)
		}
	}
	for _, r := range k.Resources {
		k.objects = append(k.objects, yamlDocs[object](t, filepath.Join(dir, r))...)
	}
	return k
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var c composeFile
	decodeOne(t, "docker-compose.yml", &c)
	return c
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	decodeOne(t, filepath.Join("prometheus", "rules.yaml"), &rf)
	return rf
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal(readFile(t, filepath.Join("grafana", "activityhistory.json")), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func dockerfile(t *testing.T) []string {
	t.Helper()
	return strings.Split(string(readFile(t, "Dockerfile")), "\n")
}

// dockerUser is the numeric uid of the image's USER line.
func dockerUser(t *testing.T) int {
	t.Helper()
	for _, line := range dockerfile(t) {
		if rest, ok := strings.CutPrefix(line, "USER "); ok {
			uid, _, _ := strings.Cut(strings.TrimSpace(rest), ":")
			n, err := strconv.Atoi(uid)
			if err != nil {
				t.Fatalf("Dockerfile: USER %s is not numeric; Kubernetes' runAsNonRoot cannot verify a name", rest)
			}
			return n
		}
	}
	t.Fatal("Dockerfile: no USER line")
	return 0
}

func openAPIPaths(t *testing.T) map[string]bool {
	t.Helper()
	var doc struct {
		Paths map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(apidocs.YAML(), &doc); err != nil {
		t.Fatalf("openapi: %v", err)
	}
	out := map[string]bool{}
	for p := range doc.Paths {
		out[p] = true
	}
	return out
}

func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}

func sorted[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
