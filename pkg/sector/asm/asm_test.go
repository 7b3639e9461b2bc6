package asm

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestEncodings decodes every instruction the assembler emits with
// x86asm in 16-bit mode and compares it with the intended instruction.
func TestEncodings(t *testing.T) {
	tests := []struct {
		emit func(a *Assembler)
		want string // Intel syntax as x86asm prints it
	}{
		{func(a *Assembler) { a.Cli() }, "cli"},
		{func(a *Assembler) { a.Sti() }, "sti"},
		{func(a *Assembler) { a.Cld() }, "cld"},
		{func(a *Assembler) { a.Hlt() }, "hlt"},
		{func(a *Assembler) { a.Ret() }, "ret"},
		{func(a *Assembler) { a.Lodsb() }, "lodsb byte ptr [si]"},
		{func(a *Assembler) { a.Int(0x10) }, "int 0x10"},
		{func(a *Assembler) { a.MovImm(AX, 0x1234) }, "mov ax, 0x1234"},
		{func(a *Assembler) { a.MovImm(SP, 0x7C00) }, "mov sp, 0x7c00"},
		{func(a *Assembler) { a.MovImm(DI, 0x7FFF) }, "mov di, 0x7fff"},
		{func(a *Assembler) { a.MovImm8(AH, 0x0E) }, "mov ah, 0xe"},
		{func(a *Assembler) { a.MovImm8(AL, 0xFE) }, "mov al, 0xfe"},
		{func(a *Assembler) { a.MovImm8(BH, 1) }, "mov bh, 0x1"},
		{func(a *Assembler) { a.Mov(DX, BP) }, "mov dx, bp"},
		{func(a *Assembler) { a.Mov(DI, AX) }, "mov di, ax"},
		{func(a *Assembler) { a.MovSeg(DS, AX) }, "mov ds, ax"},
		{func(a *Assembler) { a.MovSeg(SS, AX) }, "mov ss, ax"},
		{func(a *Assembler) { a.MovSeg(ES, BX) }, "mov es, bx"},
		{func(a *Assembler) { a.LoadAX(0x046C) }, "mov ax, word ptr [0x46c]"},
		{func(a *Assembler) { a.Xor(AX, AX) }, "xor ax, ax"},
		{func(a *Assembler) { a.Xor(BP, BP) }, "xor bp, bp"},
		{func(a *Assembler) { a.Sub(AX, DI) }, "sub ax, di"},
		{func(a *Assembler) { a.Cmp(DX, AX) }, "cmp dx, ax"},
		{func(a *Assembler) { a.CmpImm(AX, 0x0100) }, "cmp ax, 0x100"},
		{func(a *Assembler) { a.CmpImm(BX, 0x0100) }, "cmp bx, 0x100"},
		{func(a *Assembler) { a.Test(BP, BP) }, "test bp, bp"},
		{func(a *Assembler) { a.Test8(AL, AL) }, "test al, al"},
		{func(a *Assembler) { a.TestImm(AX, 0x0E00) }, "test ax, 0xe00"},
		{func(a *Assembler) { a.TestImm(CX, 0x0100) }, "test cx, 0x100"},
		{func(a *Assembler) { a.Inc(DX) }, "inc dx"},
		{func(a *Assembler) { a.Push(SI) }, "push si"},
		{func(a *Assembler) { a.Pop(SI) }, "pop si"},
		{func(a *Assembler) { a.InDX() }, "in ax, dx"},
		{func(a *Assembler) { a.OutDX() }, "out dx, ax"},
		{func(a *Assembler) { a.OutImm8(0x64) }, "out 0x64, al"},
		// x86asm prints a far pointer as offset, segment.
		{func(a *Assembler) { a.JmpFar(0x1234, 0x5678) }, "jmp far 0x5678, 0x1234"},
	}
	for _, tt := range tests {
		a := New(0x7C00)
		tt.emit(a)
		code, err := a.Assemble()
		if err != nil {
			t.Fatalf("%s: %v", tt.want, err)
		}
		inst, err := x86asm.Decode(code, 16)
		if err != nil {
			t.Errorf("%s: decode % x: %v", tt.want, code, err)
			continue
		}
		if inst.Len != len(code) {
			t.Errorf("%s: decoded %d of %d bytes (% x)", tt.want, inst.Len, len(code), code)
		}
		if got := x86asm.IntelSyntax(inst, 0x7C00, nil); got != tt.want {
			t.Errorf("% x decodes as %q, want %q", code, got, tt.want)
		}
	}
}

// TestJumps checks forward and backward fix-ups by decoding the jumps and
// comparing their targets with the labels' addresses.
func TestJumps(t *testing.T) {
	a := New(0x7C00)
	a.Label("back")
	a.Hlt()
	a.J(JZ, "fwd")   // forward, short
	a.J(JNE, "back") // backward, short
	a.J(JB, "fwd")   // other conditions
	a.J(JAE, "back") //
	a.Jmp("back")    // short jmp backward
	a.JmpNear("fwd") // near jmp forward
	a.Call("fwd")    // call forward
	a.MovAddr(SI, "fwd")
	a.Label("fwd")
	a.Ret()
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := a.Addr("back")
	fwd, _ := a.Addr("fwd")
	want := []struct {
		op     x86asm.Op
		target uint16
	}{
		{x86asm.HLT, 0}, {x86asm.JE, fwd}, {x86asm.JNE, back}, {x86asm.JB, fwd}, {x86asm.JAE, back},
		{x86asm.JMP, back}, {x86asm.JMP, fwd}, {x86asm.CALL, fwd}, {x86asm.MOV, fwd}, {x86asm.RET, 0},
	}
	pc := 0
	for i, w := range want {
		inst, err := x86asm.Decode(code[pc:], 16)
		if err != nil {
			t.Fatalf("instruction %d: %v", i, err)
		}
		if inst.Op != w.op {
			t.Fatalf("instruction %d is %v, want %v", i, inst.Op, w.op)
		}
		next := uint16(0x7C00 + pc + inst.Len)
		switch arg := inst.Args[0].(type) {
		case x86asm.Rel:
			if got := next + uint16(int16(arg)); got != w.target {
				t.Errorf("instruction %d (%v) targets 0x%X, want 0x%X", i, inst.Op, got, w.target)
			}
		case x86asm.Reg: // mov si, imm16
			if got := uint16(inst.Args[1].(x86asm.Imm)); got != w.target {
				t.Errorf("mov si loads 0x%X, want 0x%X", got, w.target)
			}
		}
		pc += inst.Len
	}
	if pc != len(code) {
		t.Errorf("decoded %d of %d bytes", pc, len(code))
	}
}

func TestErrors(t *testing.T) {
	a := New(0)
	a.Jmp("nowhere")
	if _, err := a.Assemble(); !errors.Is(err, ErrUndefined) {
		t.Errorf("undefined label: got %v, want ErrUndefined", err)
	}

	a = New(0)
	a.Label("x")
	a.Label("x")
	a.Hlt() // errors are sticky: later instructions do not clear them
	if _, err := a.Assemble(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("duplicate label: got %v", err)
	}

	a = New(0)
	a.Jmp("far")
	a.DB(make([]byte, 200)...)
	a.Label("far")
	if _, err := a.Assemble(); err == nil || !strings.Contains(err.Error(), "beyond -128..127") {
		t.Errorf("short jump out of range: got %v", err)
	}
}
