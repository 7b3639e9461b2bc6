package efi_test

import (
	"context"
	"crypto"
	"crypto/cipher"
	"crypto/des"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/idletest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
)

// Generous limits: firmware under TCG on a loaded 2-core machine is slow.
const (
	bootTimeout = 180 * time.Second
	marker      = "Hello World!\r\n"
)

// ownLine matches the marker as a line of its own on the serial console.
var ownLine = regexp.MustCompile(`(^|\n)Hello World!\r\n`)

// esp writes the application where removable-media boot finds it and
// returns the directory as a vvfat disk for qemu.Options.File.
func esp(t *testing.T, o sector.Options, arch efi.Arch) string {
	t.Helper()
	b, err := efi.Build(o, arch)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, filepath.FromSlash(arch.BootPath()))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return "fat:" + dir
}

// require skips (fails under TINYVM_REQUIRE_TOOLS=1) without the emulator
// and firmware that o needs.
func require(t *testing.T, o qemu.Options) {
	t.Helper()
	if o.Arch == "arm64" {
		tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
		tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
	} else {
		tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
		code, vars := o.FirmwareFiles()
		tooltest.RequireFile(t, code, tooltest.OVMF)
		tooltest.RequireFile(t, vars, tooltest.OVMF)
	}
}

// boot starts o and returns the process and its serial output.
func boot(t *testing.T, o qemu.Options) (*qemu.Process, *qemu.Capture) {
	t.Helper()
	require(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 3*bootTimeout)
	t.Cleanup(cancel)
	serial := qemu.NewCapture()
	o.Serial = serial
	p, err := qemu.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Done():
		default:
			p.Kill()
		}
	})
	return p, serial
}

// start boots o and waits for the marker on serial.
func start(t *testing.T, o qemu.Options) (*qemu.Process, *qemu.Capture) {
	t.Helper()
	p, serial := boot(t, o)
	if !serial.WaitFor(marker, bootTimeout, p.Done()) {
		t.Fatalf("no %q on serial within %v; got %q", marker, bootTimeout, tail(serial.String()))
	}
	return p, serial
}

func tail(s string) string {
	if len(s) > 2000 {
		return "..." + s[len(s)-2000:]
	}
	return s
}

// exits waits for the emulator to end by itself with status 0.
func exits(t *testing.T, p *qemu.Process, why string) {
	t.Helper()
	select {
	case <-p.Done():
		if err := p.Wait(); err != nil {
			t.Fatalf("%s: qemu failed: %v", why, err)
		}
	case <-time.After(bootTimeout):
		t.Fatalf("%s: the guest did not power off within %v", why, bootTimeout)
	}
}

// stillRunning fails unless the emulator is alive after d.
func stillRunning(t *testing.T, p *qemu.Process, d time.Duration, why string) {
	t.Helper()
	select {
	case <-p.Done():
		t.Fatalf("%s: the guest stopped, want it running", why)
	case <-time.After(d):
	}
}

// console returns a pipe: the reading end for qemu.Options.Console and
// the writing end to type on the serial console. An *os.File goes to the
// emulator as its standard input as it is, with no copying goroutine that
// would keep Process.Wait waiting.
func console(t *testing.T) (r, w *os.File) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })
	return r, w
}

func uefi(file, machine, bus string) qemu.Options {
	return qemu.Options{File: file, Firmware: "uefi", Machine: machine, Bus: bus, NoReboot: true}
}

func arm(file string) qemu.Options {
	return qemu.Options{File: file, Arch: "arm64", Firmware: "uefi", Machine: "virt", Bus: "virtio", NoReboot: true}
}

// TestBootPowerOff is the boot matrix: each run prints the marker on a
// line of its own, once, and powers off with status 0.
func TestBootPowerOff(t *testing.T) {
	po := sector.Options{Then: sector.PowerOff}
	x86, a64 := esp(t, po, efi.AMD64), esp(t, po, efi.ARM64)
	for name, o := range map[string]qemu.Options{
		"ovmf-q35-virtio": uefi(x86, "q35", "virtio"),
		"ovmf-q35-sata":   uefi(x86, "q35", "sata"),
		"aavmf-virt":      arm(a64),
	} {
		t.Run(name, func(t *testing.T) {
			p, serial := start(t, o)
			exits(t, p, "--then poweroff")
			out := serial.String()
			if n := strings.Count(out, marker); n != 1 {
				t.Errorf("marker printed %d times, want once: %q", n, tail(out))
			}
			if !ownLine.MatchString(out) {
				t.Errorf("the marker is not a line of its own: %q", tail(out))
			}
			if !strings.Contains(out, "Powering off.\r\n") {
				t.Errorf("no message on the console: %q", tail(out))
			}
		})
	}
}

// TestMemoryFloor boots at the smallest memory each firmware was measured
// to need: 48 MiB for OVMF (32 MiB crashes), 128 MiB for AAVMF (64 MiB
// fails).
func TestMemoryFloor(t *testing.T) {
	po := sector.Options{Then: sector.PowerOff}
	o := uefi(esp(t, po, efi.AMD64), "q35", "virtio")
	o.Memory = 48
	p, _ := start(t, o)
	exits(t, p, "OVMF with 48 MiB")
	// AAVMF's floor, 128 MiB, is the arm64 default every other test uses.
}

func TestWaitTimeout(t *testing.T) {
	p, _ := start(t, uefi(esp(t, sector.Options{Timeout: 3 * time.Second}, efi.AMD64), "q35", "virtio"))
	stillRunning(t, p, 500*time.Millisecond, "3s timeout, shortly after the marker")
	exits(t, p, "--timeout 3s")
}

// TestWaitKeyPress presses a key on the PS/2 keyboard (QMP send-key), as
// a VNC console would, on OVMF.
func TestWaitKeyPress(t *testing.T) {
	p, _ := start(t, uefi(esp(t, sector.Options{}, efi.AMD64), "q35", "virtio"))
	stillRunning(t, p, 2*time.Second, "--then wait before any key")
	if err := p.SendKey("a"); err != nil {
		t.Fatal(err)
	}
	exits(t, p, "a key press")
}

// TestWaitSerialKey types on the serial console, which OVMF and AAVMF read
// as ConIn.
func TestWaitSerialKey(t *testing.T) {
	for name, o := range map[string]qemu.Options{
		"ovmf":  uefi(esp(t, sector.Options{}, efi.AMD64), "q35", "virtio"),
		"aavmf": arm(esp(t, sector.Options{}, efi.ARM64)),
	} {
		t.Run(name, func(t *testing.T) {
			r, w := console(t)
			o.Console = r
			p, _ := start(t, o)
			stillRunning(t, p, 2*time.Second, "--then wait before any key")
			if _, err := w.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			exits(t, p, "a key on the serial console")
		})
	}
}

// TestWaitPowerButton presses the ACPI power button (QMP
// system_powerdown) where the application can see it: PWRBTN_STS in the
// PM1 block on OVMF (0x600 on q35, 0xB000 on pc), the Generic Event
// Device on AAVMF and, without ACPI, the PL061's line 3.
func TestWaitPowerButton(t *testing.T) {
	x86, a64 := esp(t, sector.Options{}, efi.AMD64), esp(t, sector.Options{}, efi.ARM64)
	for name, o := range map[string]qemu.Options{
		"ovmf-q35":   uefi(x86, "q35", "virtio"),
		"ovmf-pc":    uefi(x86, "pc", "virtio"),
		"aavmf-virt": arm(a64),
		"aavmf-virt-acpi-off": func() qemu.Options {
			o := arm(a64)
			o.NoACPI = true
			return o
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			p, _ := start(t, o)
			stillRunning(t, p, 2*time.Second, "--then wait before any event")
			if err := p.Powerdown(); err != nil {
				t.Fatal(err)
			}
			exits(t, p, "system_powerdown")
		})
	}
}

func TestHaltIgnoresEverything(t *testing.T) {
	o := uefi(esp(t, sector.Options{Then: sector.Halt}, efi.AMD64), "q35", "virtio")
	r, w := console(t)
	o.Console = r
	p, _ := start(t, o)
	if err := p.Powerdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	stillRunning(t, p, 5*time.Second, "--then halt after system_powerdown and a key")
}

// TestReboot lets the guest reset (no -no-reboot): the firmware starts
// again and the application prints its marker a second time.
func TestReboot(t *testing.T) {
	o := uefi(esp(t, sector.Options{Then: sector.Reboot}, efi.AMD64), "q35", "virtio")
	o.NoReboot = false
	p, serial := start(t, o)
	deadline := time.Now().Add(bootTimeout)
	for strings.Count(serial.String(), marker) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("marker seen %d times after a reboot, want twice: %q", strings.Count(serial.String(), marker), tail(serial.String()))
		}
		select {
		case <-p.Done():
			t.Fatalf("qemu exited on reboot: %v", p.Wait())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// fatImage writes a FAT12 image holding the application at its boot path,
// with dosfstools and mtools. OVMF's Secure Boot build does not boot from
// vvfat, so the Secure Boot tests need a real filesystem.
func fatImage(t *testing.T, app []byte) string {
	t.Helper()
	mkfs := tooltest.Require(t, "mkfs.fat", tooltest.Dosfstools)
	mmd := tooltest.Require(t, "mmd", tooltest.Mtools)
	mcopy := tooltest.Require(t, "mcopy", tooltest.Mtools)
	dir := t.TempDir()
	img, src := filepath.Join(dir, "esp.img"), filepath.Join(dir, "app.efi")
	if err := os.WriteFile(src, app, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{mkfs, "-C", "-F", "12", img, "2048"},
		{mmd, "-i", img, "::/EFI", "::/EFI/BOOT"},
		{mcopy, "-i", img, src, "::/" + efi.AMD64.BootPath()},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", filepath.Base(args[0]), err, out)
		}
	}
	return img
}

// TestSecureBootRefuses boots OVMF's Secure Boot build with Microsoft's
// keys enrolled: it refuses the unsigned application with "Access
// Denied", and the marker never appears.
func TestSecureBootRefuses(t *testing.T) {
	app, err := efi.Build(sector.Options{Then: sector.PowerOff}, efi.AMD64)
	if err != nil {
		t.Fatal(err)
	}
	o := uefi(fatImage(t, app), "q35", "virtio")
	o.SecureBoot = true
	p, serial := boot(t, o)
	const refused = "No bootable option or device was found."
	if !serial.WaitFor(refused, bootTimeout, p.Done()) {
		t.Fatalf("no %q on serial: %q", refused, tail(serial.String()))
	}
	out := serial.String()
	if !regexp.MustCompile(`failed to load Boot0001 "[^"]*" from [^\r\n]*: Access Denied`).MatchString(out) {
		t.Errorf("no Access Denied for the boot option on serial: %q", tail(out))
	}
	if strings.Contains(out, marker) {
		t.Fatalf("Secure Boot ran the unsigned application: %q", tail(out))
	}
}

// TestSecureBootSigned signs the application with Debian's snakeoil test
// key (pe.Sign) and boots it under Secure Boot with that key enrolled.
func TestSecureBootSigned(t *testing.T) {
	keyFile := tooltest.RequireFile(t, snakeoilKey, tooltest.OVMF)
	encrypted, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	plain := decryptPKCS8(t, encrypted, "snakeoil")
	key, cert := snakeoil(t, plain)
	app, err := efi.Build(sector.Options{Then: sector.PowerOff}, efi.AMD64)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := pe.Sign(app, key, cert)
	if err != nil {
		t.Fatal(err)
	}
	o := uefi(fatImage(t, signed), "q35", "virtio")
	o.SecureBoot, o.SecureBootVars = true, qemu.OVMFSnakeoilVars
	tooltest.RequireFile(t, qemu.OVMFSnakeoilVars, tooltest.OVMF)
	p, _ := start(t, o)
	exits(t, p, "the signed application under Secure Boot")
}

// decryptPKCS8 opens the snakeoil key file: an encrypted PKCS #8 key
// (RFC 5208) under PBES2 (RFC 8018) with PBKDF2-HMAC-SHA256 and 3DES-CBC,
// which Go's x509 package does not read.
func decryptPKCS8(t *testing.T, file []byte, password string) []byte {
	t.Helper()
	b, _ := pem.Decode(file)
	if b == nil || b.Type != "ENCRYPTED PRIVATE KEY" {
		t.Fatal("the snakeoil key is not an encrypted PKCS #8 PEM file")
	}
	var epki struct {
		Algorithm struct {
			OID    asn1.ObjectIdentifier
			Params struct {
				KDF struct {
					OID    asn1.ObjectIdentifier
					Params struct {
						Salt       []byte
						Iterations int
						PRF        struct{ OID asn1.ObjectIdentifier }
					}
				}
				Cipher struct {
					OID asn1.ObjectIdentifier
					IV  []byte
				}
			}
		}
		Data []byte
	}
	if _, err := asn1.Unmarshal(b.Bytes, &epki); err != nil {
		t.Fatalf("encrypted key: %v", err)
	}
	p := epki.Algorithm.Params
	if !p.KDF.Params.PRF.OID.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 2, 9}) ||
		!p.Cipher.OID.Equal(asn1.ObjectIdentifier{1, 2, 840, 113549, 3, 7}) {
		t.Fatalf("the snakeoil key uses %v and %v, not HMAC-SHA256 and 3DES-CBC", p.KDF.Params.PRF.OID, p.Cipher.OID)
	}
	k, err := pbkdf2.Key(sha256.New, password, p.KDF.Params.Salt, p.KDF.Params.Iterations, 24)
	if err != nil {
		t.Fatal(err)
	}
	block, err := des.NewTripleDESCipher(k)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, len(epki.Data))
	cipher.NewCBCDecrypter(block, p.Cipher.IV).CryptBlocks(out, epki.Data)
	pad := int(out[len(out)-1])
	if pad < 1 || pad > des.BlockSize {
		t.Fatal("wrong password for the snakeoil key")
	}
	return out[:len(out)-pad]
}

// Debian's snakeoil Secure Boot test key and certificate (package ovmf).
const (
	snakeoilKey  = "/usr/share/ovmf/PkKek-1-snakeoil.key"
	snakeoilCert = "/usr/share/ovmf/PkKek-1-snakeoil.pem"
)

func snakeoil(t *testing.T, der []byte) (crypto.Signer, *x509.Certificate) {
	t.Helper()
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(tooltest.RequireFile(t, snakeoilCert, tooltest.OVMF))
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil {
		t.Fatal("the snakeoil certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return k.(crypto.Signer), cert
}

// TestIdleCPU reads the emulator's CPU time from /proc while the guest
// waits: WaitForEvent must leave the host idle.
func TestIdleCPU(t *testing.T) {
	p, _ := start(t, uefi(esp(t, sector.Options{}, efi.AMD64), "q35", "virtio"))
	time.Sleep(2 * time.Second) // let boot work finish
	idletest.Check(t, p.Pid(), 5*time.Second, "idle OVMF guest")
}
