//go:build !unix

package txn

import (
	"io/fs"
	"os"
	"time"
)

// staleAge is how old a staging directory must be before it counts as
// stale where there is no lock to tell (see lock_unix.go).
const staleAge = 24 * time.Hour

func tryLock(*os.File) (bool, error) { return true, nil }

func stale(st fs.FileInfo) bool { return time.Since(st.ModTime()) > staleAge }
