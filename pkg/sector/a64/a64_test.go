package a64

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/arm64/arm64asm"
)

// decode disassembles code with arm64asm, one instruction per word, in
// GNU syntax.
func decode(t *testing.T, code []byte) []string {
	t.Helper()
	var out []string
	for pc := 0; pc < len(code); pc += 4 {
		inst, err := arm64asm.Decode(code[pc:])
		if err != nil {
			t.Fatalf("decode %08x: %v", binary.LittleEndian.Uint32(code[pc:]), err)
		}
		out = append(out, strings.TrimSpace(arm64asm.GNUSyntax(inst)))
	}
	return out
}

// TestEncodings decodes every instruction the assembler emits with
// arm64asm and compares it with the intended instruction.
func TestEncodings(t *testing.T) {
	tests := []struct {
		emit func(a *Assembler)
		want string // GNU syntax as arm64asm prints it, one line per word
	}{
		{func(a *Assembler) { a.MovImm(X0, 0) }, "mov x0, #0x0"},
		{func(a *Assembler) { a.MovImm(X1, 2) }, "mov x1, #0x2"},
		{func(a *Assembler) { a.MovImm(X9, 0x09080000) }, "mov x9, #0x9080000"},
		{func(a *Assembler) { a.MovImm(X2, 0xF4240) }, "mov x2, #0x4240; movk x2, #0xf, lsl #16"},
		{func(a *Assembler) { a.MovImm(X3, 0x1234_0000_0000_5678) }, "mov x3, #0x5678; movk x3, #0x1234, lsl #48"},
		{func(a *Assembler) { a.Mov(X19, X1) }, "mov x19, x1"},
		{func(a *Assembler) { a.AddImm(X1, SP, 0) }, "mov x1, sp"},
		{func(a *Assembler) { a.AddImm(X4, SP, 8) }, "add x4, sp, #0x8"},
		{func(a *Assembler) { a.SubImm(SP, SP, 32) }, "sub sp, sp, #0x20"},
		{func(a *Assembler) { a.SubsImm32(X21, X21, 1) }, "subs w21, w21, #0x1"},
		{func(a *Assembler) { a.Cmp(X13, X12) }, "cmp x13, x12"},
		{func(a *Assembler) { a.Tst32(X10, X24) }, "tst w10, w24"},
		{func(a *Assembler) { a.Ldr(X0, X19, 0x40) }, "ldr x0, [x19,#64]"},
		{func(a *Assembler) { a.Ldr(X9, X20, 0x100) }, "ldr x9, [x20,#256]"},
		{func(a *Assembler) { a.Ldr(X9, SP, 16) }, "ldr x9, [sp,#16]"},
		{func(a *Assembler) { a.Ldr32(X10, X9, 0x414) }, "ldr w10, [x9,#1044]"},
		{func(a *Assembler) { a.Str(X9, SP, 0) }, "str x9, [sp]"},
		{func(a *Assembler) { a.Blr(X9) }, "blr x9"},
		{func(a *Assembler) { a.Wfi() }, "wfi"},
		{func(a *Assembler) { a.Ret(X28) }, "ret x28"},
		{func(a *Assembler) { a.Ret(X30) }, "ret"},
		{func(a *Assembler) { a.Ldrb(X9, X0, 6) }, "ldrb w9, [x0,#6]"},
		{func(a *Assembler) { a.Strb(XZR, X11, 0) }, "strb wzr, [x11]"},
		{func(a *Assembler) { a.Ldrh(X9, SP, 82) }, "ldrh w9, [sp,#82]"},
		{func(a *Assembler) { a.Strh(X9, SP, 84) }, "strh w9, [sp,#84]"},
		{func(a *Assembler) { a.Str32(X9, X10, 16) }, "str w9, [x10,#16]"},
		{func(a *Assembler) { a.Ldurb(X9, X13, -1) }, "ldurb w9, [x13,#-1]"},
		{func(a *Assembler) { a.LdrbPost(X9, X11, 1) }, "ldrb w9, [x11],#1"},
		{func(a *Assembler) { a.StrbPost(X9, X11, 1) }, "strb w9, [x11],#1"},
		{func(a *Assembler) { a.StrhPost(X9, X14, 2) }, "strh w9, [x14],#2"},
		{func(a *Assembler) { a.StrhPost(XZR, X10, -2) }, "strh wzr, [x10],#-2"},
		{func(a *Assembler) { a.Add(X10, X10, X26, 0) }, "add x10, x10, x26"},
		{func(a *Assembler) { a.Add(X12, X12, X13, 8) }, "add x12, x12, x13, lsl #8"},
		{func(a *Assembler) { a.Subs(X14, X14, X12) }, "subs x14, x14, x12"},
		{func(a *Assembler) { a.CmpImm(X9, 2048) }, "cmp x9, #0x800"},
		{func(a *Assembler) { a.Udiv(X11, X0, X12) }, "udiv x11, x0, x12"},
		{func(a *Assembler) { a.Msub(X13, X11, X12, X0) }, "msub x13, x11, x12, x0"},
		{func(a *Assembler) { a.LslImm(X9, X9, 16) }, "lsl x9, x9, #16"},
	}
	for _, tt := range tests {
		a := New()
		tt.emit(a)
		code, err := a.Assemble()
		if err != nil {
			t.Fatalf("%s: %v", tt.want, err)
		}
		if got := strings.Join(decode(t, code), "; "); got != tt.want {
			t.Errorf("% x decodes as %q, want %q", code, got, tt.want)
		}
	}
}

// TestFixups checks forward and backward branches and ADR by decoding
// them and comparing their targets with the labels' offsets.
func TestFixups(t *testing.T) {
	a := New()
	a.Label("back")
	a.Wfi()
	a.B("fwd")
	a.B("back")
	a.BCond(EQ, "fwd")
	a.BCond(NE, "back")
	a.Cbz(X9, "fwd")
	a.Cbz(X9, "back")
	a.Cbnz(X9, "fwd")
	a.Cbnz(X9, "back")
	a.Bl("fwd")
	a.Bl("back")
	a.BCond(HS, "fwd")
	a.BCond(LO, "back")
	a.Adr(X1, "fwd")
	a.DB('h', 'i', '!', 0) // data, then code again on a word boundary
	a.Adr(X2, "back")
	a.Label("fwd")
	a.Wfi()
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := a.Offset("back")
	fwd, _ := a.Offset("fwd")
	want := []struct {
		op     arm64asm.Op
		target int
	}{
		{arm64asm.WFI, -1}, {arm64asm.B, fwd}, {arm64asm.B, back}, {arm64asm.B, fwd}, {arm64asm.B, back},
		{arm64asm.CBZ, fwd}, {arm64asm.CBZ, back}, {arm64asm.CBNZ, fwd}, {arm64asm.CBNZ, back},
		{arm64asm.BL, fwd}, {arm64asm.BL, back}, {arm64asm.B, fwd}, {arm64asm.B, back}, {arm64asm.ADR, fwd}, {0, -1}, {arm64asm.ADR, back},
		{arm64asm.WFI, -1},
	}
	for i, w := range want {
		pc := 4 * i
		if w.op == 0 { // the data word
			continue
		}
		inst, err := arm64asm.Decode(code[pc:])
		if err != nil {
			t.Fatalf("instruction %d: %v", i, err)
		}
		if inst.Op != w.op {
			t.Fatalf("instruction %d is %v, want %v", i, inst.Op, w.op)
		}
		if w.target < 0 {
			continue
		}
		var rel arm64asm.PCRel
		for _, arg := range inst.Args {
			if r, ok := arg.(arm64asm.PCRel); ok {
				rel = r
			}
		}
		if got := pc + int(rel); got != w.target {
			t.Errorf("instruction %d (%v) targets %d, want %d", i, inst, got, w.target)
		}
	}
	if len(code) != 4*len(want) {
		t.Errorf("%d bytes, want %d", len(code), 4*len(want))
	}
}

func TestErrors(t *testing.T) {
	a := New()
	a.B("nowhere")
	if _, err := a.Assemble(); !errors.Is(err, ErrUndefined) {
		t.Errorf("undefined label: got %v, want ErrUndefined", err)
	}

	a = New()
	a.Label("x")
	a.Label("x")
	a.Wfi() // errors are sticky: later instructions do not clear them
	if _, err := a.Assemble(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("duplicate label: got %v", err)
	}

	for name, emit := range map[string]func(a *Assembler){
		"unaligned load":   func(a *Assembler) { a.Ldr(X0, X1, 12) },
		"far load":         func(a *Assembler) { a.Ldr32(X0, X1, 4*4096) },
		"big immediate":    func(a *Assembler) { a.AddImm(X0, X1, 4096) },
		"unaligned code":   func(a *Assembler) { a.DB(1); a.Wfi() },
		"unaligned target": func(a *Assembler) { a.B("x"); a.DB(1) },
		"register 32":      func(a *Assembler) { a.Blr(32) },
		"cbz beyond 1MiB":  func(a *Assembler) { a.Cbz(X0, "x"); a.DB(make([]byte, 1<<20)...) },
		"far post-index":   func(a *Assembler) { a.StrhPost(X0, X1, 256) },
		"far unscaled":     func(a *Assembler) { a.Ldurb(X0, X1, -257) },
		"unaligned half":   func(a *Assembler) { a.Ldrh(X0, X1, 3) },
		"big shift":        func(a *Assembler) { a.LslImm(X0, X1, 64) },
	} {
		a := New()
		emit(a)
		a.Label("x")
		if _, err := a.Assemble(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestAlign(t *testing.T) {
	a := New()
	a.Wfi()
	a.DB(1)
	a.Align(8)
	a.Align(8) // already aligned: nothing more
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x7F, 0x20, 0x03, 0xD5, 1, 0, 0, 0}; string(code) != string(want) {
		t.Errorf("aligned code % x, want % x", code, want)
	}
}
