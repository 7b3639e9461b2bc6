// Package tooltest finds the external tools that tests use as oracles
// (qemu-img, qemu-system-x86_64, skopeo, umoci, oras, xorriso, registry).
//
// On a bare machine a missing tool skips the test with a message naming the
// Debian package to install. With TINYVM_REQUIRE_TOOLS=1, as .ci/run sets
// it, a missing tool fails the test instead, so CI can never hide a skip.
package tooltest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// RequireEnv is the environment variable that turns skips into failures.
const RequireEnv = "TINYVM_REQUIRE_TOOLS"

// Required reports whether missing tools must fail tests.
func Required() bool { return os.Getenv(RequireEnv) == "1" }

// Require returns the path of tool, or skips (fails under
// TINYVM_REQUIRE_TOOLS=1) the test, naming how to install it.
func Require(t testing.TB, tool, install string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	Missing(t, tool+" not found: "+install)
	return ""
}

// Missing skips the test with msg, or fails it under
// TINYVM_REQUIRE_TOOLS=1.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if Required() {
		t.Fatalf("%s (%s=1 makes this a failure)", msg, RequireEnv)
	}
	skipped.Lock()
	skipped.n[msg]++
	skipped.Unlock()
	t.Skip(msg)
}

// skipped counts the tests Missing skipped, by message, for Main's summary.
var skipped = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// Main runs the package's tests and then prints one line saying how many
// were skipped for missing tools and what to install. A passing package's
// output is hidden by go test, so the line goes to the terminal (/dev/tty)
// when there is one, and to stderr (seen with -v) otherwise. Call it from
// TestMain in every package whose tests use Require or Missing.
func Main(m *testing.M) { os.Exit(Run(m)) }

// Run is Main for a TestMain that has cleanup to do before it exits: it
// runs the tests, prints the summary and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if line := Summary(); line != "" {
		var w io.Writer = os.Stderr
		if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
			defer tty.Close()
			w = tty
		}
		fmt.Fprintln(w, line)
	}
	return code
}

// Summary is the one-line report of the skips so far, or "" when none.
func Summary() string {
	skipped.Lock()
	defer skipped.Unlock()
	total := 0
	var parts []string
	for msg, n := range skipped.n {
		total += n
		parts = append(parts, fmt.Sprintf("%d× %s", n, msg))
	}
	if total == 0 {
		return ""
	}
	slices.Sort(parts)
	return fmt.Sprintf("tooltest: %d tests skipped for missing tools: %s (see .ci/packages.txt; %s=1 makes them fail)",
		total, strings.Join(parts, "; "), RequireEnv)
}

// Install hints for the tools the tests use.
const (
	QemuSystem  = "apt-get install qemu-system-x86"
	QemuUtils   = "apt-get install qemu-utils"
	Xorriso     = "apt-get install xorriso"
	Genisoimage = "apt-get install genisoimage"
	Libvhdi     = "apt-get install libvhdi-utils"
	Registry    = "apt-get install docker-registry"
	Skopeo      = "apt-get install skopeo"
	Umoci       = "apt-get install umoci"
	Oras        = "go install oras.land/oras/cmd/oras@v1.3.6"
	Crane       = "go install github.com/google/go-containerregistry/cmd/crane@v0.22.1"
	Gzip        = "apt-get install gzip"
	Zstd        = "apt-get install zstd"
)

// Install hints for the UEFI tests' tools and firmware.
const (
	QemuSystemARM = "apt-get install qemu-system-arm"
	OVMF          = "apt-get install ovmf"
	AAVMF         = "apt-get install qemu-efi-aarch64"
	Binutils      = "apt-get install binutils-multiarch"
	Dosfstools    = "apt-get install dosfstools"
	Mtools        = "apt-get install mtools"
	Sbsigntool    = "apt-get install sbsigntool"
)

// RequireFile returns path, or skips (fails under TINYVM_REQUIRE_TOOLS=1)
// the test when the file is missing, naming how to install it.
func RequireFile(t testing.TB, path, install string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, path+" not found: "+install)
	}
	return path
}

// Install hints for the window tests: QEMU's gtk and sdl displays, an X
// server without a screen, and the X clients that list its windows.
const (
	QemuGUI  = "apt-get install qemu-system-gui"
	Xvfb     = "apt-get install xvfb"
	X11Utils = "apt-get install x11-utils"
)
