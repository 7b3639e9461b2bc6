package formattest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// 7-Zip and libvhdi read VDI, VHD and VHDX with readers of their own, not
// QEMU's, so the format tests use them as second oracles.

// SevenZipHint is how to install 7zz.
const SevenZipHint = "apt-get install 7zip"

// SevenZip returns the path of 7zz.
func SevenZip(t testing.TB) string {
	t.Helper()
	return tooltest.Require(t, "7zz", SevenZipHint)
}

var (
	szSize   = regexp.MustCompile(`(?m)^Size = (\d+)$`)
	szMethod = regexp.MustCompile(`(?m)^Method = (\S+)`)
	szType   = regexp.MustCompile(`(?m)^Type = (\S+)`)
)

// SevenZipList runs `7zz l -slt` on path and returns the archive type, the
// method (Dynamic, Fixed) and the size 7-Zip gives the disk inside.
func SevenZipList(t testing.TB, tool, path string) (typ, method string, size int64) {
	t.Helper()
	out := string(Run(t, tool, "l", "-slt", path))
	ty, m, s := szType.FindStringSubmatch(out), szMethod.FindStringSubmatch(out), szSize.FindStringSubmatch(out)
	if ty == nil || m == nil || s == nil {
		t.Fatalf("7zz l -slt lacks type, method or size:\n%s", out)
	}
	n, err := strconv.ParseInt(s[1], 10, 64)
	if err != nil {
		t.Fatalf("7zz l -slt: size %q: %v", s[1], err)
	}
	return ty[1], m[1], n
}

// SevenZipExtract returns the disk 7-Zip extracts from path.
func SevenZipExtract(t testing.TB, tool, path string) []byte {
	t.Helper()
	var got bytes.Buffer
	cmd := exec.Command(tool, "x", "-so", path)
	cmd.Stdout = &got
	if err := cmd.Run(); err != nil {
		t.Fatalf("7zz x: %v", err)
	}
	return got.Bytes()
}

// Vhdimount returns the path of vhdimount, failing or skipping the test
// when it or FUSE is missing.
func Vhdimount(t testing.TB) string {
	t.Helper()
	tool := tooltest.Require(t, "vhdimount", tooltest.Libvhdi)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		tooltest.Missing(t, "vhdimount needs FUSE: "+err.Error())
	}
	return tool
}

// Mount serves the image at path with vhdimount on a directory beside it
// and returns the path of the disk file it will serve, and vhdimount's
// error output for the test's messages. The disk may not be there yet:
// the caller polls it. The mount is undone when the test ends.
func Mount(t testing.TB, tool, path string) (img string, stderr *bytes.Buffer) {
	t.Helper()
	mnt := filepath.Join(filepath.Dir(path), "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	stderr = new(bytes.Buffer)
	cmd := exec.Command(tool, "-v", path, mnt) // -v: stay in the foreground
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("umount", mnt).Run()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return filepath.Join(mnt, "vhdi1"), stderr
}
