// Package x64 is a small x86-64 assembler: just the 64-bit mode
// instructions the EFI application needs, with labels and fix-ups for
// RIP-relative addresses and relative jumps.
//
// Instructions are methods that append machine code; a label may be used
// before it is defined. Errors are sticky: the first one is kept and
// returned by Assemble, so a program reads as a straight list of
// instructions with no error checks in between.
//
// The code is position independent: data is reached with lea through RIP
// and jumps are relative, so the PE file needs no relocations.
//
// Encodings follow the Intel® 64 and IA-32 Architectures Software
// Developer's Manual, Volume 2, in 64-bit mode.
package x64

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/internal/asmbuf"
)

// Reg is a general register, numbered as in ModRM with REX's extra bit.
type Reg uint8

// The general registers. The 64-bit names are used throughout; methods
// that work on 32 bits say so and use the low half.
const (
	RAX Reg = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
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

// JZ and JNZ are the same conditions as JE and JNE.
const (
	JZ  = JE
	JNZ = JNE
)

// ErrUndefined is returned for a label that is used but never defined.
var ErrUndefined = errors.New("x64: undefined label")

// REX prefix bits.
const (
	rex  = 0x40
	rexW = 0x08 // 64-bit operand size
	rexR = 0x04 // extends ModRM.reg
	rexB = 0x01 // extends ModRM.rm or the opcode's register
)

// opsize is the operand-size prefix that makes in and out 16-bit.
const opsize = 0x66

// The kinds of field a fix-up patches.
const (
	rel8  = iota // a short jump's 8-bit displacement
	rel32        // a 32-bit displacement (near jumps, calls, RIP-relative)
)

// Assembler accumulates a program.
type Assembler struct{ b asmbuf.Buf }

// New returns an empty assembler.
func New() *Assembler { return &Assembler{b: asmbuf.New("x64")} }

// Len is the number of bytes emitted so far.
func (a *Assembler) Len() int { return a.b.Len() }

// Err returns the first error, if any.
func (a *Assembler) Err() error { return a.b.Err() }

func (a *Assembler) fail(format string, args ...any) { a.b.Fail(format, args...) }

func (a *Assembler) emit(b ...byte) { a.b.Emit(b...) }

func (a *Assembler) emit32(v uint32) {
	a.emit(byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}

// Label defines name at the current position.
func (a *Assembler) Label(name string) { a.b.Label(name) }

// Offset returns the offset of a defined label from the start of the code.
func (a *Assembler) Offset(name string) (int, bool) { return a.b.Offset(name) }

// DB emits raw data bytes.
func (a *Assembler) DB(b ...byte) { a.emit(b...) }

// Hlt halts until the next interrupt.
func (a *Assembler) Hlt() { a.emit(0xF4) }

// Ret returns from a near call.
func (a *Assembler) Ret() { a.emit(0xC3) }

// InDX reads a word from the port in DX: in ax, dx.
func (a *Assembler) InDX() { a.emit(opsize, 0xED) }

// OutDX writes AX to the port in DX: out dx, ax.
func (a *Assembler) OutDX() { a.emit(opsize, 0xEF) }

// rexFor returns the REX prefix for a reg and rm pair, or 0 when none is
// needed.
func rexFor(w bool, reg, rm Reg) byte {
	var p byte
	if w {
		p |= rexW
	}
	if reg >= R8 {
		p |= rexR
	}
	if rm >= R8 {
		p |= rexB
	}
	if p == 0 {
		return 0
	}
	return rex | p
}

// op emits an optional REX prefix, the opcode and a register-direct ModRM.
func (a *Assembler) op(w bool, opcode byte, reg, rm Reg) {
	if p := rexFor(w, reg, rm); p != 0 {
		a.emit(p)
	}
	a.emit(opcode, 0xC0|byte(reg&7)<<3|byte(rm&7))
}

// mem emits an optional REX prefix, the opcode and a ModRM (with SIB and
// displacement as needed) for the operand [base+disp].
func (a *Assembler) mem(w bool, opcode byte, reg, base Reg, disp int32) {
	a.memOp(0, w, false, []byte{opcode}, reg, base, disp)
}

// memOp is mem with an optional legacy prefix (0 for none), an opcode of
// one or two bytes and, for byte8, a REX prefix even when none is needed
// otherwise, so that registers 4-7 mean SPL..DIL and not AH..BH.
func (a *Assembler) memOp(prefix byte, w, byte8 bool, opcode []byte, reg, base Reg, disp int32) {
	if prefix != 0 {
		a.emit(prefix) // legacy prefixes go before REX
	}
	p := rexFor(w, reg, base)
	if p == 0 && byte8 && reg&7 >= 4 && reg < R8 {
		p = rex
	}
	if p != 0 {
		a.emit(p)
	}
	a.emit(opcode...)
	var mod byte
	switch {
	case disp == 0 && base&7 != RBP:
		mod = 0x00 // [base]; rm 101 with mod 00 would mean [rip+disp32]
	case disp >= math.MinInt8 && disp <= math.MaxInt8:
		mod = 0x40
	default:
		mod = 0x80
	}
	a.emit(mod | byte(reg&7)<<3 | byte(base&7))
	if base&7 == RSP {
		a.emit(0x24) // SIB: no index, base in rm
	}
	switch mod {
	case 0x40:
		a.emit(byte(int8(disp)))
	case 0x80:
		a.emit32(uint32(disp))
	}
}

// Mov copies a 64-bit register: mov dst, src.
func (a *Assembler) Mov(dst, src Reg) { a.op(true, 0x89, src, dst) }

// Mov32 copies the low 32 bits of a register, clearing the upper half:
// mov dst32, src32.
func (a *Assembler) Mov32(dst, src Reg) { a.op(false, 0x89, src, dst) }

// MovImm32 sets a register to a 32-bit value, clearing the upper half:
// mov r32, imm32.
func (a *Assembler) MovImm32(r Reg, v uint32) {
	if r >= R8 {
		a.emit(rex | rexB)
	}
	a.emit(0xB8 + byte(r&7))
	a.emit32(v)
}

// Load reads 64 bits from memory: mov dst, qword [base+disp].
func (a *Assembler) Load(dst, base Reg, disp int32) { a.mem(true, 0x8B, dst, base, disp) }

// Store writes 64 bits to memory: mov qword [base+disp], src.
func (a *Assembler) Store(base Reg, disp int32, src Reg) { a.mem(true, 0x89, src, base, disp) }

// Load32 reads 32 bits from memory, clearing the upper half:
// mov dst32, dword [base+disp].
func (a *Assembler) Load32(dst, base Reg, disp int32) { a.mem(false, 0x8B, dst, base, disp) }

// LoadByte reads a byte and zero-extends it:
// movzx dst32, byte [base+disp].
func (a *Assembler) LoadByte(dst, base Reg, disp int32) {
	a.memOp(0, false, false, []byte{0x0F, 0xB6}, dst, base, disp)
}

// LoadWord reads 16 bits and zero-extends them:
// movzx dst32, word [base+disp].
func (a *Assembler) LoadWord(dst, base Reg, disp int32) {
	a.memOp(0, false, false, []byte{0x0F, 0xB7}, dst, base, disp)
}

// Store32 writes a register's low 32 bits: mov dword [base+disp], src32.
func (a *Assembler) Store32(base Reg, disp int32, src Reg) { a.mem(false, 0x89, src, base, disp) }

// Store16 writes a register's low 16 bits: mov word [base+disp], src16.
func (a *Assembler) Store16(base Reg, disp int32, src Reg) {
	a.memOp(opsize, false, false, []byte{0x89}, src, base, disp)
}

// Store8 writes a register's low byte: mov byte [base+disp], src8.
func (a *Assembler) Store8(base Reg, disp int32, src Reg) {
	a.memOp(0, false, true, []byte{0x88}, src, base, disp)
}

// LeaMem computes an address: lea dst, [base+disp].
func (a *Assembler) LeaMem(dst, base Reg, disp int32) { a.mem(true, 0x8D, dst, base, disp) }

// Lea loads a label's address relative to RIP: lea dst, [rip+label].
func (a *Assembler) Lea(dst Reg, label string) {
	a.emit(rexFor(true, dst, 0), 0x8D, 0x05|byte(dst&7)<<3)
	a.ref(label, rel32)
}

// MovImm64 sets a register to a 64-bit value: mov r, imm64.
func (a *Assembler) MovImm64(r Reg, v uint64) {
	a.emit(rexFor(true, 0, r), 0xB8+byte(r&7))
	a.emit32(uint32(v))
	a.emit32(uint32(v >> 32))
}

// Add adds two 64-bit registers: add dst, src.
func (a *Assembler) Add(dst, src Reg) { a.op(true, 0x01, src, dst) }

// Sub subtracts two 64-bit registers: sub dst, src.
func (a *Assembler) Sub(dst, src Reg) { a.op(true, 0x29, src, dst) }

// Cmp compares two 64-bit registers: cmp x, y.
func (a *Assembler) Cmp(x, y Reg) { a.op(true, 0x39, y, x) }

// Test ANDs two 64-bit registers for the flags: test x, y.
func (a *Assembler) Test(x, y Reg) { a.op(true, 0x85, y, x) }

// Div32 divides EDX:EAX by a register's low half, unsigned: div r32
// leaves the quotient in EAX and the remainder in EDX.
func (a *Assembler) Div32(r Reg) { a.op(false, 0xF7, 6, r) }

// Xor32 sets dst to dst XOR src on 32 bits, clearing the upper half:
// xor dst32, src32. xor r, r is the short way to zero a register.
func (a *Assembler) Xor32(dst, src Reg) { a.op(false, 0x31, src, dst) }

// Test32 ANDs two registers' low halves for the flags: test x32, y32.
func (a *Assembler) Test32(x, y Reg) { a.op(false, 0x85, y, x) }

// TestImm32 ANDs a register's low half with an immediate for the flags:
// test r32, imm32.
func (a *Assembler) TestImm32(r Reg, v uint32) {
	if r == RAX {
		a.emit(0xA9)
	} else {
		a.op(false, 0xF7, 0, r)
	}
	a.emit32(v)
}

// CmpImm32 compares a register's low half with an immediate: cmp r32, imm32.
func (a *Assembler) CmpImm32(r Reg, v uint32) {
	if r == RAX {
		a.emit(0x3D)
	} else {
		a.op(false, 0x81, 7, r)
	}
	a.emit32(v)
}

// AddImm8 adds a small signed immediate to a 64-bit register:
// add r, imm8 (sign-extended).
func (a *Assembler) AddImm8(r Reg, v int8) {
	a.op(true, 0x83, 0, r)
	a.emit(byte(v))
}

// SubImm8 subtracts a small signed immediate from a 64-bit register:
// sub r, imm8 (sign-extended).
func (a *Assembler) SubImm8(r Reg, v int8) {
	a.op(true, 0x83, 5, r)
	a.emit(byte(v))
}

// AddImm32 adds a signed 32-bit immediate to a 64-bit register:
// add r, imm32 (sign-extended).
func (a *Assembler) AddImm32(r Reg, v int32) {
	a.op(true, 0x81, 0, r)
	a.emit32(uint32(v))
}

// SubImm32 subtracts a signed 32-bit immediate from a 64-bit register:
// sub r, imm32 (sign-extended).
func (a *Assembler) SubImm32(r Reg, v int32) {
	a.op(true, 0x81, 5, r)
	a.emit32(uint32(v))
}

// Dec32 subtracts one from a register's low half: dec r32.
func (a *Assembler) Dec32(r Reg) { a.op(false, 0xFF, 1, r) }

// CallMem calls the function whose address is at [base+disp]:
// call qword [base+disp].
func (a *Assembler) CallMem(base Reg, disp int32) { a.mem(false, 0xFF, 2, base, disp) }

// Call calls the subroutine at label: call rel32.
func (a *Assembler) Call(label string) {
	a.emit(0xE8)
	a.ref(label, rel32)
}

// J jumps to label when cond holds: Jcc rel8. The target must be within
// -128..127 bytes; a farther one is an error.
func (a *Assembler) J(cond Cond, label string) {
	a.emit(0x70 + byte(cond))
	a.ref(label, rel8)
}

// JNear jumps to label when cond holds, anywhere in the code:
// Jcc rel32.
func (a *Assembler) JNear(cond Cond, label string) {
	a.emit(0x0F, 0x80+byte(cond))
	a.ref(label, rel32)
}

// JmpNear jumps to label anywhere in the code: jmp rel32.
func (a *Assembler) JmpNear(label string) {
	a.emit(0xE9)
	a.ref(label, rel32)
}

// Jmp jumps to label: jmp rel8 (short).
func (a *Assembler) Jmp(label string) {
	a.emit(0xEB)
	a.ref(label, rel8)
}

// ref reserves a field for a label's relative address, patched by
// Assemble. Every field that refers to a label ends its instruction, so
// the field's end is where the processor counts from.
func (a *Assembler) ref(label string, k int) {
	size := 4
	if k == rel8 {
		size = 1
	}
	at := a.b.Len()
	a.emit(make([]byte, size)...)
	a.b.Fix(asmbuf.Fixup{At: at, End: a.b.Len(), Label: label, Kind: k})
}

// Assemble resolves every label reference and returns the machine code.
func (a *Assembler) Assemble() ([]byte, error) {
	return a.b.Resolve(ErrUndefined, func(out []byte, f asmbuf.Fixup, target int) error {
		d := target - f.End
		switch f.Kind {
		case rel8:
			if d < math.MinInt8 || d > math.MaxInt8 {
				return fmt.Errorf("x64: short jump to %q is %d bytes away, beyond -128..127", f.Label, d)
			}
			out[f.At] = byte(int8(d))
		case rel32:
			binary.LittleEndian.PutUint32(out[f.At:], uint32(int32(d)))
		}
		return nil
	})
}
