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
		// Memory operands at an Equ address (x86asm prints the disp16).
		{func(a *Assembler) { a.Equ("v", 0x1234); a.Load(CX, "v") }, "mov cx, word ptr [0x1234]"},
		{func(a *Assembler) { a.Equ("v", 0x1234); a.Store("v", DX) }, "mov word ptr [0x1234], dx"},
		{func(a *Assembler) { a.Equ("v", 0x0475); a.Load8(AL, "v") }, "mov al, byte ptr [0x475]"},
		{func(a *Assembler) { a.Equ("v", 0x7E10); a.Store8("v", DL) }, "mov byte ptr [0x7e10], dl"},
		{func(a *Assembler) { a.Equ("v", 0x7E10); a.IncMem("v") }, "inc word ptr [0x7e10]"},
		{func(a *Assembler) { a.Add(AX, BX) }, "add ax, bx"},
		{func(a *Assembler) { a.Or(SI, AX) }, "or si, ax"},
		{func(a *Assembler) { a.AddImm(AX, 1) }, "add ax, 0x1"},
		{func(a *Assembler) { a.AddImm(AX, 0x30) }, "add ax, 0x30"},
		{func(a *Assembler) { a.AddImm(BX, 0x1000) }, "add bx, 0x1000"},
		{func(a *Assembler) { a.AdcImm(DX, 0) }, "adc dx, 0x0"},
		{func(a *Assembler) { a.SubImm(DI, 0x1028) }, "sub di, 0x1028"},
		{func(a *Assembler) { a.SubImm(CX, 2) }, "sub cx, 0x2"},
		{func(a *Assembler) { a.Dec(CX) }, "dec cx"},
		{func(a *Assembler) { a.Div(CX) }, "div cx"},
		{func(a *Assembler) { a.Cmp8(AL, AH) }, "cmp al, ah"},
		{func(a *Assembler) { a.CmpImm8(AL, 0x0D) }, "cmp al, 0xd"},
		{func(a *Assembler) { a.CmpImm8(DL, 0xF0) }, "cmp dl, 0xf0"},
		{func(a *Assembler) { a.TestImm8(AH, 0x01) }, "test ah, 0x1"},
		{func(a *Assembler) { a.TestImm8(AL, 0x80) }, "test al, 0x80"},
		{func(a *Assembler) { a.RepMovsw() }, "rep movsw word ptr [di], word ptr [si]"},
		{func(a *Assembler) { a.RepeCmpsb() }, "rep cmpsb byte ptr [si], byte ptr [di]"}, // F3 before cmps is repe
		{func(a *Assembler) { a.Equ("v", 0x7E04); a.DW("v") }, "add al, 0x7e"},           // the word 04 7E decodes as add al, imm8
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
	a.J(JBE, "fwd")
	a.J(JA, "back")
	a.JNear(JC, "fwd")   // near conditional forward
	a.JNear(JNE, "back") // and backward
	a.Jmp("back")        // short jmp backward
	a.JmpNear("fwd")     // near jmp forward
	a.Call("fwd")        // call forward
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
		{x86asm.JBE, fwd}, {x86asm.JA, back}, {x86asm.JB, fwd}, {x86asm.JNE, back},
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

// TestEqu checks that an Equ address is reached by relative jumps and
// calls from any origin, and that DW writes it.
func TestEqu(t *testing.T) {
	a := New(0x7C00)
	a.Equ("entry", 0x7E04) // beyond the program
	a.Equ("low", 0x0600)   // below the origin
	a.JmpNear("entry")
	a.Call("low")
	a.DW("entry")
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint16{0x7E04, 0x0600} {
		inst, err := x86asm.Decode(code[3*i:], 16)
		if err != nil {
			t.Fatal(err)
		}
		next := uint16(0x7C00 + 3*i + inst.Len)
		if got := next + uint16(int16(inst.Args[0].(x86asm.Rel))); got != want {
			t.Errorf("instruction %d targets 0x%X, want 0x%X", i, got, want)
		}
	}
	if got := uint16(code[6]) | uint16(code[7])<<8; got != 0x7E04 {
		t.Errorf("DW wrote 0x%X, want 0x7E04", got)
	}
	b := New(0)
	b.Label("x")
	b.Equ("x", 5)
	if _, err := b.Assemble(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("Equ over a label: got %v", err)
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
