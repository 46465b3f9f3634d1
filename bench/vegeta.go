package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// VegetaModule is the load generator `make bench` installs: a module path
// and version known to resolve on the Go module proxy.
const VegetaModule = "github.com/tsenart/vegeta/v12@v12.13.0"

// InstallVegeta puts the vegeta binary into dir (go install) unless it is
// there already, and returns its path.
func InstallVegeta(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "vegeta")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "install", VegetaModule)
	// Outside any module so that the project's go.mod is not consulted.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOBIN="+abs, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", VegetaModule, err, out)
	}
	return bin, nil
}

// attack is one vegeta run.
type attack struct {
	name    string
	workers int // concurrent connections; 0 with rate
	rate    int // requests/s; 0 = as fast as the workers go
	dur     time.Duration
	// next returns the i-th request; the same one is reused for every
	// request when fixed is set.
	next  func(i int) request
	fixed bool
}

type request struct {
	method, url string
	body        []byte
}

// vegetaTarget is vegeta's JSON target format.
type vegetaTarget struct {
	Method string              `json:"method"`
	URL    string              `json:"url"`
	Body   string              `json:"body,omitempty"`
	Header map[string][]string `json:"header"`
}

// result is what the service did in one attack.
type result struct {
	Requests   int            `json:"requests"`
	Throughput float64        `json:"throughput"` // successful requests/s
	Success    float64        `json:"success"`
	Status     map[string]int `json:"status_codes"`
	Errors     []string       `json:"errors"`
	Latencies  struct {
		P50  int64 `json:"50th"`
		P99  int64 `json:"99th"`
		Mean int64 `json:"mean"`
		Max  int64 `json:"max"`
	} `json:"latencies"`
}

func (res result) p50() time.Duration { return time.Duration(res.Latencies.P50) }
func (res result) p99() time.Duration { return time.Duration(res.Latencies.P99) }

// failed counts requests that did not get a 2xx.
func (res result) failed() int {
	n := 0
	for code, c := range res.Status {
		if len(code) != 3 || code[0] != '2' {
			n += c
		}
	}
	return n
}

// ok counts requests that got a 2xx.
func (res result) ok() int { return res.Requests - res.failed() }

// vegeta runs a, feeding it targets through a pipe, and returns vegeta's
// report of it.
func (r *run) vegeta(ctx context.Context, a attack) (result, error) {
	out := filepath.Join(r.cfg.WorkDir, "vegeta-"+a.name+".bin")
	// -max-body=0: vegeta otherwise keeps every response body and encodes
	// it into its results file, which costs it more CPU per page than the
	// service spends serving the page, on the cores they share. It still
	// reads each body to the end.
	args := []string{"attack", "-format=json", "-duration=" + a.dur.String(), "-timeout=30s",
		"-max-body=0", "-output=" + out}
	if a.rate > 0 {
		args = append(args, "-rate="+strconv.Itoa(a.rate)+"/s", "-max-workers=1024")
	} else {
		w := strconv.Itoa(a.workers)
		args = append(args, "-rate=0", "-workers="+w, "-max-workers="+w)
	}
	if !a.fixed {
		args = append(args, "-lazy")
	}
	cmd := exec.CommandContext(ctx, r.cfg.Vegeta, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("vegeta: %w", err)
	}
	header := map[string][]string{
		"Authorization": {"Bearer " + r.token},
		"Content-Type":  {"application/json"},
	}
	go func() {
		// vegeta stops reading when its duration is over; the broken pipe
		// ends this writer.
		defer in.Close()
		w := bufio.NewWriterSize(in, 1<<16)
		enc := json.NewEncoder(w)
		for i := 0; ; i++ {
			q := a.next(i)
			t := vegetaTarget{Method: q.method, URL: q.url, Header: header}
			if q.body != nil {
				t.Body = base64.StdEncoding.EncodeToString(q.body)
			}
			if enc.Encode(t) != nil || a.fixed {
				break
			}
		}
		_ = w.Flush()
	}()
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("vegeta attack %s: %w: %s", a.name, err, stderr.Bytes())
	}
	rep, err := exec.CommandContext(ctx, r.cfg.Vegeta, "report", "-type=json", out).Output()
	if err != nil {
		return result{}, fmt.Errorf("vegeta report %s: %w", a.name, err)
	}
	var res result
	if err := json.Unmarshal(rep, &res); err != nil {
		return result{}, fmt.Errorf("vegeta report %s: %w", a.name, err)
	}
	if res.Requests == 0 {
		return res, fmt.Errorf("vegeta %s: no request was sent", a.name)
	}
	if res.ok() == 0 {
		return res, fmt.Errorf("vegeta %s: no request succeeded: %v %v", a.name, res.Status, res.Errors)
	}
	if res.failed() > 0 {
		r.logf("%s: %d of %d requests failed: %v %v", a.name, res.failed(), res.Requests, res.Status, res.Errors)
	}
	_ = os.Remove(out)
	return res, nil
}

// errNoTool says a command the run needs is missing.
var errNoTool = errors.New("not installed")

func lookTool(name string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("%s: %w", name, errNoTool)
	}
	return nil
}
