//go:build !unix

package natsjs

import "errors"

// ErrDirLocked is returned by Open when another process holds the embedded
// store's data dir.
var ErrDirLocked = errors.New("data dir is in use by another process")

type dirLock struct{}

// lockDir refuses: without flock(2) two servers could share a data dir
// and lose acknowledged writes. Use an external JetStream server here.
func lockDir(string) (*dirLock, error) {
	return nil, errors.New("the embedded event store needs a Unix system to lock its data dir; set EVENTSTORE_URL")
}

func (l *dirLock) release() {}
