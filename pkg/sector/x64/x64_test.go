package x64

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestEncodings decodes every instruction the assembler emits with x86asm
// in 64-bit mode and compares it with the intended instruction.
func TestEncodings(t *testing.T) {
	tests := []struct {
		emit func(a *Assembler)
		want string // Intel syntax as x86asm prints it
	}{
		{func(a *Assembler) { a.Hlt() }, "hlt"},
		{func(a *Assembler) { a.Ret() }, "ret"},
		{func(a *Assembler) { a.InDX() }, "in ax, dx"},
		{func(a *Assembler) { a.OutDX() }, "out dx, ax"},
		{func(a *Assembler) { a.Mov(RBX, RDX) }, "mov rbx, rdx"},
		{func(a *Assembler) { a.Mov(R9, RAX) }, "mov r9, rax"},
		{func(a *Assembler) { a.Mov(RCX, R15) }, "mov rcx, r15"},
		{func(a *Assembler) { a.Mov32(RDX, RBP) }, "mov edx, ebp"},
		{func(a *Assembler) { a.Mov32(R8, R12) }, "mov r8d, r12d"},
		{func(a *Assembler) { a.MovImm32(RCX, 2) }, "mov ecx, 0x2"},
		{func(a *Assembler) { a.MovImm32(RBP, 0x600) }, "mov ebp, 0x600"},
		// x86asm prints a 32-bit immediate as signed.
		{func(a *Assembler) { a.MovImm32(R8, 0x80000000) }, "mov r8d, -0x80000000"},
		{func(a *Assembler) { a.Load(RCX, RBX, 0x40) }, "mov rcx, qword ptr [rbx+0x40]"},
		{func(a *Assembler) { a.Load(RAX, RAX, 0) }, "mov rax, qword ptr [rax]"},
		{func(a *Assembler) { a.Load(RAX, RSI, 0x100) }, "mov rax, qword ptr [rsi+0x100]"},
		{func(a *Assembler) { a.Load(RAX, RSP, 0x38) }, "mov rax, qword ptr [rsp+0x38]"},
		{func(a *Assembler) { a.Load(RAX, RBP, 0) }, "mov rax, qword ptr [rbp]"},
		{func(a *Assembler) { a.Load(R10, R13, 0) }, "mov r10, qword ptr [r13]"},
		{func(a *Assembler) { a.Load(RDX, R12, -8) }, "mov rdx, qword ptr [r12-0x8]"},
		{func(a *Assembler) { a.Store(RSP, 0x28, RAX) }, "mov qword ptr [rsp+0x28], rax"},
		{func(a *Assembler) { a.Store(R8, 0, R9) }, "mov qword ptr [r8], r9"},
		{func(a *Assembler) { a.LeaMem(RDX, RSP, 0x28) }, "lea rdx, ptr [rsp+0x28]"},
		{func(a *Assembler) { a.LeaMem(R8, RSP, 0x38) }, "lea r8, ptr [rsp+0x38]"},
		{func(a *Assembler) { a.Xor32(RDX, RDX) }, "xor edx, edx"},
		{func(a *Assembler) { a.Xor32(R9, R9) }, "xor r9d, r9d"},
		{func(a *Assembler) { a.Test32(RAX, RAX) }, "test eax, eax"},
		{func(a *Assembler) { a.Test32(RBP, RBP) }, "test ebp, ebp"},
		{func(a *Assembler) { a.TestImm32(RAX, 0x100) }, "test eax, 0x100"},
		{func(a *Assembler) { a.TestImm32(RDI, 0x100) }, "test edi, 0x100"},
		{func(a *Assembler) { a.CmpImm32(RAX, 0x100) }, "cmp eax, 0x100"},
		{func(a *Assembler) { a.CmpImm32(RDX, 0x100) }, "cmp edx, 0x100"},
		{func(a *Assembler) { a.AddImm8(RDX, 2) }, "add rdx, 0x2"},
		{func(a *Assembler) { a.SubImm8(RSP, 0x48) }, "sub rsp, 0x48"},
		{func(a *Assembler) { a.Dec32(RDI) }, "dec edi"},
		{func(a *Assembler) { a.Dec32(R14) }, "dec r14d"},
		{func(a *Assembler) { a.CallMem(RCX, 8) }, "call qword ptr [rcx+0x8]"},
		{func(a *Assembler) { a.CallMem(RSI, 0x100) }, "call qword ptr [rsi+0x100]"},
		{func(a *Assembler) { a.CallMem(RAX, 0x68) }, "call qword ptr [rax+0x68]"},
		{func(a *Assembler) { a.CallMem(R13, 0x18) }, "call qword ptr [r13+0x18]"},
		{func(a *Assembler) { a.Load(RAX, R12, 0x40) }, "mov rax, qword ptr [r12+0x40]"},
		{func(a *Assembler) { a.Store(R12, 0x20, R14) }, "mov qword ptr [r12+0x20], r14"},
		{func(a *Assembler) { a.Load32(R8, RAX, 0xC) }, "mov r8d, dword ptr [rax+0xc]"},
		{func(a *Assembler) { a.Load32(RDX, RAX, 0) }, "mov edx, dword ptr [rax]"},
		{func(a *Assembler) { a.LoadByte(RCX, RAX, 6) }, "movzx ecx, byte ptr [rax+0x6]"},
		{func(a *Assembler) { a.LoadByte(RAX, R14, 0) }, "movzx eax, byte ptr [r14]"},
		{func(a *Assembler) { a.LoadByte(R10, R8, 1) }, "movzx r10d, byte ptr [r8+0x1]"},
		{func(a *Assembler) { a.LoadWord(RAX, R12, 0x62) }, "movzx eax, word ptr [r12+0x62]"},
		{func(a *Assembler) { a.LoadWord(RCX, R8, 2) }, "movzx ecx, word ptr [r8+0x2]"},
		{func(a *Assembler) { a.Store32(R9, 0, RAX) }, "mov dword ptr [r9], eax"},
		{func(a *Assembler) { a.Store32(R14, 0x10, RAX) }, "mov dword ptr [r14+0x10], eax"},
		{func(a *Assembler) { a.Store16(R11, 0, RDX) }, "mov word ptr [r11], dx"},
		{func(a *Assembler) { a.Store16(R12, 0x70, R8) }, "mov word ptr [r12+0x70], r8w"},
		{func(a *Assembler) { a.Store8(R9, 0, RAX) }, "mov byte ptr [r9], al"},
		{func(a *Assembler) { a.Store8(RCX, 0, RSI) }, "mov byte ptr [rcx], sil"},
		{func(a *Assembler) { a.Store8(RAX, 0, R10) }, "mov byte ptr [rax], r10b"},
		{func(a *Assembler) { a.MovImm64(RCX, 0x66666f7265776f70) }, "mov rcx, 0x66666f7265776f70"},
		{func(a *Assembler) { a.MovImm64(R10, 1) }, "mov r10, 0x1"},
		{func(a *Assembler) { a.Add(RCX, R14) }, "add rcx, r14"},
		{func(a *Assembler) { a.Sub(R10, RCX) }, "sub r10, rcx"},
		{func(a *Assembler) { a.Cmp(RAX, RCX) }, "cmp rax, rcx"},
		{func(a *Assembler) { a.Cmp(R9, R10) }, "cmp r9, r10"},
		{func(a *Assembler) { a.Test(R14, R14) }, "test r14, r14"},
		{func(a *Assembler) { a.Div32(RCX) }, "div ecx"},
		{func(a *Assembler) { a.AddImm32(RSP, 0xC8) }, "add rsp, 0xc8"},
		{func(a *Assembler) { a.SubImm32(RSP, 0xC8) }, "sub rsp, 0xc8"},
		{func(a *Assembler) { a.AddImm8(R11, -2) }, "add r11, -0x2"},
	}
	for _, tt := range tests {
		a := New()
		tt.emit(a)
		code, err := a.Assemble()
		if err != nil {
			t.Fatalf("%s: %v", tt.want, err)
		}
		inst, err := x86asm.Decode(code, 64)
		if err != nil {
			t.Errorf("%s: decode % x: %v", tt.want, code, err)
			continue
		}
		if inst.Len != len(code) {
			t.Errorf("%s: decoded %d of %d bytes (% x)", tt.want, inst.Len, len(code), code)
		}
		if got := x86asm.IntelSyntax(inst, 0, nil); got != tt.want {
			t.Errorf("% x decodes as %q, want %q", code, got, tt.want)
		}
	}
}

// TestFixups checks forward and backward jumps and RIP-relative addresses
// by decoding them and comparing their targets with the labels' offsets.
func TestFixups(t *testing.T) {
	a := New()
	a.Label("back")
	a.Hlt()
	a.J(JZ, "fwd")
	a.J(JNE, "back")
	a.J(JB, "fwd")
	a.J(JAE, "back")
	a.Jmp("back")
	a.Jmp("fwd")
	a.Call("fwd")
	a.Lea(RDX, "fwd")
	a.Lea(R8, "back")
	a.JNear(JA, "fwd")
	a.JNear(JBE, "back")
	a.JmpNear("fwd")
	a.JmpNear("back")
	a.Label("fwd")
	a.Ret()
	code, err := a.Assemble()
	if err != nil {
		t.Fatal(err)
	}
	back, _ := a.Offset("back")
	fwd, _ := a.Offset("fwd")
	want := []struct {
		op     x86asm.Op
		target int
	}{
		{x86asm.HLT, 0}, {x86asm.JE, fwd}, {x86asm.JNE, back}, {x86asm.JB, fwd}, {x86asm.JAE, back},
		{x86asm.JMP, back}, {x86asm.JMP, fwd}, {x86asm.CALL, fwd},
		{x86asm.LEA, fwd}, {x86asm.LEA, back},
		{x86asm.JA, fwd}, {x86asm.JBE, back}, {x86asm.JMP, fwd}, {x86asm.JMP, back}, {x86asm.RET, 0},
	}
	pc := 0
	for i, w := range want {
		inst, err := x86asm.Decode(code[pc:], 64)
		if err != nil {
			t.Fatalf("instruction %d: %v", i, err)
		}
		if inst.Op != w.op {
			t.Fatalf("instruction %d is %v, want %v", i, inst.Op, w.op)
		}
		next := pc + inst.Len
		switch arg := inst.Args[0].(type) {
		case x86asm.Rel:
			if got := next + int(arg); got != w.target {
				t.Errorf("instruction %d (%v) targets %d, want %d", i, inst.Op, got, w.target)
			}
		case x86asm.Reg: // lea r, [rip+disp]
			m := inst.Args[1].(x86asm.Mem)
			if m.Base != x86asm.RIP {
				t.Fatalf("lea is not RIP-relative: %v", inst)
			}
			if got := next + int(m.Disp); got != w.target {
				t.Errorf("lea %v loads %d, want %d", arg, got, w.target)
			}
		}
		pc = next
	}
	if pc != len(code) {
		t.Errorf("decoded %d of %d bytes", pc, len(code))
	}
}

func TestErrors(t *testing.T) {
	a := New()
	a.Jmp("nowhere")
	if _, err := a.Assemble(); !errors.Is(err, ErrUndefined) {
		t.Errorf("undefined label: got %v, want ErrUndefined", err)
	}

	a = New()
	a.Label("x")
	a.Label("x")
	a.Hlt() // errors are sticky: later instructions do not clear them
	if _, err := a.Assemble(); err == nil || !strings.Contains(err.Error(), "defined twice") {
		t.Errorf("duplicate label: got %v", err)
	}

	a = New()
	a.Jmp("far")
	a.DB(make([]byte, 200)...)
	a.Label("far")
	if _, err := a.Assemble(); err == nil || !strings.Contains(err.Error(), "beyond -128..127") {
		t.Errorf("short jump out of range: got %v", err)
	}
}
