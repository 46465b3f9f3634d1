//go:build unix

package natsjs

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ErrDirLocked is returned by Open when another process holds the embedded
// store's data dir: two servers writing one dir lose acknowledged writes.
var ErrDirLocked = errors.New("data dir is in use by another process")

// lockFile is the file locked in the data dir; it holds the holder's pid.
const lockFile = "LOCK"

// dirLock is an exclusive flock(2) on a data dir. The kernel releases it
// when the process ends, however it ends, so a crash leaves no stale lock.
type dirLock struct{ f *os.File }

// lockDir takes the lock of dir, at once or not at all.
func lockDir(dir string) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := "another process"
			if b, err := os.ReadFile(path); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
					holder = "process " + strconv.Itoa(pid)
				}
			}
			abs, _ := filepath.Abs(dir)
			return nil, fmt.Errorf("%w: %s is locked by %s (a running serve?); stop it, or use another DATA_DIR",
				ErrDirLocked, cmp.Or(abs, dir), holder)
		}
		return nil, fmt.Errorf("lock data dir %s: %w", dir, err)
	}
	// The pid is only for the message above: the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// release unlocks; a nil lock is a no-op.
func (l *dirLock) release() {
	if l == nil || l.f == nil {
		return
	}
	_ = syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
	_ = l.f.Close()
	l.f = nil
}
