package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// cli runs the command in-process and returns exit code, stdout, stderr.
func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := execute(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// entries lists a directory's names, temp files included.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestBuildDefault(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "build", "-o", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "of 440 bytes used") || !strings.Contains(stderr, "free") || !strings.Contains(stderr, "EFI application: EFI/BOOT/BOOTX64.EFI") {
		t.Errorf("no budget summary on stderr: %q", stderr)
	}
	if !strings.Contains(stdout, filepath.Join(dir, "512-byte-vm.raw")) {
		t.Errorf("stdout does not list the raw file: %q", stdout)
	}
	// Byte-identical across runs.
	dir2 := t.TempDir()
	if code, _, stderr := cli(t, "build", "-o", dir2); code != 0 {
		t.Fatalf("second build: exit %d: %s", code, stderr)
	}
	for _, name := range entries(t, dir) {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(dir2, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between two builds", name)
		}
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if !strings.Contains(string(sums), "  512-byte-vm.raw\n") {
		t.Errorf("SHA256SUMS lacks the raw file: %q", sums)
	}
}

func TestBuildSparse(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := cli(t, "build", "-o", dir, "--format", "raw", "--size", "2TiB")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	st, err := os.Stat(filepath.Join(dir, "512-byte-vm.raw"))
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() != 2<<40 {
		t.Errorf("size %d, want 2 TiB", st.Size())
	}
	if used := diskUsage(st); used > 1<<20 {
		t.Errorf("a 2 TiB raw takes %d bytes on disk, want a sparse file", used)
	}
}

func TestBareSectorWarns(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := cli(t, "build", "-o", dir, "--format", "raw", "--size", "512", "--firmware", "bios")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "warning:") || !strings.Contains(stderr, "virtio") {
		t.Errorf("no warning about the bare 512-byte disk: %q", stderr)
	}
}

// TestBadInput: each mistake gets one clear line, a non-zero exit, and no
// output file, temp files included.
func TestBadInput(t *testing.T) {
	tmp := t.TempDir()
	short := filepath.Join(tmp, "short.bin")
	os.WriteFile(short, make([]byte, 100), 0o644)
	nosig := filepath.Join(tmp, "nosig.bin")
	os.WriteFile(nosig, make([]byte, 512), 0o644)
	readonly := filepath.Join(tmp, "ro")
	os.Mkdir(readonly, 0o555)

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"message too long", []string{"--message", strings.Repeat("x", 500)}, 2, "bytes over the budget"},
		{"non-ASCII message", []string{"--message", "grüß"}, 2, "printable ASCII"},
		{"non-ASCII serial", []string{"--serial", "ok\u00e9"}, 2, "printable ASCII"},
		{"sector too short", []string{"--sector", short}, 2, "exactly 512 bytes, got 100"},
		{"sector without signature", []string{"--sector", nosig}, 2, "0x55 0xAA"},
		{"missing sector file", []string{"--sector", filepath.Join(tmp, "none")}, 1, "no such file"},
		{"size not a multiple", []string{"--size", "1000"}, 2, "not a multiple of 512"},
		{"size garbage", []string{"--size", "big"}, 2, "bad size"},
		{"unknown format", []string{"--format", "qcow3"}, 2, "known formats are raw"},
		{"unknown then", []string{"--then", "nap"}, 2, "wait, poweroff, halt or reboot"},
		{"timeout with halt", []string{"--then", "halt", "--timeout", "5s"}, 2, "only applies to --then wait"},
		{"unknown flag", []string{"--frobnicate"}, 2, "unknown flag"},
		{"unknown iso boot", []string{"--iso-boot", "cd"}, 2, "use noemul or floppy"},
		{"unknown vmdk subformat", []string{"--vmdk-subformat", "flat"}, 2, "monolithicSparse or streamOptimized"},
		{"bad cluster size", []string{"--cluster-size", "1536"}, 2, "power of two"},
		{"vmdk size off the grain", []string{"--format", "vmdk", "--size", "1000KiB"}, 1, "64 KiB grain"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dist")
			code, stdout, stderr := cli(t, append([]string{"build", "-o", out}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q lacks %q", stderr, tt.want)
			}
			first := strings.SplitN(stderr, "\n", 2)[0]
			if !strings.HasPrefix(first, "tinyvm-oci: ") || strings.Contains(stderr, "goroutine") {
				t.Errorf("want a one-line error, got %q", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			if names := entries(t, out); len(names) != 0 {
				t.Errorf("left files behind: %v", names)
			}
		})
	}

	t.Run("unwritable directory", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// root ignores directory permissions; a file in the way of
			// the directory fails for everyone.
			readonly = filepath.Join(tmp, "file")
			os.WriteFile(readonly, nil, 0o644)
		}
		code, _, stderr := cli(t, "build", "-o", filepath.Join(readonly, "sub"))
		if code != 1 || !strings.Contains(stderr, "create output directory") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
}

// TestFailedWriteLeavesNothing: a disk that fails midway (here a directory
// standing where a file goes) leaves no temp file.
func TestFailedWriteLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "512-byte-vm.raw"), 0o755)
	code, _, stderr := cli(t, "build", "-o", dir, "--format", "raw")
	if code != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	for _, n := range entries(t, dir) {
		if n != "512-byte-vm.raw" {
			t.Errorf("left %s behind", n)
		}
	}
}

func TestVersionAndCompletion(t *testing.T) {
	code, stdout, _ := cli(t, "version")
	if code != 0 || !strings.HasPrefix(stdout, "tinyvm-oci ") {
		t.Errorf("version: exit %d, %q", code, stdout)
	}
	code, stdout, _ = cli(t, "completion", "bash")
	if code != 0 || !strings.Contains(stdout, "tinyvm-oci") {
		t.Errorf("completion bash: exit %d", code)
	}
	if code, _, _ := cli(t, "nosuchcommand"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// TestRunBoots runs every format through `run`: the iso as a CD-ROM, the
// ova by booting the VMDK inside the tar in place.
func TestRunBoots(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	for _, f := range formats.Names() {
		t.Run(f, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := execute(ctx, []string{"run", "--then", "poweroff", "--format", f, "--machine", "q35"}, &stdout, &stderr)
			if code != 0 || stdout.String() != "Hello World!\r\n" {
				t.Errorf("run --format %s: exit %d, stdout %q, stderr %q", f, code, stdout.String(), stderr.String())
			}
		})
	}
}

func TestRunWithoutQemu(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	code, _, stderr := cli(t, "run", "--then", "poweroff")
	if code != 1 || !strings.Contains(stderr, "apt-get install qemu-system-x86") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// TestBinary builds the real binary and checks the exit code and the
// single error line a shell user sees.
func TestBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tinyvm-oci")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	cmd := exec.Command(bin, "build", "--size", "7")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v", err)
	}
	if !strings.HasPrefix(stderr.String(), "tinyvm-oci: --size: bad size \"7\"") {
		t.Errorf("stderr %q", stderr.String())
	}
}

// TestBuildManifests: build writes KubeVirt and CDI manifests for the
// given repository that decode strictly into the API types; a VM that
// powers itself off gets runStrategy Once.
func TestBuildManifests(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "build", "-o", dir, "--then", "poweroff", "--image-repo", "127.0.0.1:5000/fixtures/512vm")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, k := range kubevirt.Kinds {
		path := filepath.Join(dir, "kubevirt", string(k)+".yaml")
		if !strings.Contains(stdout, path) {
			t.Errorf("stdout does not list %s", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kubevirt.Decode(b); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
	vm, _ := os.ReadFile(filepath.Join(dir, "kubevirt", "vm.yaml"))
	for _, want := range []string{"runStrategy: Once", "image: 127.0.0.1:5000/fixtures/512vm:qcow2"} {
		if !strings.Contains(string(vm), want) {
			t.Errorf("vm.yaml lacks %q:\n%s", want, vm)
		}
	}
}

// TestSuggestionOnItsOwnLine: the error is one line; cobra's "did you
// mean" suggestion follows on a line of its own.
func TestSuggestionOnItsOwnLine(t *testing.T) {
	code, _, stderr := cli(t, "biuld")
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if code != 2 || len(lines) != 3 {
		t.Fatalf("exit %d, stderr %q: want exit 2 and three lines", code, stderr)
	}
	if lines[0] != `tinyvm-oci: unknown command "biuld" for "tinyvm-oci"` || lines[1] != "Did you mean: tinyvm-oci build?" {
		t.Errorf("stderr %q", stderr)
	}
}

// TestBuildNextSteps: build ends with what to do next, on stderr only
// (stdout stays the list of paths); -q leaves it out.
func TestBuildNextSteps(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := cli(t, "build", "-o", dir, "--format", "raw,qcow2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"next: boot it:  tinyvm-oci run " + filepath.Join(dir, "512-byte-vm.qcow2"),
		"push it:  tinyvm-oci push --all REGISTRY/REPO",
		"kubectl apply -f " + filepath.Join(dir, "kubevirt", "vm.yaml"),
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stdout, "next:") {
		t.Errorf("the hint went to stdout:\n%s", stdout)
	}
	_, _, stderr = cli(t, "build", "-q", "-o", dir, "--format", "raw")
	if strings.Contains(stderr, "next:") {
		t.Errorf("-q still prints the hint:\n%s", stderr)
	}
}

// TestFirmwareBadInput: the firmware, architecture and size choices that
// cannot work are usage errors, one line saying what is allowed, and
// nothing is written.
func TestFirmwareBadInput(t *testing.T) {
	sectorFile := filepath.Join(t.TempDir(), "boot.bin")
	own := make([]byte, 512)
	own[510], own[511] = 0x55, 0xAA
	if err := os.WriteFile(sectorFile, own, 0o644); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 200)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--firmware", "uefi", "--sector", sectorFile}, "--sector is your own BIOS boot sector, which cannot carry the EFI applications; use --firmware bios"},
		{[]string{"--firmware", "coreboot"}, `bad --firmware "coreboot": use bios, uefi or bios,uefi`},
		{[]string{"--arch", "riscv64"}, `bad --arch "riscv64": use amd64, arm64 or amd64,arm64`},
		{[]string{"--firmware", "bios", "--arch", "arm64"}, "--arch chooses the EFI applications, and the disk carries none; add --firmware uefi"},
		{[]string{"--size", "256KiB"}, "a UEFI disk needs at least 516096 bytes (504 KiB), --size is 262144"},
		{[]string{"--message", long}, "bytes over the budget"},
		// The second stage holds this message; the EFI applications, whose
		// UCS-2 copy is twice as long, do not.
		{[]string{"--probe", "id", "--message", strings.Repeat("m", 7000)}, "efi: application does not fit: with probes the amd64 application takes"},
		{[]string{"--probe", "bootcount", "--format", "iso"}, "probe bootcount needs a writable disk: iso is read-only; drop bootcount or use a disk format"},
		{[]string{"--probe", "id", "--firmware", "bios", "--size", "512"}, "size 512 is too small for the probes' second stage: use at least 1536 bytes"},
	} {
		dir := filepath.Join(t.TempDir(), "out")
		code, _, stderr := cli(t, append([]string{"build", "-o", dir}, tc.args...)...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 2 || !strings.Contains(lines[0], tc.want) {
			t.Errorf("build %v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("build %v wrote %s", tc.args, dir)
		}
	}
	// The 440-byte budget: the same message fits the bare 510-byte disk.
	msg := strings.Repeat("x", 150)
	if code, _, stderr := cli(t, "build", "-o", t.TempDir(), "--message", msg); code != 2 || !strings.Contains(stderr, "does not fit in 440 bytes") {
		t.Errorf("a 150-byte message on the universal disk: exit %d, %q", code, stderr)
	}
	if code, _, stderr := cli(t, "build", "-o", t.TempDir(), "--firmware", "bios", "--message", msg); code != 0 {
		t.Errorf("a 150-byte message on the bare BIOS disk: exit %d, %q", code, stderr)
	}
}

// TestJSONVocabulary: --json is the one flag for machine-readable output;
// the old --output text|json of inspect and push still works, hidden,
// with a deprecation warning on stderr.
func TestJSONVocabulary(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := cli(t, "build", "-q", "-o", dir, "--format", "raw"); code != 0 {
		t.Fatalf("build: %s", stderr)
	}
	file := filepath.Join(dir, "512-byte-vm.raw")
	code, stdout, stderr := cli(t, "inspect", "--json", file)
	if code != 0 || !strings.HasPrefix(stdout, "{") || stderr != "" {
		t.Fatalf("inspect --json: exit %d, %q, %q", code, stdout, stderr)
	}
	code, old, stderr := cli(t, "inspect", "--output", "json", file)
	if code != 0 || old != stdout || !strings.Contains(stderr, "--output has been deprecated, use --json instead") {
		t.Errorf("inspect --output json: exit %d, stdout %q, stderr %q", code, old, stderr)
	}
	if code, _, stderr := cli(t, "inspect", "--output", "yaml", file); code != 2 || !strings.Contains(stderr, `"yaml": use text or json (or --json)`) {
		t.Errorf("inspect --output yaml: exit %d, %q", code, stderr)
	}
	_, help, _ := cli(t, "inspect", "--help")
	if strings.Contains(help, "--output") || !strings.Contains(help, "--json") {
		t.Errorf("inspect --help shows the hidden --output or lacks --json:\n%s", help)
	}
}
