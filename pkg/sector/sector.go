// Package sector builds the 512-byte VM: an x86 MBR boot sector written
// with the small assembler in package asm.
//
// The program prints a banner and a message on the screen (int 10h), writes
// a marker line to COM1 when the BIOS reports one (int 11h, int 14h), and
// then waits, powers off, halts or reboots. Powering off tries APM (int 15h)
// first, then the ACPI PM1a_CNT ports of QEMU, VirtualBox and Bochs.
//
// The program fits one of two layouts: Bare, a sector of its own with 510
// bytes for the program, or Partitioned, the 440 bytes of boot code in an
// MBR that also carries a partition table (the protective MBR of a GPT
// disk).
//
// With Options.Probes (the fixture probes of docs/probes.md) the sector
// is a loader: it reads a second stage from the sectors after it, which
// the disk must carry where Sector.Reserved says.
package sector

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/asm"
)

const (
	// Size is the size of a boot sector.
	Size = 512
	// signatureOffset is where the 0x55 0xAA boot signature starts.
	signatureOffset = 510
	// Budget is how many bytes the program may use in a bare sector
	// (layout Bare): everything before the boot signature.
	Budget = signatureOffset
	// diskSignatureOffset is where a partitioned disk's MBR keeps its
	// 32-bit disk signature; the partition table follows at 446.
	diskSignatureOffset = 440
	// PartitionedBudget is how many bytes the program may use as the boot
	// code of a partitioned disk's MBR (layout Partitioned), such as the
	// protective MBR of a GPT disk: everything before the disk signature.
	PartitionedBudget = diskSignatureOffset
	// loadAddress is where the BIOS loads the sector (0000:7C00).
	loadAddress = 0x7C00
	// tickCount is the BIOS data area's timer tick counter (0040:006C).
	tickCount = 0x046C
	// ticksPerSecond is the BIOS timer rate: 1193182 Hz / 65536.
	ticksPerSecond = 1193182.0 / 65536.0
)

// Then is what the VM does after printing.
type Then string

// What the VM can do after printing.
const (
	// Wait idles until a key press, the ACPI power button or the timeout,
	// then powers off.
	Wait Then = "wait"
	// PowerOff powers off at once: a fixture that runs to completion.
	PowerOff Then = "poweroff"
	// Halt idles forever and ignores everything.
	Halt Then = "halt"
	// Reboot resets the machine.
	Reboot Then = "reboot"
)

// Layout is where the program lives in the sector, which sets its budget.
type Layout uint8

// The layouts.
const (
	// Bare is a sector of its own: the program takes bytes 0-509, before
	// the boot signature. This is the classic 512-byte disk.
	Bare Layout = iota
	// Partitioned is the boot code of an MBR that also holds a partition
	// table: the program takes bytes 0-439, and the disk signature (440),
	// the table (446-509) and the boot signature stay free for the
	// partitioning code to fill.
	Partitioned
)

// Budget is how many bytes a program may use in the layout.
func (l Layout) Budget() int {
	if l == Partitioned {
		return PartitionedBudget
	}
	return Budget
}

// Thens lists the valid values of Then.
var Thens = []Then{Wait, PowerOff, Halt, Reboot}

// DefaultSerial is the marker line written to COM1: the one test suites
// built around the oVirt 512-byte VM look for.
const DefaultSerial = "Hello World!"

// MaxTimeout is the longest Timeout: the program counts the low word of
// the BIOS tick counter, 65535 ticks.
var MaxTimeout = time.Duration(math.Floor(65535 / ticksPerSecond * float64(time.Second)))

// Options choose what the program does. The zero value is the default VM.
type Options struct {
	// Message is the screen text under the banner. Empty means a default
	// that says what the VM will do.
	Message string
	// Serial is the COM1 marker. nil means DefaultSerial; a pointer to ""
	// writes nothing to the serial port.
	Serial *string
	// Then is what to do after printing (default Wait).
	Then Then
	// Timeout powers off after this long. Only with Wait; 0 means never.
	Timeout time.Duration
	// Layout is where the program goes (default Bare, 510 bytes);
	// Partitioned leaves the MBR's partition table free (440 bytes).
	Layout Layout
	// Probes are the fixture probes (--probe); any of them makes the
	// program two-stage (see Sector.Reserved).
	Probes Probes
}

// Errors that Build and Load return, wrapped with details.
var (
	ErrTooBig       = errors.New("sector: program does not fit")
	ErrBadLayout    = errors.New("sector: unknown layout")
	ErrNotASCII     = errors.New("sector: text must be printable ASCII (0x20-0x7E)")
	ErrBadThen      = errors.New("sector: unknown --then")
	ErrBadTimeout   = errors.New("sector: bad timeout")
	ErrSize         = errors.New("sector: a boot sector must be exactly 512 bytes")
	ErrNoSignature  = errors.New("sector: no boot signature 0x55 0xAA at offset 510")
	signatureSuffix = []byte{0x55, 0xAA}
)

// Sector is a built or loaded boot sector.
type Sector struct {
	code       [Size]byte
	used       int
	layout     Layout
	custom     bool
	stage2     []byte // the probes' second stage, whole sectors
	stage2Used int    // bytes of it the program takes
	counter    []byte // the boot counter's initial sector
}

// Bytes returns the 512 bytes of the sector.
func (s *Sector) Bytes() []byte { return bytes.Clone(s.code[:]) }

// Used is how many of the layout's program bytes the program takes. It is
// Budget for a sector loaded from a file, whose layout is unknown.
func (s *Sector) Used() int { return s.used }

// Free is how many of the layout's program bytes are left.
func (s *Sector) Free() int { return s.layout.Budget() - s.used }

// Layout is the layout the sector was built for; Bare for a loaded one.
func (s *Sector) Layout() Layout { return s.layout }

// Code returns the program bytes of the layout's budget, zero-padded: the
// first 440 bytes of a Partitioned sector are an MBR's boot code.
func (s *Sector) Code() []byte { return bytes.Clone(s.code[:s.layout.Budget()]) }

// Custom reports whether the sector came from Load rather than Build.
func (s *Sector) Custom() bool { return s.custom }

// Load checks a boot sector brought by the user: exactly 512 bytes ending
// in 0x55 0xAA.
func Load(b []byte) (*Sector, error) {
	if len(b) != Size {
		return nil, fmt.Errorf("%w, got %d", ErrSize, len(b))
	}
	if !bytes.Equal(b[signatureOffset:], signatureSuffix) {
		return nil, fmt.Errorf("%w (found 0x%02X 0x%02X)", ErrNoSignature, b[510], b[511])
	}
	s := &Sector{used: Budget, custom: true}
	copy(s.code[:], b)
	return s, nil
}

// Validate checks the options without assembling.
func (o Options) Validate() error {
	if o.Layout != Bare && o.Layout != Partitioned {
		return fmt.Errorf("%w %d: use Bare or Partitioned", ErrBadLayout, o.Layout)
	}
	then := o.then()
	switch then {
	case Wait, PowerOff, Halt, Reboot:
	default:
		return fmt.Errorf("%w %q: use wait, poweroff, halt or reboot", ErrBadThen, string(o.Then))
	}
	if o.Timeout < 0 {
		return fmt.Errorf("%w: %v is negative", ErrBadTimeout, o.Timeout)
	}
	if o.Timeout > 0 && then != Wait {
		return fmt.Errorf("%w: a timeout only applies to --then wait, not %s", ErrBadTimeout, then)
	}
	if o.Timeout > MaxTimeout {
		return fmt.Errorf("%w: %v is longer than the longest, %v", ErrBadTimeout, o.Timeout, MaxTimeout)
	}
	if err := o.Probes.validate(then); err != nil {
		return err
	}
	if err := checkText("message", o.Message); err != nil {
		return err
	}
	return checkText("serial text", o.serial())
}

func checkText(what, s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7E {
			return fmt.Errorf("%w: %s has byte 0x%02X at position %d", ErrNotASCII, what, c, i)
		}
	}
	return nil
}

func (o Options) then() Then {
	if o.Then == "" {
		return Wait
	}
	return o.Then
}

func (o Options) serial() string {
	if o.Serial == nil {
		return DefaultSerial
	}
	return *o.Serial
}

// message is the screen text: the user's, or one saying what happens next.
func (o Options) message() string {
	if o.Message != "" {
		return o.Message
	}
	switch o.then() {
	case PowerOff:
		return "Powering off."
	case Halt:
		return "Halted."
	case Reboot:
		return "Rebooting."
	}
	if o.Timeout > 0 {
		return fmt.Sprintf("Press a key or the power button to power off (or wait %v).", o.Timeout)
	}
	return "Press a key or the power button to power off."
}

// ticks converts the timeout to BIOS timer ticks, rounding up.
func (o Options) ticks() uint16 {
	return uint16(math.Ceil(o.Timeout.Seconds() * ticksPerSecond))
}

// banner is drawn with code page 437 double-line box characters, which
// every PC BIOS font has.
var banner = func() []byte {
	const title = " tinyvm-oci : the 512-byte VM "
	line := func(l, r byte) []byte {
		return append(append([]byte{l}, bytes.Repeat([]byte{0xCD}, len(title))...), r, '\r', '\n')
	}
	b := line(0xC9, 0xBB)
	b = append(append(append(b, 0xBA), title...), 0xBA, '\r', '\n')
	return append(b, line(0xC8, 0xBC)...)
}()

// Build assembles the boot sector.
func Build(o Options) (*Sector, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Probes.Any() {
		return buildProbes(o)
	}
	code, err := program(o)
	if err != nil {
		return nil, err
	}
	budget := o.Layout.Budget()
	if over := len(code) - budget; over > 0 {
		return nil, fmt.Errorf("%w in %d bytes: %d bytes over the budget; shorten the message or serial text", ErrTooBig, budget, over)
	}
	s := &Sector{used: len(code), layout: o.Layout}
	copy(s.code[:], code)
	copy(s.code[signatureOffset:], signatureSuffix)
	return s, nil
}

// program writes the boot program. Every part is one block of
// instructions, switched on by the options.
func program(o Options) ([]byte, error) {
	a := asm.New(loadAddress)
	then, serial := o.then(), o.serial()

	// Known state: segments 0, stack below the sector, strings count up.
	a.Cli()
	a.Xor(asm.AX, asm.AX)
	a.MovSeg(asm.DS, asm.AX)
	a.MovSeg(asm.ES, asm.AX)
	a.MovSeg(asm.SS, asm.AX)
	a.MovImm(asm.SP, loadAddress)
	a.Sti()
	a.Cld()

	a.MovAddr(asm.SI, "screen")
	a.Call("putscreen")

	if serial != "" {
		// int 11h: bits 9-11 of the equipment word count serial ports.
		a.Int(0x11)
		a.TestImm(asm.AX, 0x0E00)
		a.J(asm.JZ, "after_serial")
		a.MovImm(asm.AX, 0x00E3) // int 14h AH=0: init COM1, 9600 8N1
		a.Xor(asm.DX, asm.DX)
		a.Int(0x14)
		a.MovAddr(asm.SI, "serial")
		a.Call("putserial")
		a.Label("after_serial")
	}

	switch then {
	case PowerOff:
		a.Jmp("poweroff")
	case Halt:
		a.Label("halt")
		a.Hlt()
		a.Jmp("halt")
	case Reboot:
		a.MovImm8(asm.AL, 0xFE) // pulse the reset line through the 8042
		a.OutImm8(0x64)
		a.JmpFar(0xFFFF, 0x0000) // fall back to the reset vector
	case Wait:
		waitLoop(a, o)
	}

	if then == Wait || then == PowerOff {
		poweroff(a) // halt and reboot never reach it
	}
	printers(a, serial != "")

	a.Label("screen")
	a.DB(banner...)
	a.DB([]byte(o.message())...)
	a.DB('\r', '\n', 0)
	if serial != "" {
		a.Label("serial")
		a.DB([]byte(serial)...)
		a.DB('\r', '\n', 0)
	}
	return a.Assemble()
}

// waitLoop idles with sti; hlt, waking on every timer tick (18.2 Hz) to
// look for a key, the ACPI power button and the timeout.
func waitLoop(a *asm.Assembler, o Options) {
	findPMBlock(a)
	if o.Timeout > 0 {
		a.LoadAX(tickCount)
		a.Mov(asm.DI, asm.AX) // DI = tick at start
	}

	a.Label("wait")
	a.Sti()
	a.Hlt()
	a.MovImm8(asm.AH, 0x01) // int 16h AH=1: ZF clear when a key is waiting
	a.Int(0x16)
	a.J(asm.JNZ, "poweroff")
	a.Test(asm.BP, asm.BP) // no PM block found
	a.J(asm.JZ, "no_pm")
	a.Mov(asm.DX, asm.BP)
	a.InDX()                  // PM1_STS
	a.TestImm(asm.AX, 0x0100) // PWRBTN_STS
	a.J(asm.JNZ, "poweroff")
	a.Label("no_pm")
	if o.Timeout > 0 {
		a.LoadAX(tickCount)
		a.Sub(asm.AX, asm.DI) // ticks elapsed, modulo 2^16
		a.CmpImm(asm.AX, o.ticks())
		a.J(asm.JAE, "poweroff")
	}
	a.Jmp("wait")

	pmProbe(a)
}

// findPMBlock finds the ACPI PM1 event block: it enables the power button
// event (PWRBTN_EN, bit 8 of PM1_EN at base+2) and keeps the base whose
// register reads it back. BP = base, or 0 when there is none. It calls
// the routine pmProbe emits.
func findPMBlock(a *asm.Assembler) {
	a.MovImm(asm.BP, 0x0600) // QEMU's PIIX4 and ICH9 under SeaBIOS
	a.Call("pmprobe")
	a.J(asm.JE, "pm_found")
	a.MovImm(asm.BP, 0x4000) // VirtualBox
	a.Call("pmprobe")
	a.J(asm.JE, "pm_found")
	a.Xor(asm.BP, asm.BP)
	a.Label("pm_found")
}

// pmProbe emits pmprobe: write PWRBTN_EN to PM1_EN (BP+2); ZF set if it
// reads back.
func pmProbe(a *asm.Assembler) {
	a.Label("pmprobe")
	a.Mov(asm.DX, asm.BP)
	a.Inc(asm.DX)
	a.Inc(asm.DX)
	a.MovImm(asm.AX, 0x0100)
	a.OutDX()
	a.InDX()
	a.CmpImm(asm.AX, 0x0100)
	a.Ret()
}

// poweroff tries APM, then the ACPI sleep registers, then stops the CPU.
func poweroff(a *asm.Assembler) {
	a.Label("poweroff")
	// APM 1.2 through int 15h: connect the real-mode interface, declare
	// driver version 1.2, set all devices (BX=1) to off (CX=3).
	a.MovImm(asm.AX, 0x5301)
	a.Xor(asm.BX, asm.BX)
	a.Int(0x15)
	a.MovImm(asm.AX, 0x530E)
	a.Xor(asm.BX, asm.BX)
	a.MovImm(asm.CX, 0x0102)
	a.Int(0x15)
	a.MovImm(asm.AX, 0x5307)
	a.MovImm(asm.BX, 0x0001)
	a.MovImm(asm.CX, 0x0003)
	a.Int(0x15)
	// ACPI PM1a_CNT: SLP_EN (bit 13) with each machine's S5 SLP_TYP.
	// QEMU and Bochs share the value, so AX is loaded once for both.
	a.MovImm(asm.AX, 0x2000) // SLP_TYP 0
	a.MovImm(asm.DX, 0x0604) // QEMU
	a.OutDX()
	a.MovImm(asm.DX, 0xB004) // Bochs and old QEMU
	a.OutDX()
	a.MovImm(asm.AX, 0x3400) // SLP_TYP 5
	a.MovImm(asm.DX, 0x4004) // VirtualBox
	a.OutDX()
	a.Label("stop")
	a.Cli()
	a.Hlt()
	a.Jmp("stop")
}

// printers are the two string routines: SI points at a NUL-terminated
// string; putscreen uses BIOS teletype (int 10h AH=0Eh), putserial sends
// to COM1 (int 14h AH=1) and exists only when serial output is on. Both
// share the return.
func printers(a *asm.Assembler, serial bool) {
	a.Label("putscreen")
	a.Lodsb()
	a.Test8(asm.AL, asm.AL)
	a.J(asm.JZ, "puts_done")
	a.MovImm8(asm.AH, 0x0E)
	a.MovImm(asm.BX, 0x0007) // page 0, light grey
	a.Int(0x10)
	a.Jmp("putscreen")

	if serial {
		a.Label("putserial")
		a.Lodsb()
		a.Test8(asm.AL, asm.AL)
		a.J(asm.JZ, "puts_done")
		a.MovImm8(asm.AH, 0x01)
		a.Xor(asm.DX, asm.DX)
		a.Int(0x14)
		a.Jmp("putserial")
	}
	a.Label("puts_done")
	a.Ret()
}
