//go:build unix

package txn

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// tryLock takes an exclusive lock on the open directory f without
// waiting. The kernel drops it when the process dies, however it dies,
// which is what tells a stale staging directory from a live one.
func tryLock(f *os.File) (bool, error) {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// stale reports whether an unlocked staging directory may be removed: on
// Unix, the lock alone says so.
func stale(fs.FileInfo) bool { return true }
