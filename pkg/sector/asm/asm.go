// Package asm is a small 16-bit x86 assembler: just the real-mode
// instructions the boot sector needs, with labels and jump fix-ups.
//
// Instructions are methods that append machine code; a label may be used
// before it is defined. Errors are sticky: the first one is kept and
// returned by Assemble, so a program reads as a straight list of
// instructions with no error checks in between.
//
// Encodings follow the Intel® 64 and IA-32 Architectures Software
// Developer's Manual, Volume 2, with 16-bit operand and address size.
package asm

import (
	"errors"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/internal/asmbuf"
)

// Reg is a 16-bit general register, numbered as in ModRM.
type Reg uint8

// The 16-bit general registers.
const (
	AX Reg = iota
	CX
	DX
	BX
	SP
	BP
	SI
	DI
)

// Reg8 is an 8-bit general register, numbered as in ModRM.
type Reg8 uint8

// The 8-bit general registers.
const (
	AL Reg8 = iota
	CL
	DL
	BL
	AH
	CH
	DH
	BH
)

// SReg is a segment register, numbered as in ModRM.
type SReg uint8

// The segment registers.
const (
	ES SReg = iota
	CS
	SS
	DS
)

// Cond is a condition code of Jcc (the low nibble of opcode 0x70+cc).
type Cond uint8

// Conditions for Jcc.
const (
	JB  Cond = 0x2 // below (CF=1)
	JAE Cond = 0x3 // above or equal (CF=0)
	JE  Cond = 0x4 // equal (ZF=1)
	JNE Cond = 0x5 // not equal (ZF=0)
	JBE Cond = 0x6 // below or equal (CF=1 or ZF=1)
	JA  Cond = 0x7 // above (CF=0 and ZF=0)
)

// JZ and JNZ are the same conditions as JE and JNE; JC and JNC test
// the carry flag, as JB and JAE do.
const (
	JZ  = JE
	JNZ = JNE
	JC  = JB
	JNC = JAE
)

// ErrUndefined is returned for a label that is used but never defined.
var ErrUndefined = errors.New("asm: undefined label")

// The kinds of field a fix-up patches.
const (
	rel8  = iota // a short jump's 8-bit displacement
	rel16        // a near jump's or call's 16-bit displacement
	abs16        // a label's 16-bit load address
)

// Assembler accumulates a program that will be loaded at Origin.
type Assembler struct {
	origin uint16
	b      asmbuf.Buf
}

// New returns an assembler for code loaded at origin, such as 0x7C00.
func New(origin uint16) *Assembler {
	return &Assembler{origin: origin, b: asmbuf.New("asm")}
}

// Origin is the load address given to New.
func (a *Assembler) Origin() uint16 { return a.origin }

// Len is the number of bytes emitted so far.
func (a *Assembler) Len() int { return a.b.Len() }

// Err returns the first error, if any.
func (a *Assembler) Err() error { return a.b.Err() }

func (a *Assembler) fail(format string, args ...any) { a.b.Fail(format, args...) }

func (a *Assembler) emit(b ...byte) { a.b.Emit(b...) }

func (a *Assembler) emit16(v uint16) { a.emit(byte(v), byte(v>>8)) }

// Equ defines name as a fixed load address, such as a buffer outside the
// program or the entry of another one; it is used like a label.
func (a *Assembler) Equ(name string, addr uint16) {
	// Labels are offsets from the origin; an address below it is a
	// negative offset, which the fix-ups handle alike.
	a.b.Define(name, int(addr)-int(a.origin))
}

// Label defines name at the current position.
func (a *Assembler) Label(name string) { a.b.Label(name) }

// Addr returns the load address of a defined label.
func (a *Assembler) Addr(name string) (uint16, bool) {
	off, ok := a.b.Offset(name)
	return a.origin + uint16(off), ok
}

// DB emits raw data bytes.
func (a *Assembler) DB(b ...byte) { a.emit(b...) }

// Cli clears the interrupt flag.
func (a *Assembler) Cli() { a.emit(0xFA) }

// Sti sets the interrupt flag.
func (a *Assembler) Sti() { a.emit(0xFB) }

// Cld clears the direction flag, so string instructions count up.
func (a *Assembler) Cld() { a.emit(0xFC) }

// Hlt halts until the next interrupt.
func (a *Assembler) Hlt() { a.emit(0xF4) }

// Ret returns from a near call.
func (a *Assembler) Ret() { a.emit(0xC3) }

// Lodsb loads AL from DS:SI and advances SI.
func (a *Assembler) Lodsb() { a.emit(0xAC) }

// Int raises software interrupt n.
func (a *Assembler) Int(n byte) { a.emit(0xCD, n) }

// MovImm sets a 16-bit register: mov r16, imm16.
func (a *Assembler) MovImm(r Reg, v uint16) {
	a.emit(0xB8 + byte(r))
	a.emit16(v)
}

// MovImm8 sets an 8-bit register: mov r8, imm8.
func (a *Assembler) MovImm8(r Reg8, v byte) { a.emit(0xB0+byte(r), v) }

// MovAddr loads a label's address: mov r16, imm16.
func (a *Assembler) MovAddr(r Reg, label string) {
	a.emit(0xB8 + byte(r))
	a.ref(label, abs16, 2)
}

// Mov copies a register: mov dst, src.
func (a *Assembler) Mov(dst, src Reg) { a.emit(0x89, modrm(byte(src), byte(dst))) }

// MovSeg loads a segment register: mov sreg, r16.
func (a *Assembler) MovSeg(dst SReg, src Reg) { a.emit(0x8E, modrm(byte(dst), byte(src))) }

// LoadAX loads AX from the word at DS:addr: mov ax, [addr].
func (a *Assembler) LoadAX(addr uint16) {
	a.emit(0xA1)
	a.emit16(addr)
}

// Xor sets dst to dst XOR src: xor dst, src.
func (a *Assembler) Xor(dst, src Reg) { a.emit(0x31, modrm(byte(src), byte(dst))) }

// Sub sets dst to dst - src: sub dst, src.
func (a *Assembler) Sub(dst, src Reg) { a.emit(0x29, modrm(byte(src), byte(dst))) }

// Cmp compares two registers: cmp dst, src.
func (a *Assembler) Cmp(dst, src Reg) { a.emit(0x39, modrm(byte(src), byte(dst))) }

// CmpImm compares a register with an immediate: cmp r16, imm16.
func (a *Assembler) CmpImm(r Reg, v uint16) {
	if r == AX {
		a.emit(0x3D)
	} else {
		a.emit(0x81, modrm(7, byte(r)))
	}
	a.emit16(v)
}

// Test ANDs two registers for the flags: test a, b.
func (a *Assembler) Test(x, y Reg) { a.emit(0x85, modrm(byte(y), byte(x))) }

// Test8 ANDs two 8-bit registers for the flags: test a, b.
func (a *Assembler) Test8(x, y Reg8) { a.emit(0x84, modrm(byte(y), byte(x))) }

// TestImm ANDs a register with an immediate for the flags: test r16, imm16.
func (a *Assembler) TestImm(r Reg, v uint16) {
	if r == AX {
		a.emit(0xA9)
	} else {
		a.emit(0xF7, modrm(0, byte(r)))
	}
	a.emit16(v)
}

// Inc adds one to a register: inc r16.
func (a *Assembler) Inc(r Reg) { a.emit(0x40 + byte(r)) }

// Push pushes a register: push r16.
func (a *Assembler) Push(r Reg) { a.emit(0x50 + byte(r)) }

// Pop pops a register: pop r16.
func (a *Assembler) Pop(r Reg) { a.emit(0x58 + byte(r)) }

// InDX reads a word from the port in DX: in ax, dx.
func (a *Assembler) InDX() { a.emit(0xED) }

// OutDX writes AX to the port in DX: out dx, ax.
func (a *Assembler) OutDX() { a.emit(0xEF) }

// OutImm8 writes AL to an 8-bit port number: out imm8, al.
func (a *Assembler) OutImm8(port byte) { a.emit(0xE6, port) }

// JmpFar jumps to seg:off: jmp far ptr16:16.
func (a *Assembler) JmpFar(seg, off uint16) {
	a.emit(0xEA)
	a.emit16(off)
	a.emit16(seg)
}

// J jumps to label when cond holds: Jcc rel8. The target must be within
// -128..127 bytes; a farther one is an error.
func (a *Assembler) J(cond Cond, label string) {
	a.emit(0x70 + byte(cond))
	a.ref(label, rel8, 1)
}

// JNear jumps to label when cond holds: Jcc rel16, for targets beyond
// the short range.
func (a *Assembler) JNear(cond Cond, label string) {
	a.emit(0x0F, 0x80+byte(cond))
	a.ref(label, rel16, 2)
}

// Jmp jumps to label: jmp rel8 (short).
func (a *Assembler) Jmp(label string) {
	a.emit(0xEB)
	a.ref(label, rel8, 1)
}

// JmpNear jumps to label: jmp rel16.
func (a *Assembler) JmpNear(label string) {
	a.emit(0xE9)
	a.ref(label, rel16, 2)
}

// Call calls the subroutine at label: call rel16.
func (a *Assembler) Call(label string) {
	a.emit(0xE8)
	a.ref(label, rel16, 2)
}

// DW emits a label's load address as a 16-bit data word.
func (a *Assembler) DW(label string) { a.ref(label, abs16, 2) }

// Memory operands name a label (or an Equ address) and use the direct
// 16-bit address form: ModRM mod 00, r/m 110, disp16.
func (a *Assembler) mem(op byte, reg byte, label string) {
	a.emit(op, reg<<3|0x06)
	a.ref(label, abs16, 2)
}

// Load loads a word: mov r16, [label].
func (a *Assembler) Load(r Reg, label string) { a.mem(0x8B, byte(r), label) }

// Store stores a word: mov [label], r16.
func (a *Assembler) Store(label string, r Reg) { a.mem(0x89, byte(r), label) }

// Load8 loads a byte: mov r8, [label].
func (a *Assembler) Load8(r Reg8, label string) { a.mem(0x8A, byte(r), label) }

// Store8 stores a byte: mov [label], r8.
func (a *Assembler) Store8(label string, r Reg8) { a.mem(0x88, byte(r), label) }

// IncMem adds one to a word in memory: inc word [label].
func (a *Assembler) IncMem(label string) { a.mem(0xFF, 0, label) }

// Add sets dst to dst + src: add dst, src.
func (a *Assembler) Add(dst, src Reg) { a.emit(0x01, modrm(byte(src), byte(dst))) }

// Or sets dst to dst OR src: or dst, src.
func (a *Assembler) Or(dst, src Reg) { a.emit(0x09, modrm(byte(src), byte(dst))) }

// arith emits a group-1 operation (ext is the ModRM reg field) with an
// immediate, the sign-extended 8-bit form when the value allows it.
func (a *Assembler) arith(ext byte, r Reg, v uint16) {
	if int16(v) >= -128 && int16(v) <= 127 {
		a.emit(0x83, modrm(ext, byte(r)), byte(v))
		return
	}
	a.emit(0x81, modrm(ext, byte(r)))
	a.emit16(v)
}

// AddImm adds an immediate: add r16, imm.
func (a *Assembler) AddImm(r Reg, v uint16) { a.arith(0, r, v) }

// AdcImm adds an immediate and the carry: adc r16, imm, the upper half
// of a 32-bit addition.
func (a *Assembler) AdcImm(r Reg, v uint16) { a.arith(2, r, v) }

// SubImm subtracts an immediate: sub r16, imm.
func (a *Assembler) SubImm(r Reg, v uint16) { a.arith(5, r, v) }

// Dec subtracts one from a register: dec r16.
func (a *Assembler) Dec(r Reg) { a.emit(0x48 + byte(r)) }

// Div divides DX:AX by a register, unsigned: div r16 leaves the quotient
// in AX and the remainder in DX.
func (a *Assembler) Div(r Reg) { a.emit(0xF7, modrm(6, byte(r))) }

// Cmp8 compares two 8-bit registers: cmp dst, src.
func (a *Assembler) Cmp8(dst, src Reg8) { a.emit(0x38, modrm(byte(src), byte(dst))) }

// CmpImm8 compares an 8-bit register with an immediate: cmp r8, imm8.
func (a *Assembler) CmpImm8(r Reg8, v byte) {
	if r == AL {
		a.emit(0x3C, v)
		return
	}
	a.emit(0x80, modrm(7, byte(r)), v)
}

// TestImm8 ANDs an 8-bit register with an immediate for the flags:
// test r8, imm8.
func (a *Assembler) TestImm8(r Reg8, v byte) {
	if r == AL {
		a.emit(0xA8, v)
		return
	}
	a.emit(0xF6, modrm(0, byte(r)), v)
}

// RepeCmpsb compares CX bytes at DS:SI and ES:DI while they are equal:
// repe cmpsb. ZF is set when all of them were.
func (a *Assembler) RepeCmpsb() { a.emit(0xF3, 0xA6) }

// RepMovsw copies CX words from DS:SI to ES:DI: rep movsw.
func (a *Assembler) RepMovsw() { a.emit(0xF3, 0xA5) }

// ref reserves a size-byte field for a label's address, patched by Assemble.
func (a *Assembler) ref(label string, k, size int) {
	at := a.b.Len()
	a.emit(make([]byte, size)...)
	a.b.Fix(asmbuf.Fixup{At: at, End: a.b.Len(), Label: label, Kind: k})
}

// Assemble resolves every label reference and returns the machine code.
func (a *Assembler) Assemble() ([]byte, error) {
	return a.b.Resolve(ErrUndefined, func(out []byte, f asmbuf.Fixup, target int) error {
		switch f.Kind {
		case rel8:
			d := target - f.End
			if d < -128 || d > 127 {
				return fmt.Errorf("asm: short jump to %q is %d bytes away, beyond -128..127", f.Label, d)
			}
			out[f.At] = byte(int8(d))
		case rel16:
			d := uint16(target - f.End)
			out[f.At], out[f.At+1] = byte(d), byte(d>>8)
		case abs16:
			v := a.origin + uint16(target)
			out[f.At], out[f.At+1] = byte(v), byte(v>>8)
		}
		return nil
	})
}

// modrm encodes a register-direct ModRM byte (mod = 11).
func modrm(reg, rm byte) byte { return 0xC0 | reg<<3 | rm }
