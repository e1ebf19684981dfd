//go:build unix

package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockFile is the data directory's lock: one server at a time may hold it.
const lockFile = "keyward.lock"

// lockDataDir takes an exclusive advisory lock on dir, so that a second
// server on the same data directory refuses to start instead of
// overwriting the first one's files. The lock goes with the process: a
// killed server leaves no stale lock behind. The holder's pid is written
// into the file so the refusal can name it.
func lockDataDir(dir string) (release func() error, err error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("server: opening lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := strings.TrimSpace(string(holder))
			if _, perr := strconv.Atoi(pid); perr != nil {
				pid = "unknown"
			}
			return nil, fmt.Errorf("server: data directory %s is in use by another keyward server (process %s); stop it or choose another --data-dir", dir, pid)
		}
		return nil, fmt.Errorf("server: locking %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() error {
		_ = f.Truncate(0)
		return f.Close() // closing drops the lock
	}, nil
}
