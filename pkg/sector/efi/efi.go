// Package efi builds the VM as UEFI applications for x86-64 (OVMF) and
// AArch64 (AAVMF): PE32+ files that firmware starts from
// \EFI\BOOT\BOOTX64.EFI or \EFI\BOOT\BOOTAA64.EFI on an EFI system
// partition.
//
// They take the boot sector's options and behave like it: print the banner
// and message through ConOut->OutputString, which OVMF and AAVMF also send
// to the serial console, print the serial marker the same way, then wait,
// power off, halt or reboot. Waiting sleeps in BootServices->WaitForEvent on
// the keyboard and a periodic timer, and polls the power button on each
// tick. With sector.Options.Probes they print the probes' lines as the
// BIOS program does (docs/probes.md, "UEFI"). The code is written with the
// assemblers in packages x64 and a64 and wrapped by package pe; no
// toolchain or binary blob is involved.
package efi

import (
	"errors"
	"fmt"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
)

// Arch is a UEFI architecture, named as Go and OCI name it.
type Arch string

// The architectures Build writes.
const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64"
)

// Arches lists the valid values of Arch.
var Arches = []Arch{AMD64, ARM64}

// ErrBadArch is returned for an architecture Build does not know.
var ErrBadArch = errors.New("efi: unknown architecture")

// ErrTooBig is returned for an application with probes larger than
// MaxProbeSize.
var ErrTooBig = errors.New("efi: application does not fit")

// MaxProbeSize is the most an application with probes may take: two of
// them, BOOTX64.EFI and BOOTAA64.EFI, then fit the universal disk's
// smallest ESP, 32 KiB, which keeps the ESP where the probes' second stage
// and boot counter expect it (two 14848-byte files are the most that fit).
const MaxProbeSize = 14 * 1024

// BootPath is where removable-media boot looks for the application on
// the EFI system partition (UEFI Specification 2.10, section 3.5.1.1).
func (a Arch) BootPath() string {
	switch a {
	case AMD64:
		return "EFI/BOOT/BOOTX64.EFI"
	case ARM64:
		return "EFI/BOOT/BOOTAA64.EFI"
	}
	return ""
}

// Validate reports an unknown architecture.
func (a Arch) Validate() error {
	switch a {
	case AMD64, ARM64:
		return nil
	}
	return fmt.Errorf("%w %q: use amd64 or arm64", ErrBadArch, string(a))
}

// Offsets into the UEFI tables (UEFI Specification 2.10, sections 4.3 to
// 4.5, 7 and 8, and 12.3 and 12.4), the same on both 64-bit architectures:
// every field there is a pointer or a UINTN after a 24-byte header.
const (
	// EFI_SYSTEM_TABLE
	stConIn           = 0x30
	stConOut          = 0x40
	stRuntimeServices = 0x58
	stBootServices    = 0x60
	// EFI_SIMPLE_TEXT_INPUT_PROTOCOL
	conInWaitForKey = 0x10
	// EFI_SIMPLE_TEXT_OUTPUT_PROTOCOL
	conOutOutputString = 0x08
	// EFI_BOOT_SERVICES
	bsCreateEvent      = 0x50
	bsSetTimer         = 0x58
	bsWaitForEvent     = 0x60
	bsSetWatchdogTimer = 0x100
	// EFI_RUNTIME_SERVICES
	rtResetSystem = 0x68
)

// Values passed to the firmware.
const (
	evtTimer      = 0x80000000 // EVT_TIMER
	timerPeriodic = 1          // TimerPeriodic
	resetCold     = 0          // EfiResetCold
	resetShutdown = 2          // EfiResetShutdown
)

// Tick is how often the waiting application wakes to poll the power
// button and count down the timeout.
const Tick = 100 * time.Millisecond

// tick100ns is Tick in the 100 ns units of SetTimer.
const tick100ns = uint32(Tick / 100)

// Build returns the EFI application for arch, built from the same options
// as the boot sector and validated the same way.
func Build(o sector.Options, arch Arch) ([]byte, error) {
	if err := arch.Validate(); err != nil {
		return nil, err
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o = o.Defaults()
	var (
		app []byte
		err error
	)
	switch arch {
	case AMD64:
		var code []byte
		if code, err = amd64Program(o); err == nil {
			app, err = pe.Write(pe.AMD64, code)
		}
	default:
		var code []byte
		if code, err = arm64Program(o); err == nil {
			app, err = pe.Write(pe.ARM64, code)
		}
	}
	if err != nil {
		return nil, err
	}
	if over := len(app) - MaxProbeSize; o.Probes.Any() && over > 0 {
		return nil, fmt.Errorf("%w: with probes the %s application takes %d bytes, %d over its %d (two must fit the 32 KiB ESP); shorten the message or serial text",
			ErrTooBig, arch, len(app), over, MaxProbeSize)
	}
	return app, nil
}

// ticks is the timeout in ticks, rounded up; 0 means none.
func ticks(o sector.Options) uint32 {
	return uint32((o.Timeout + Tick - 1) / Tick)
}

// boxDrawing maps the banner's code page 437 box characters to Unicode.
var boxDrawing = map[byte]rune{
	0xC9: '╔', 0xBB: '╗', 0xC8: '╚', 0xBC: '╝', 0xCD: '═', 0xBA: '║',
}

// text is the NUL-terminated UCS-2 string the application prints: the
// banner, the message and, on a line of its own, the serial marker.
func text(o sector.Options) []byte {
	var rs []rune
	for _, c := range sector.Banner() {
		if r, ok := boxDrawing[c]; ok {
			rs = append(rs, r)
		} else {
			rs = append(rs, rune(c))
		}
	}
	rs = append(rs, []rune(o.Message+"\r\n")...)
	if *o.Serial != "" {
		rs = append(rs, []rune(*o.Serial+"\r\n")...)
	}
	return ucs2(string(rs))
}
