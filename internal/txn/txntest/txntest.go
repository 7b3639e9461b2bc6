// Package txntest helps test transactions: it snapshots a directory tree,
// so tests can check that a failed one left it exactly as it was, and
// makes real faults (an immutable file, a full filesystem).
package txntest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Snapshot lists every entry under dir, one line each, with its type,
// permission bits and, for a file, its size and SHA-256; for a symlink, its
// target. Two equal snapshots mean equal trees.
func Snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", rel, st.Mode())
		switch {
		case st.Mode().IsRegular():
			fmt.Fprintf(&b, " %d", st.Size())
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " %x", sha256.Sum256(data))
		case st.Mode()&fs.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", dir, err)
	}
	return b.String()
}

// Immutable makes path immutable with chattr +i, which makes renames over
// it (and into it, for a directory) fail even for root, until the test
// ends. The test is skipped when that is not possible (no chattr, not root
// or no CAP_LINUX_IMMUTABLE, a filesystem without the flag).
func Immutable(t testing.TB, path string) {
	t.Helper()
	chattr, err := exec.LookPath("chattr")
	if err != nil {
		t.Skip("chattr not found (apt-get install e2fsprogs): cannot make a rename fail for root")
	}
	if out, err := exec.Command(chattr, "+i", path).CombinedOutput(); err != nil {
		t.Skipf("chattr +i %s: %v: %s (needs root on a filesystem with the immutable flag)", path, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command(chattr, "-i", path).CombinedOutput(); err != nil {
			t.Errorf("chattr -i %s: %v: %s", path, err, out)
		}
	})
}

// Tmpfs mounts a tmpfs of size bytes at a new directory and returns it;
// it is unmounted when the test ends. The test is skipped when mounting is
// not possible (not root, no CAP_SYS_ADMIN).
func Tmpfs(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs to fill the disk needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s (needs CAP_SYS_ADMIN)", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}
