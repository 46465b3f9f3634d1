package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/council/activityhistory/auth"
)

// Groups of the bench's token, configured on the service.
const (
	readGroup  = "bench-read"
	writeGroup = "bench-write"
)

func mintToken(secret string) (string, error) {
	return auth.Mint([]byte(secret), auth.MintClaims{
		Subject: "bench", Name: "Bench", Email: "bench@example.org",
		Groups: []string{readGroup, writeGroup}, TTL: 12 * time.Hour,
	}, time.Now())
}

// freePort returns a loopback port nothing listens on right now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// redisServer is the run's own redis-server.
type redisServer struct {
	cmd    *exec.Cmd
	port   int
	client *redis.Client
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	if err := lookTool("redis-server"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	s := &redisServer{cmd: cmd, port: port,
		client: redis.NewClient(&redis.Options{Addr: loopback(port), ReadTimeout: time.Minute})}
	deadline := time.Now().Add(10 * time.Second)
	for s.client.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on port %d did not start; see %s", port, filepath.Join(dir, "redis.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

func (s *redisServer) url() string { return "redis://" + loopback(s.port) + "/0" }

// usedMemory is INFO memory's used_memory.
func (s *redisServer) usedMemory(ctx context.Context) (int64, error) {
	info, err := s.client.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

func (s *redisServer) stop() {
	_ = s.client.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

// service is one process of the binary under test.
type service struct {
	name string
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	done chan struct{}
	err  error
}

// serviceOpts are the settings that differ between the run's services.
type serviceOpts struct {
	name    string
	dataDir string
	redis   bool   // Redis read model (else in memory)
	prefix  string // REDIS_PREFIX
	roles   string
	sync    string // EVENTSTORE_SYNC
}

func (r *run) startService(ctx context.Context, o serviceOpts) (*service, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(r.cfg.WorkDir, o.name+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"HTTP_ADDR=127.0.0.1:" + strconv.Itoa(port),
		"DATA_DIR=" + o.dataDir,
		"AUTH_JWT_SECRET=" + r.secret,
		"AUTH_READ_GROUPS=" + readGroup,
		"AUTH_WRITE_GROUPS=" + writeGroup,
		"CURSOR_SECRET=" + r.cursor,
		"EVENTSTORE_SYNC=" + or(o.sync, "default"),
		"ROLES=" + or(o.roles, "command,query,projector"),
	}
	for _, k := range []string{"GOMEMLIMIT", "GOGC"} { // the runtime's own knobs, to compare settings
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	if r.cfg.DependencyTimeout != "" {
		env = append(env, "DEPENDENCY_TIMEOUT="+r.cfg.DependencyTimeout)
	}
	if o.redis {
		env = append(env, "REDIS_URL="+r.redis.url(), "REDIS_PREFIX="+o.prefix)
	}
	cmd := exec.Command(r.cfg.Bin, "serve")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", r.cfg.Bin, err)
	}
	s := &service{name: o.name, cmd: cmd, base: "http://" + loopback(port), done: make(chan struct{})}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	r.procs = append(r.procs, s)
	return s, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// waitReady polls /readyz; readiness comes once the read model has caught
// up with the store.
func (s *service) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("%s exited: %v", s.name, s.err)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if resp, err := http.Get(s.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", s.name, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rss returns the resident set size and its peak, in bytes.
func (s *service) rss() (cur, peak int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if k == "VmRSS" {
			cur = kb << 10
		} else {
			peak = kb << 10
		}
	}
	return cur, peak, sc.Err()
}

// stop ends the process gracefully, killing it if it does not go.
func (s *service) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
