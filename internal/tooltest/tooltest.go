// Package tooltest finds the external tools that tests use as oracles
// (qemu-img, qemu-system-x86_64, skopeo, umoci, oras, xorriso, registry).
//
// On a bare machine a missing tool skips the test with a message naming the
// Debian package to install. With TINYVM_REQUIRE_TOOLS=1, as .ci/run sets
// it, a missing tool fails the test instead, so CI can never hide a skip.
package tooltest

import (
	"os"
	"os/exec"
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
	t.Skip(msg)
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
