// Package a64 is a small AArch64 (A64) assembler: just the instructions
// the EFI application needs, with labels and fix-ups for branches and
// ADR.
//
// Instructions are methods that append one 32-bit little-endian word each
// (MovImm may append several); a label may be used before it is defined.
// Errors are sticky: the first one is kept and returned by Assemble, so a
// program reads as a straight list of instructions with no error checks in
// between.
//
// The code is position independent: data is reached with ADR and branches
// are relative, so the PE file needs no relocations.
//
// Encodings follow the Arm® Architecture Reference Manual for A-profile
// architecture (DDI 0487), section C6, "A64 Base Instruction Descriptions".
package a64

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/internal/asmbuf"
)

// Reg is a general register number. Register 31 is SP or the zero
// register depending on the instruction; each method says which.
type Reg uint8

// The general registers.
const (
	X0 Reg = iota
	X1
	X2
	X3
	X4
	X5
	X6
	X7
	X8
	X9
	X10
	X11
	X12
	X13
	X14
	X15
	X16
	X17
	X18
	X19
	X20
	X21
	X22
	X23
	X24
	X25
	X26
	X27
	X28
	X29
	X30
	// SP is the stack pointer, register 31 in ADD, SUB and the address
	// base of loads and stores.
	SP Reg = 31
	// XZR is the zero register, register 31 elsewhere.
	XZR Reg = 31
)

// Cond is a condition code of B.cond.
type Cond uint8

// Conditions for B.cond.
const (
	EQ Cond = 0x0 // equal (Z=1)
	NE Cond = 0x1 // not equal (Z=0)
	HS Cond = 0x2 // unsigned higher or same (C=1)
	LO Cond = 0x3 // unsigned lower (C=0)
)

// ErrUndefined is returned for a label that is used but never defined.
var ErrUndefined = errors.New("a64: undefined label")

// Base opcodes, with every variable field zero.
const (
	opMovz64   = 0xD2800000 // MOVZ Xd, #imm16, LSL #hw*16
	opMovk64   = 0xF2800000 // MOVK Xd, #imm16, LSL #hw*16
	opOrr64    = 0xAA000000 // ORR Xd, Xn, Xm (shifted register)
	opAdd64    = 0x91000000 // ADD Xd|SP, Xn|SP, #imm12
	opSub64    = 0xD1000000 // SUB Xd|SP, Xn|SP, #imm12
	opSubs32   = 0x71000000 // SUBS Wd, Wn|WSP, #imm12
	opSubs64r  = 0xEB000000 // SUBS Xd, Xn, Xm (shifted register)
	opAnds32r  = 0x6A000000 // ANDS Wd, Wn, Wm (shifted register)
	opLdr64    = 0xF9400000 // LDR Xt, [Xn|SP, #imm12*8]
	opLdr32    = 0xB9400000 // LDR Wt, [Xn|SP, #imm12*4]
	opStr64    = 0xF9000000 // STR Xt, [Xn|SP, #imm12*8]
	opAdr      = 0x10000000 // ADR Xd, label
	opBlr      = 0xD63F0000 // BLR Xn
	opWfi      = 0xD503207F // WFI
	opB        = 0x14000000 // B label
	opBCond    = 0x54000000 // B.cond label
	opCbz64    = 0xB4000000 // CBZ Xt, label
	opCbnz64   = 0xB5000000 // CBNZ Xt, label
	opBl       = 0x94000000 // BL label
	opRet      = 0xD65F0000 // RET Xn
	opAdd64r   = 0x8B000000 // ADD Xd, Xn, Xm, LSL #imm6 (shifted register)
	opSubs64i  = 0xF1000000 // SUBS Xd, Xn|SP, #imm12
	opUdiv64   = 0x9AC00800 // UDIV Xd, Xn, Xm
	opMsub64   = 0x9B008000 // MSUB Xd, Xn, Xm, Xa
	opUbfm64   = 0xD3400000 // UBFM Xd, Xn, #immr, #imms (LSL and LSR)
	opLdrb     = 0x39400000 // LDRB Wt, [Xn|SP, #imm12]
	opStrb     = 0x39000000 // STRB Wt, [Xn|SP, #imm12]
	opLdrh     = 0x79400000 // LDRH Wt, [Xn|SP, #imm12*2]
	opStrh     = 0x79000000 // STRH Wt, [Xn|SP, #imm12*2]
	opStr32    = 0xB9000000 // STR Wt, [Xn|SP, #imm12*4]
	opLdurb    = 0x38400000 // LDURB Wt, [Xn|SP, #simm9]
	opLdrbPost = 0x38400400 // LDRB Wt, [Xn|SP], #simm9
	opStrbPost = 0x38000400 // STRB Wt, [Xn|SP], #simm9
	opStrhPost = 0x78000400 // STRH Wt, [Xn|SP], #simm9
	shiftRa    = 10         // MSUB's addend
	shiftImm6  = 10         // the shift amount of a shifted register
	shiftImm9  = 12         // simm9 of unscaled and post-indexed loads and stores
	shiftImmr  = 16         // UBFM's rotate
	immMax12   = 1<<12 - 1
	shiftRn    = 5
	shiftRm    = 16
	shiftImm   = 10 // imm12 of ADD, SUB and loads and stores
	shiftHw    = 21 // MOVZ and MOVK's halfword number
	shiftIm16  = 5
)

// The kinds of field a fix-up patches, in the instruction at the fix-up
// (A64 branches count from their own address).
const (
	imm26 = iota // B: bits 0-25, in words
	imm19        // B.cond, CBZ: bits 5-23, in words
	adr21        // ADR: immlo bits 29-30, immhi bits 5-23, in bytes
)

// Assembler accumulates a program.
type Assembler struct{ b asmbuf.Buf }

// New returns an empty assembler.
func New() *Assembler { return &Assembler{b: asmbuf.New("a64")} }

// Len is the number of bytes emitted so far.
func (a *Assembler) Len() int { return a.b.Len() }

// Err returns the first error, if any.
func (a *Assembler) Err() error { return a.b.Err() }

func (a *Assembler) fail(format string, args ...any) { a.b.Fail(format, args...) }

func (a *Assembler) emit(w uint32) {
	if a.b.Len()%4 != 0 {
		a.fail("instruction at offset %d is not 4-byte aligned", a.b.Len())
	}
	a.b.Code = binary.LittleEndian.AppendUint32(a.b.Code, w)
}

// Label defines name at the current position.
func (a *Assembler) Label(name string) { a.b.Label(name) }

// Offset returns the offset of a defined label from the start of the code.
func (a *Assembler) Offset(name string) (int, bool) { return a.b.Offset(name) }

// DB emits raw data bytes. An instruction after them must start on a
// 4-byte boundary, and so must a branch target; either is an error
// otherwise.
func (a *Assembler) DB(b ...byte) { a.b.Emit(b...) }

func (a *Assembler) reg(r Reg) uint32 {
	if r > 31 {
		a.fail("no register %d", r)
	}
	return uint32(r & 31)
}

// MovImm sets a 64-bit register to v with MOVZ and a MOVK for each other
// non-zero halfword. The zero register is not allowed.
func (a *Assembler) MovImm(rd Reg, v uint64) {
	d := a.reg(rd)
	if v == 0 {
		a.emit(opMovz64 | d)
		return
	}
	op := uint32(opMovz64)
	for hw := uint32(0); hw < 4; hw++ {
		if h := uint32(v>>(16*hw)) & 0xFFFF; h != 0 {
			a.emit(op | hw<<shiftHw | h<<shiftIm16 | d)
			op = opMovk64
		}
	}
}

// Mov copies a register: ORR Xd, XZR, Xm. Register 31 is XZR here; use
// AddImm(d, SP, 0) to copy SP.
func (a *Assembler) Mov(rd, rm Reg) {
	a.emit(opOrr64 | a.reg(rm)<<shiftRm | uint32(XZR)<<shiftRn | a.reg(rd))
}

func (a *Assembler) imm12(what string, v uint32) uint32 {
	if v > immMax12 {
		a.fail("%s immediate %d does not fit in 12 bits", what, v)
	}
	return v & immMax12
}

// AddImm adds a 12-bit immediate: ADD Xd, Xn, #imm. Register 31 is SP.
func (a *Assembler) AddImm(rd, rn Reg, imm uint32) {
	a.emit(opAdd64 | a.imm12("add", imm)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// SubImm subtracts a 12-bit immediate: SUB Xd, Xn, #imm. Register 31 is
// SP.
func (a *Assembler) SubImm(rd, rn Reg, imm uint32) {
	a.emit(opSub64 | a.imm12("sub", imm)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// SubsImm32 subtracts a 12-bit immediate on 32 bits and sets the flags:
// SUBS Wd, Wn, #imm.
func (a *Assembler) SubsImm32(rd, rn Reg, imm uint32) {
	a.emit(opSubs32 | a.imm12("subs", imm)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// Cmp compares two 64-bit registers: CMP Xn, Xm (SUBS XZR, Xn, Xm).
func (a *Assembler) Cmp(rn, rm Reg) {
	a.emit(opSubs64r | a.reg(rm)<<shiftRm | a.reg(rn)<<shiftRn | uint32(XZR))
}

// Tst32 ANDs two 32-bit registers for the flags: TST Wn, Wm (ANDS WZR,
// Wn, Wm).
func (a *Assembler) Tst32(rn, rm Reg) {
	a.emit(opAnds32r | a.reg(rm)<<shiftRm | a.reg(rn)<<shiftRn | uint32(XZR))
}

// scaled checks that off is a multiple of size below 4096*size and
// returns it in units of size.
func (a *Assembler) scaled(off, size uint32) uint32 {
	if off%size != 0 || off/size > immMax12 {
		a.fail("offset %d is not a multiple of %d below %d", off, size, size*(immMax12+1))
	}
	return (off / size) & immMax12
}

// Ldr loads 64 bits: LDR Xt, [Xn, #off]. The base register 31 is SP.
func (a *Assembler) Ldr(rt, rn Reg, off uint32) {
	a.emit(opLdr64 | a.scaled(off, 8)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Ldr32 loads 32 bits, clearing the upper half: LDR Wt, [Xn, #off].
func (a *Assembler) Ldr32(rt, rn Reg, off uint32) {
	a.emit(opLdr32 | a.scaled(off, 4)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Str stores 64 bits: STR Xt, [Xn, #off]. The base register 31 is SP.
func (a *Assembler) Str(rt, rn Reg, off uint32) {
	a.emit(opStr64 | a.scaled(off, 8)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Ldrb loads a byte, zero-extended: LDRB Wt, [Xn, #off]. The base
// register 31 is SP; the register 31 stored is the zero register.
func (a *Assembler) Ldrb(rt, rn Reg, off uint32) {
	a.emit(opLdrb | a.scaled(off, 1)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Strb stores the low byte of Wt: STRB Wt, [Xn, #off]. Register 31 as
// Rt is WZR.
func (a *Assembler) Strb(rt, rn Reg, off uint32) {
	a.emit(opStrb | a.scaled(off, 1)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Ldrh loads 16 bits, zero-extended: LDRH Wt, [Xn, #off].
func (a *Assembler) Ldrh(rt, rn Reg, off uint32) {
	a.emit(opLdrh | a.scaled(off, 2)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Strh stores the low 16 bits of Wt: STRH Wt, [Xn, #off]. Register 31
// as Rt is WZR.
func (a *Assembler) Strh(rt, rn Reg, off uint32) {
	a.emit(opStrh | a.scaled(off, 2)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Str32 stores 32 bits: STR Wt, [Xn, #off]. Register 31 as Rt is WZR.
func (a *Assembler) Str32(rt, rn Reg, off uint32) {
	a.emit(opStr32 | a.scaled(off, 4)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rt))
}

func (a *Assembler) simm9(off int32) uint32 {
	if off < -256 || off > 255 {
		a.fail("offset %d does not fit in 9 signed bits", off)
	}
	return uint32(off) & 0x1FF
}

// Ldurb loads the byte at an unscaled signed offset: LDURB Wt, [Xn,
// #off], off from -256 to 255.
func (a *Assembler) Ldurb(rt, rn Reg, off int32) {
	a.emit(opLdurb | a.simm9(off)<<shiftImm9 | a.reg(rn)<<shiftRn | a.reg(rt))
}

// LdrbPost loads a byte and then adds inc to the base: LDRB Wt, [Xn],
// #inc.
func (a *Assembler) LdrbPost(rt, rn Reg, inc int32) {
	a.emit(opLdrbPost | a.simm9(inc)<<shiftImm9 | a.reg(rn)<<shiftRn | a.reg(rt))
}

// StrbPost stores a byte and then adds inc to the base: STRB Wt, [Xn],
// #inc. Register 31 as Rt is WZR.
func (a *Assembler) StrbPost(rt, rn Reg, inc int32) {
	a.emit(opStrbPost | a.simm9(inc)<<shiftImm9 | a.reg(rn)<<shiftRn | a.reg(rt))
}

// StrhPost stores 16 bits and then adds inc to the base: STRH Wt, [Xn],
// #inc. Register 31 as Rt is WZR.
func (a *Assembler) StrhPost(rt, rn Reg, inc int32) {
	a.emit(opStrhPost | a.simm9(inc)<<shiftImm9 | a.reg(rn)<<shiftRn | a.reg(rt))
}

// Add adds a register shifted left: ADD Xd, Xn, Xm, LSL #shift.
// Register 31 is XZR here, not SP.
func (a *Assembler) Add(rd, rn, rm Reg, shift uint8) {
	if shift > 63 {
		a.fail("shift %d is over 63", shift)
	}
	a.emit(opAdd64r | a.reg(rm)<<shiftRm | uint32(shift&63)<<shiftImm6 | a.reg(rn)<<shiftRn | a.reg(rd))
}

// Subs subtracts two 64-bit registers and sets the flags: SUBS Xd, Xn,
// Xm. Register 31 is XZR.
func (a *Assembler) Subs(rd, rn, rm Reg) {
	a.emit(opSubs64r | a.reg(rm)<<shiftRm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// CmpImm compares a 64-bit register with a 12-bit immediate: CMP Xn,
// #imm (SUBS XZR, Xn, #imm). Register 31 is SP.
func (a *Assembler) CmpImm(rn Reg, imm uint32) {
	a.emit(opSubs64i | a.imm12("cmp", imm)<<shiftImm | a.reg(rn)<<shiftRn | uint32(XZR))
}

// Udiv divides unsigned 64-bit registers: UDIV Xd, Xn, Xm (Xd = Xn /
// Xm).
func (a *Assembler) Udiv(rd, rn, rm Reg) {
	a.emit(opUdiv64 | a.reg(rm)<<shiftRm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// Msub multiplies and subtracts: MSUB Xd, Xn, Xm, Xa (Xd = Xa - Xn*Xm),
// the remainder after Udiv.
func (a *Assembler) Msub(rd, rn, rm, ra Reg) {
	a.emit(opMsub64 | a.reg(rm)<<shiftRm | a.reg(ra)<<shiftRa | a.reg(rn)<<shiftRn | a.reg(rd))
}

// LslImm shifts left by a constant: LSL Xd, Xn, #shift (UBFM Xd, Xn,
// #(64-shift)%64, #63-shift).
func (a *Assembler) LslImm(rd, rn Reg, shift uint8) {
	if shift > 63 {
		a.fail("shift %d is over 63", shift)
	}
	s := uint32(shift & 63)
	a.emit(opUbfm64 | ((64-s)%64)<<shiftImmr | (63-s)<<shiftImm | a.reg(rn)<<shiftRn | a.reg(rd))
}

// Align pads with zero bytes to a multiple of n bytes, for data that
// must be aligned, such as an EFI_GUID (8 bytes).
func (a *Assembler) Align(n int) {
	for a.b.Len()%n != 0 {
		a.b.Emit(0)
	}
}

// Adr loads a label's address relative to the instruction: ADR Xd, label.
func (a *Assembler) Adr(rd Reg, label string) { a.ref(opAdr|a.reg(rd), label, adr21) }

// Blr calls the function whose address is in Xn: BLR Xn.
func (a *Assembler) Blr(rn Reg) { a.emit(opBlr | a.reg(rn)<<shiftRn) }

// Bl calls label, leaving the return address in X30: BL label (±128
// MiB).
func (a *Assembler) Bl(label string) { a.ref(opBl, label, imm26) }

// Ret returns to the address in Xn: RET Xn.
func (a *Assembler) Ret(rn Reg) { a.emit(opRet | a.reg(rn)<<shiftRn) }

// Wfi waits for an interrupt.
func (a *Assembler) Wfi() { a.emit(opWfi) }

// B branches to label (±128 MiB).
func (a *Assembler) B(label string) { a.ref(opB, label, imm26) }

// BCond branches to label when cond holds (±1 MiB).
func (a *Assembler) BCond(cond Cond, label string) { a.ref(opBCond|uint32(cond&0xF), label, imm19) }

// Cbz branches to label when Xt is zero (±1 MiB).
func (a *Assembler) Cbz(rt Reg, label string) { a.ref(opCbz64|a.reg(rt), label, imm19) }

// Cbnz branches to label when Xt is not zero (±1 MiB).
func (a *Assembler) Cbnz(rt Reg, label string) { a.ref(opCbnz64|a.reg(rt), label, imm19) }

// ref emits an instruction whose offset field Assemble fills in.
func (a *Assembler) ref(word uint32, label string, k int) {
	a.b.Fix(asmbuf.Fixup{At: a.b.Len(), Label: label, Kind: k})
	a.emit(word)
}

// Assemble resolves every label reference and returns the machine code.
func (a *Assembler) Assemble() ([]byte, error) {
	return a.b.Resolve(ErrUndefined, func(out []byte, f asmbuf.Fixup, target int) error {
		d := target - f.At
		w := binary.LittleEndian.Uint32(out[f.At:])
		bits, shift, unit := 0, 0, 4
		switch f.Kind {
		case imm26:
			bits = 26
		case imm19:
			bits, shift = 19, 5
		case adr21:
			bits, unit = 21, 1
		}
		if d%unit != 0 {
			return fmt.Errorf("a64: branch to %q at offset %d is not 4-byte aligned", f.Label, target)
		}
		v := d / unit
		if lim := 1 << (bits - 1); v < -lim || v >= lim {
			return fmt.Errorf("a64: %q is %d bytes away, beyond the %d-bit range", f.Label, d, bits)
		}
		u := uint32(v) & (1<<bits - 1)
		if f.Kind == adr21 {
			w |= (u&3)<<29 | (u>>2)<<5 // immlo, immhi
		} else {
			w |= u << shift
		}
		binary.LittleEndian.PutUint32(out[f.At:], w)
		return nil
	})
}
