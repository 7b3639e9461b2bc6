package main

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn/txntest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// TestMain counts the tests skipped for missing tools (tooltest.Run) and
// removes the binary the signal tests share.
func TestMain(m *testing.M) {
	code := tooltest.Run(m)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds the real tinyvm-oci once, for tests that signal or kill it.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "tinyvm-oci-test-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "tinyvm-oci")
		var out []byte
		if out, binErr = exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); binErr != nil {
			binErr = fmt.Errorf("go build: %v: %s", binErr, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// previous fills out with a complete earlier build: raw, qcow2,
// SHA256SUMS, the layout and the manifests.
func previous(t *testing.T, out string) {
	t.Helper()
	if code, _, stderr := cli(t, "build", "-o", out, "--format", "raw,qcow2", "--message", "first build"); code != 0 {
		t.Fatalf("first build: exit %d: %s", code, stderr)
	}
}

// checkSums runs the real sha256sum -c on out's SHA256SUMS.
func checkSums(t *testing.T, out string) {
	t.Helper()
	sum := tooltest.Require(t, "sha256sum", "apt-get install coreutils")
	cmd := exec.Command(sum, "-c", "--strict", "SHA256SUMS")
	cmd.Dir = out
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum -c SHA256SUMS in %s: %v\n%s", out, err, b)
	}
}

// failBuild runs a second build (every format, other bytes) that must
// fail with exit 1 and a one-line error naming want, leaving out exactly
// as it was and its SHA256SUMS true.
func failBuild(t *testing.T, out string, want ...string) {
	t.Helper()
	before := txntest.Snapshot(t, out)
	code, stdout, stderr := cli(t, "build", "-o", out, "--message", "second build")
	if code != 1 || stdout != "" {
		t.Errorf("exit %d, stdout %q; want 1 and nothing", code, stdout)
	}
	if strings.Count(stderr, "\n") != 1 || strings.Contains(stderr, txn.Prefix) || strings.Contains(stderr, ".tmp-") {
		t.Errorf("want one line naming no temp file, got %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q lacks %q", stderr, w)
		}
	}
	t.Logf("failed as it should: %s", strings.TrimSpace(stderr))
	if after := txntest.Snapshot(t, out); after != before {
		t.Errorf("a failed build changed %s:\nbefore:\n%s\nafter:\n%s", out, before, after)
	}
	checkSums(t, out)
}

// TestBuildTransaction: the three failures of issue 12, each after a
// complete earlier build: nothing of the earlier build is replaced.
func TestBuildTransaction(t *testing.T) {
	t.Run("a directory where the vmdk goes", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		os.Mkdir(filepath.Join(out, "512-byte-vm.vmdk"), 0o755)
		failBuild(t, out, filepath.Join(out, "512-byte-vm.vmdk"), "is a directory")
	})

	t.Run("full disk while writing the layout", func(t *testing.T) {
		mnt := txntest.Tmpfs(t, 64<<20)
		out := filepath.Join(mnt, "out")
		previous(t, out)
		// Measure a build like the failing one elsewhere: room for its
		// disks and half of its layout, so the layout step hits ENOSPC.
		trial := t.TempDir()
		if code, _, stderr := cli(t, "build", "-o", trial, "--message", "second build"); code != 0 {
			t.Fatalf("trial build: %s", stderr)
		}
		layout := allocated(t, filepath.Join(trial, "oci"))
		disks := allocated(t, trial) - layout - allocated(t, filepath.Join(trial, "kubevirt"))
		var st syscall.Statfs_t
		if err := syscall.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		used := int64(st.Blocks-st.Bfree) * st.Bsize
		size := used + disks + layout/2
		if b, err := exec.Command("mount", "-o", "remount,size="+strconv.FormatInt(size, 10), mnt).CombinedOutput(); err != nil {
			t.Skipf("remount tmpfs: %v: %s", err, b)
		}
		failBuild(t, out, "no space left on device", "layout")
	})

	t.Run("kubevirt directory that refuses renames, even for root", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		// The disks, SHA256SUMS and the layout are renamed in before the
		// manifests fail: all of them must be put back.
		txntest.Immutable(t, filepath.Join(out, "kubevirt"))
		failBuild(t, out, filepath.Join(out, "kubevirt", "vm.yaml"), "operation not permitted")
	})

	t.Run("kubevirt is a file", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		os.RemoveAll(filepath.Join(out, "kubevirt"))
		os.WriteFile(filepath.Join(out, "kubevirt"), []byte("mine"), 0o644)
		failBuild(t, out, filepath.Join(out, "kubevirt")+" is not a directory")
	})

	t.Run("oci is the user's directory", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		os.WriteFile(filepath.Join(out, "oci", "notes.txt"), []byte("mine"), 0o644)
		failBuild(t, out, filepath.Join(out, "oci"), "notes.txt")
	})

	t.Run("oci is the user's file", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		os.RemoveAll(filepath.Join(out, "oci"))
		os.WriteFile(filepath.Join(out, "oci"), []byte("mine"), 0o644)
		failBuild(t, out, filepath.Join(out, "oci"), "not a directory")
	})

	t.Run("a new directory is not left behind", func(t *testing.T) {
		parent := t.TempDir()
		out := filepath.Join(parent, "dist")
		os.WriteFile(filepath.Join(parent, "dist.keep"), nil, 0o644)
		code, _, _ := cli(t, "build", "-o", out, "--format", "vmdk", "--size", "1000KiB")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		if _, err := os.Lstat(out); err == nil {
			t.Errorf("a failed build left %s", out)
		}
	})

	t.Run("a second build replaces the first", func(t *testing.T) {
		out := t.TempDir()
		previous(t, out)
		os.WriteFile(filepath.Join(out, "kubevirt", "mine.yaml"), []byte("mine"), 0o644)
		if code, _, stderr := cli(t, "build", "-o", out, "--format", "raw,qcow2", "--message", "second build"); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		checkSums(t, out)
		if b, err := os.ReadFile(filepath.Join(out, "kubevirt", "mine.yaml")); err != nil || string(b) != "mine" {
			t.Errorf("the user's kubevirt/mine.yaml: %q, %v", b, err)
		}
	})
}

// allocated is the space dir's files take, as a filesystem counts it.
func allocated(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(p); err == nil && st.Mode().IsRegular() {
			n += diskUsage(st)
		}
		return nil
	})
	return n
}

// TestStaleTemps: a staging directory a killed build left (unlocked) is
// removed by the next build in the same directory; names that only look
// like ours stay.
func TestStaleTemps(t *testing.T) {
	out := t.TempDir()
	stale := filepath.Join(out, txn.Prefix+"0123456789ab")
	os.MkdirAll(filepath.Join(stale, "1"), 0o700)
	os.WriteFile(filepath.Join(stale, "2"), []byte("half a disk"), 0o644)
	// What versions before internal/txn left, beside each output.
	legacy := []string{".512-byte-vm.raw.tmp-123456789", ".SHA256SUMS.tmp-42", ".oci.tmp-987654321", "kubevirt/.vm.yaml.tmp-1"}
	os.Mkdir(filepath.Join(out, "kubevirt"), 0o755)
	for _, l := range legacy {
		os.WriteFile(filepath.Join(out, l), []byte("half"), 0o644)
	}
	users := []string{"tinyvm-oci-tmp-mine", ".tinyvm-oci-tmp", ".tinyvm-oci-tmpfile", "notes" + txn.Prefix,
		".512-byte-vm.raw.tmp-mine", ".notes.txt.tmp-1", "512-byte-vm.raw.tmp-1", "kubevirt/.mine.yaml.tmp-1"}
	for _, u := range users {
		os.WriteFile(filepath.Join(out, u), []byte("mine"), 0o644)
	}
	if code, _, stderr := cli(t, "build", "-o", out, "--format", "raw"); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, p := range append([]string{stale}, legacy...) {
		if _, err := os.Lstat(filepath.Join(out, strings.TrimPrefix(p, out))); err == nil {
			t.Errorf("stale %s survived the next build", p)
		}
	}
	for _, u := range users {
		if b, err := os.ReadFile(filepath.Join(out, u)); err != nil || string(b) != "mine" {
			t.Errorf("the user's %s: %q, %v", u, b, err)
		}
	}
}

// TestOutputModes: files 0644, directories 0755 everywhere in OUT, the
// layout included, whatever the umask.
func TestOutputModes(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dist")
	old := syscall.Umask(0o077)
	code, _, stderr := cli(t, "build", "-o", out, "--format", "raw,qcow2")
	syscall.Umask(old)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	n := 0
	filepath.WalkDir(out, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		st, _ := os.Lstat(p)
		want := fs.FileMode(0o644)
		if d.IsDir() {
			want = fs.ModeDir | 0o755
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", p, st.Mode(), want)
		}
		n++
		return nil
	})
	if n < 12 {
		t.Errorf("only %d entries checked", n)
	}
}

// TestFlagConflicts: flags that would do nothing, values that are wrong
// whether or not their format is built, and an empty -o are usage errors.
func TestFlagConflicts(t *testing.T) {
	sec := filepath.Join(t.TempDir(), "boot.bin")
	b := make([]byte, 512)
	b[510], b[511] = 0x55, 0xAA
	os.WriteFile(sec, b, 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"build", "--sector", sec, "--message", "hi"}, "--message has no effect with --sector"},
		{[]string{"build", "--sector", sec, "--serial", "OK"}, "--serial has no effect with --sector"},
		{[]string{"build", "--sector", sec, "--then", "poweroff"}, "--then has no effect with --sector"},
		{[]string{"build", "--sector", sec, "--timeout", "5s"}, "--timeout has no effect with --sector"},
		{[]string{"build", "--format", "raw", "--vhd-type", "fixed"}, "--vhd-type applies to vhd"},
		{[]string{"build", "--format", "raw", "--vhd-type", "bogus"}, `--vhd-type "bogus": use dynamic or fixed`},
		{[]string{"build", "--format", "raw", "--cluster-size", "1536"}, "power of two"},
		{[]string{"build", "--format", "raw", "--cluster-size", "128KiB"}, "--cluster-size applies to qcow2"},
		{[]string{"build", "--format", "raw", "--qcow2-compress"}, "--qcow2-compress applies to qcow2"},
		{[]string{"build", "--format", "qcow2", "--vmdk-subformat", "streamOptimized"}, "--vmdk-subformat applies to vmdk"},
		{[]string{"build", "--format", "qcow2", "--vmdk-subformat", "flat"}, "monolithicSparse or streamOptimized"},
		{[]string{"build", "--format", "qcow2", "--iso-boot", "floppy"}, "--iso-boot applies to iso"},
		{[]string{"build", "-o", ""}, "--output: give a directory"},
		{[]string{"run", "--vhd-type", "fixed"}, "--vhd-type applies to vhd, which is not built here (raw)"},
		{[]string{"run", "--bus", "cdrom", "--then", "poweroff"}, "--bus cdrom boots only an iso"},
		{[]string{"run", "--bus", "cdrom", "--format", "qcow2"}, "a qcow2 disk on a CD-ROM drive never boots"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			code, stdout, stderr := cli(t, tc.args...)
			first := strings.SplitN(stderr, "\n", 2)[0]
			if code != 2 || stdout != "" || !strings.Contains(first, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2 and %q", code, stdout, stderr, tc.want)
			}
			if names := entries(t, dir); len(names) != 0 {
				t.Errorf("left %v", names)
			}
		})
	}
	// The same values are fine where their format is built.
	out := t.TempDir()
	if code, _, stderr := cli(t, "build", "-o", out, "--format", "qcow2,vhd", "--vhd-type", "fixed", "--cluster-size", "128KiB"); code != 0 {
		t.Errorf("exit %d: %s", code, stderr)
	}
}

// TestSectorNotRegular: a FIFO with no writer and /dev/zero are refused at
// once, as is a file too large to be a sector, instead of blocking or
// growing without end.
func TestSectorNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 1<<20), 0o644)
	for _, tc := range []struct{ path, want string }{
		{fifo, "is a FIFO, not a regular file"},
		{"/dev/zero", "is a character device, not a regular file"},
		{dir, "is a directory, not a regular file"},
		{big, "exactly 512 bytes, got more"},
	} {
		t.Run(filepath.Base(tc.path), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dist")
			type result struct {
				code   int
				stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, _, stderr := cli(t, "build", "-o", out, "--sector", tc.path)
				done <- result{code, stderr}
			}()
			select {
			case r := <-done:
				if r.code != 2 || !strings.Contains(r.stderr, tc.want) || strings.Count(r.stderr, "\n") != 2 {
					t.Errorf("exit %d, stderr %q; want 2 and one line with %q", r.code, r.stderr, tc.want)
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("build --sector %s still running after a minute", tc.path)
			}
			if _, err := os.Lstat(out); err == nil {
				t.Errorf("left %s", out)
			}
		})
	}
}

// TestBuildInterrupted sends SIGINT to the real binary in the middle of a
// slow build (a 250 MiB raw, hashed and put in the layout): it exits 130,
// leaves no temp file and changes nothing of the earlier build.
func TestBuildInterrupted(t *testing.T) {
	bin := binary(t)
	out := t.TempDir()
	previous(t, out)
	before := txntest.Snapshot(t, out)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "build", "-o", out, "--format", "raw,qcow2", "--size", "250MiB")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signal once the build has begun its transaction.
	if !poll(60*time.Second, func() bool { return len(temps(t, out)) > 0 }) {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("no staging directory appeared; stderr %q", stderr.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130; stderr %q", err, stderr.String())
	}
	if !strings.HasPrefix(stderr.String(), "tinyvm-oci: stopped: interrupt") {
		t.Errorf("stderr %q", stderr.String())
	}
	if left := temps(t, out); len(left) > 0 {
		t.Errorf("left %v", left)
	}
	if after := txntest.Snapshot(t, out); after != before {
		t.Errorf("an interrupted build changed %s:\nbefore:\n%s\nafter:\n%s", out, before, after)
	}
}

// temps lists the entries of dir named with the temp prefix.
func temps(t *testing.T, dir string) []string {
	var ts []string
	for _, n := range entries(t, dir) {
		if strings.HasPrefix(n, txn.Prefix) {
			ts = append(ts, n)
		}
	}
	return ts
}

// poll calls cond every 10 ms until it holds or limit passes.
func poll(limit time.Duration, cond func() bool) bool {
	for end := time.Now().Add(limit); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestRunKilled kills run (SIGKILL, which it cannot catch) and interrupts
// it (SIGINT): either way QEMU goes too; on SIGINT run presses the power
// button (again each second, while the guest is still starting), the
// guest powers off, run exits 0 and its temp directory goes; after
// SIGKILL, the next run removes it.
func TestRunKilled(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	bin := binary(t)
	tmp := t.TempDir()
	mine := filepath.Join(tmp, "tinyvm-run-mine") // the old prefix: not ours any more
	os.Mkdir(mine, 0o700)
	start := func(t *testing.T) (*exec.Cmd, int) {
		t.Helper()
		// --then wait with a long timeout: the guest runs until stopped.
		cmd := exec.Command(bin, "run", "--timeout", "10m")
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		var pid int
		if !poll(2*time.Minute, func() bool { pid = childNamed(cmd.Process.Pid, "qemu-system-x86"); return pid != 0 }) {
			t.Fatal("QEMU did not start")
		}
		return cmd, pid
	}
	t.Run("SIGKILL", func(t *testing.T) {
		cmd, pid := start(t)
		if err := cmd.Process.Kill(); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if !poll(time.Minute, func() bool { return !alive(pid) }) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("QEMU (pid %d) outlived the killed run", pid)
		}
		if len(temps(t, tmp)) == 0 {
			t.Errorf("no temp directory left in %s to test the cleanup with", tmp)
		}
	})
	t.Run("SIGINT", func(t *testing.T) {
		cmd, pid := start(t) // also removes what the killed run left
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if code := cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("exit %d, want 0: the guest powers off on the button", code)
		}
		if alive(pid) {
			t.Errorf("QEMU (pid %d) outlived the interrupted run", pid)
		}
		// This run removed what the killed one left, and kept the user's.
		if left := temps(t, tmp); len(left) > 0 {
			t.Errorf("left %v in %s", left, tmp)
		}
		if _, err := os.Stat(mine); err != nil {
			t.Errorf("the user's %s: %v", mine, err)
		}
	})
}

// childNamed finds a child of ppid whose command starts with name.
func childNamed(ppid int, name string) int {
	ds, _ := os.ReadDir("/proc")
	for _, d := range ds {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, p, ok := procStat(pid)
		if ok && p == ppid && strings.HasPrefix(comm, name[:min(len(name), 15)]) {
			return pid
		}
	}
	return 0
}

// alive reports whether pid runs (a zombie, dead but not reaped, does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// procStat reads a process's command name and parent pid.
func procStat(pid int) (string, int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	fields := strings.Fields(s[end+1:])
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err := strconv.Atoi(fields[1])
	return s[open+1 : end], ppid, err == nil
}
