package sector

import (
	"encoding/hex"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/asm"
)

// Fixed addresses the probe program uses outside its own bytes, in free
// conventional memory below the stack (which grows down from 0x7C00).
const (
	hdCount    = 0x0475 // BIOS data area: number of hard disks
	eddBuffer  = 0x0600 // int 13h AH=48h result
	eddSize    = 26     // EDD 1.x result: enough for the sector size
	eddBPS     = eddBuffer + 24
	diskBuffer = 0x1000 // one sector read by int 13h, up to 4 KiB
	maxBPS     = 4096
	// The ISO 9660 primary volume descriptor is at byte 32768 of the
	// volume (ECMA-119 6.2.1, 8.4); its volume identifier at byte 40.
	pvdOffset   = 32768
	pvdLabel    = diskBuffer + 40
	pvdLabelLen = 32
	// firstCD and lastCD bound the CD drive numbers SeaBIOS assigns
	// (0xE0 up, in boot order).
	firstCD = 0xE0
	lastCD  = 0xEF
)

// The probe lines' fixed parts (see testdata/probes/lines.txt), shared
// with the EFI applications so that both print the same lines.
const (
	LineHeartbeat = "tinyvm heartbeat " // then the count and CR LF
	LineBoot      = "tinyvm boot "      // then the count and CR LF
	LineDisks     = "tinyvm disks "     // then the count and CR LF
	LineVolume    = "tinyvm volume "    // then the ISO 9660 label and CR LF
	LineID        = "tinyvm id "        // then Options.ID and CR LF
	LineError     = "tinyvm error "     // then what failed and CR LF
	// ErrLineBootCount follows LineError when the counter cannot be
	// read or written.
	ErrLineBootCount = "bootcount"
	errStage2        = "stage2"
)

// buildProbes assembles the two-stage program: the MBR loads and checks
// the second stage, which holds everything else.
func buildProbes(o Options) (*Sector, error) {
	id := o.ID()
	sig, _ := hex.DecodeString(id)
	sig = append([]byte(stage2Sig), sig[:2]...)
	stage2, _, err := secondStage(o, sig)
	if err != nil {
		return nil, err
	}
	if over := len(stage2) - o.Layout.Stage2Budget(); over > 0 {
		return nil, fmt.Errorf("%w: the probes' second stage takes %d bytes, %d over its %d bytes (LBA %d-%d); shorten the message or serial text",
			ErrTooBig, len(stage2), over, o.Layout.Stage2Budget(), o.Layout.Stage2LBA(), BootCountLBA-1)
	}
	sectors := (len(stage2) + Size - 1) / Size
	code, _, err := firstStage(o.Layout.Stage2LBA(), uint16(sectors), sig)
	if err != nil {
		return nil, err
	}
	if over := len(code) - o.Layout.Budget(); over > 0 {
		return nil, fmt.Errorf("%w in %d bytes: the loader is %d bytes over the budget", ErrTooBig, o.Layout.Budget(), over)
	}
	s := &Sector{used: len(code), layout: o.Layout, stage2: make([]byte, sectors*Size), stage2Used: len(stage2)}
	copy(s.code[:], code)
	copy(s.code[signatureOffset:], signatureSuffix)
	copy(s.stage2, stage2)
	if o.Probes.BootCount {
		s.counter = bootCountSector()
	}
	return s, nil
}

// firstStage is the MBR: it reads the second stage with int 13h AH=42h
// from the boot drive the BIOS passes in DL (or, booted from a CD, finds
// it among the sectors El Torito loaded), checks its signature (which
// carries the build id, so a stale or foreign stage is refused) and jumps
// to it, or prints "tinyvm error stage2" on screen and COM1 and idles.
// It also returns where its data starts.
func firstStage(lba int64, sectors uint16, sig []byte) ([]byte, int, error) {
	a := asm.New(loadAddress)
	a.Cli()
	a.Xor(asm.AX, asm.AX)
	a.MovSeg(asm.DS, asm.AX)
	a.MovSeg(asm.ES, asm.AX)
	a.MovSeg(asm.SS, asm.AX)
	a.MovImm(asm.SP, loadAddress)
	a.Sti()
	a.Cld()

	// Booted as an El Torito CD (SeaBIOS numbers CDs from 0xE0), the
	// firmware loaded the whole BootImage: move the stage into place.
	// From a disk, read it.
	a.CmpImm8(asm.DL, firstCD)
	a.J(asm.JB, "read")
	if lba != 1 {
		a.MovImm(asm.SI, uint16(loadAddress+lba*Size))
		a.MovImm(asm.DI, stage2Load)
		a.MovImm(asm.CX, sectors*Size/2)
		a.RepMovsw()
	}
	a.Jmp("check")
	a.Label("read")
	a.MovAddr(asm.SI, "dap")
	a.MovImm8(asm.AH, 0x42)
	a.Int(0x13) // DL is still the boot drive
	a.J(asm.JC, "fail")
	a.Label("check")
	a.Equ("sig", stage2Load)
	a.Equ("sig2", stage2Load+2)
	a.Load(asm.AX, "sig")
	a.CmpImm(asm.AX, uint16(sig[0])|uint16(sig[1])<<8)
	a.J(asm.JNE, "fail")
	a.Load(asm.AX, "sig2")
	a.CmpImm(asm.AX, uint16(sig[2])|uint16(sig[3])<<8)
	a.J(asm.JNE, "fail")
	a.JmpFar(0, stage2Entry) // DL still holds the boot drive

	a.Label("fail")
	a.MovImm(asm.AX, 0x00E3) // COM1 9600 8N1; harmless without one
	a.Xor(asm.DX, asm.DX)
	a.Int(0x14)
	a.MovAddr(asm.SI, "failmsg")
	a.Label("failputs")
	a.Lodsb()
	a.Test8(asm.AL, asm.AL)
	a.J(asm.JZ, "idle")
	a.Push(asm.AX)
	a.MovImm8(asm.AH, 0x0E)
	a.MovImm(asm.BX, 0x0007)
	a.Int(0x10)
	a.Pop(asm.AX)
	a.MovImm8(asm.AH, 0x01)
	a.Xor(asm.DX, asm.DX)
	a.Int(0x14)
	a.Jmp("failputs")
	a.Label("idle")
	a.Sti()
	a.Hlt()
	a.Jmp("idle")

	// The disk address packet of int 13h AH=42h: size 16, reserved,
	// sector count, buffer offset:segment, 64-bit LBA.
	a.Label("dap")
	a.DB(16, 0, byte(sectors), byte(sectors>>8), byte(stage2Load&0xFF), byte(stage2Load>>8), 0, 0)
	a.DB(byte(lba), byte(lba>>8), byte(lba>>16), byte(lba>>24), 0, 0, 0, 0)
	a.Label("failmsg")
	a.DB([]byte(LineError + errStage2 + "\r\n\x00")...)
	return assemble(a, "dap")
}

// assemble returns the program and the offset of its data label.
func assemble(a *asm.Assembler, data string) ([]byte, int, error) {
	code, err := a.Assemble()
	if err != nil {
		return nil, 0, err
	}
	addr, _ := a.Addr(data)
	return code, int(addr - a.Origin()), nil
}

// secondStage is the program the MBR loads at 0000:7E00: the banner,
// the message and the serial marker as the one-sector program prints
// them, the probes' boot lines, then what --then says, with the
// heartbeat and the echo in the wait loop. It also returns where its
// data starts.
func secondStage(o Options, sig []byte) ([]byte, int, error) {
	a := asm.New(stage2Load)
	p, then, serial := o.Probes, o.then(), o.serial()
	a.DB(sig...)
	a.Label("entry")
	a.Store8("bootdrive", asm.DL)
	a.MovAddr(asm.AX, "pw")
	a.Store("pwptr", asm.AX)

	a.MovAddr(asm.SI, "screen")
	a.Call("putscreen")
	// SeaBIOS's serial console copies the screen to COM1 on its timer
	// tick; two ticks' wait lets it finish, so no probe line is glued to
	// the end of the screen text.
	a.Sti()
	a.Hlt()
	a.Hlt()

	// int 11h: bits 9-11 of the equipment word count serial ports. The
	// probes print only to COM1; without one they run silently.
	a.Int(0x11)
	a.TestImm(asm.AX, 0x0E00)
	a.J(asm.JZ, "after_serial")
	a.MovImm(asm.AX, 0x00E3) // int 14h AH=0: init COM1, 9600 8N1
	a.Xor(asm.DX, asm.DX)
	a.Int(0x14)
	a.MovImm8(asm.AL, 1)
	a.Store8("hasserial", asm.AL)
	if serial != "" {
		a.MovAddr(asm.SI, "serial")
		a.Call("putserial")
	}
	a.Label("after_serial")

	if p.ID {
		a.MovAddr(asm.SI, "idline")
		a.Call("putserial")
	}
	if p.BootCount {
		a.Call("bootcount")
	}
	if p.Disks {
		a.Call("disks")
	}

	switch then {
	case PowerOff:
		a.JmpNear("poweroff")
	case Halt:
		a.Label("halt")
		a.Hlt()
		a.Jmp("halt")
	case Reboot:
		a.MovImm8(asm.AL, 0xFE)
		a.OutImm8(0x64)
		a.JmpFar(0xFFFF, 0x0000)
	case Wait:
		probeWait(a, o)
	}
	if then == Wait || then == PowerOff {
		poweroff(a)
	}
	printers(a, false) // putscreen; putserial below checks for COM1
	probeRoutines(a, p)

	a.Label("screen")
	a.DB(banner...)
	a.DB([]byte(o.message())...)
	a.DB('\r', '\n', 0)
	if serial != "" {
		a.Label("serial")
		a.DB([]byte(serial)...)
		a.DB('\r', '\n', 0)
	}
	a.Label("idline")
	a.DB([]byte(LineID + o.ID() + "\r\n\x00")...)
	a.Label("crlf")
	a.DB('\r', '\n', 0)
	// "poweroff" then LF: a full match leaves the pointer on the LF,
	// which no compared byte equals; pwbad is where a mismatch parks it.
	a.Label("pw")
	a.DB([]byte("poweroff\n")...)
	a.Label("pwbad")
	a.DB('\r')
	for _, s := range []struct{ label, text string }{
		{"hbline", LineHeartbeat}, {"bootline", LineBoot}, {"bootfail", LineError + ErrLineBootCount + "\r\n"},
		{"disksline", LineDisks}, {"volline", LineVolume},
	} {
		a.Label(s.label)
		a.DB([]byte(s.text + "\x00")...)
	}
	a.Label("bcmagic")
	a.DB([]byte(BootCountMagic)...)
	a.Label("cd001")
	a.DB(1, 'C', 'D', '0', '0', '1')
	// Variables, each loaded fresh with the stage.
	for _, v := range []string{"bootdrive", "hasserial", "sercon", "pwptr", "tstart", "hblast", "hblo", "hbhi", "drive", "hdend", "cur", "col"} {
		a.Label(v)
		a.DB(0, 0)
	}
	// The disk address packet, filled in before each call.
	a.Label("dap")
	a.DB(16, 0)
	for _, f := range []string{"dapcount", "dapoff", "dapseg", "daplba0", "daplba1", "daplba2", "daplba3"} {
		a.Label(f)
		a.DB(0, 0)
	}
	return assemble(a, "screen")
}

// probeWait is the one-sector program's wait loop (sti; hlt, then look
// for a key, the power button and the timeout on each timer tick) with
// the heartbeat and the serial echo added. It keeps its state in memory,
// since the probe routines use every register but BP, the PM base.
func probeWait(a *asm.Assembler, o Options) {
	p := o.Probes
	findPMBlock(a)
	a.Equ("ticks", tickCount)
	a.Load(asm.AX, "ticks")
	a.Store("tstart", asm.AX)
	a.Store("hblast", asm.AX)

	if p.Echo {
		// SeaBIOS's serial console (KubeVirt's bios.useSerial, QEMU's
		// -machine graphics=off) turns COM1 input into key presses. It
		// hooks int 10h to copy the screen to serial, so the vector
		// points into the BIOS's F000 segment rather than a video ROM.
		a.Equ("int10seg", 0x10*4+2)
		a.Load(asm.AX, "int10seg")
		a.CmpImm(asm.AX, 0xF000)
		a.J(asm.JB, "no_sercon")
		a.MovImm8(asm.AL, 1)
		a.Store8("sercon", asm.AL)
		a.Label("no_sercon")
	}

	a.Label("wait")
	a.Sti()
	a.Hlt()
	a.Label("key")
	a.MovImm8(asm.AH, 0x01)
	a.Int(0x16)
	if p.Echo {
		// Under the serial console a key is what came in on COM1: read it
		// (int 16h AH=0) and echo it; otherwise a key powers off.
		a.J(asm.JZ, "no_key")
		a.Load8(asm.AL, "sercon")
		a.Test8(asm.AL, asm.AL)
		a.JNear(asm.JZ, "poweroff")
		a.MovImm8(asm.AH, 0x00)
		a.Int(0x16)
		a.Call("echochar")
		a.Jmp("key")
		a.Label("no_key")
	} else {
		a.JNear(asm.JNZ, "poweroff")
	}
	a.Test(asm.BP, asm.BP)
	a.J(asm.JZ, "no_pm")
	a.Mov(asm.DX, asm.BP)
	a.InDX()
	a.TestImm(asm.AX, 0x0100)
	a.JNear(asm.JNZ, "poweroff")
	a.Label("no_pm")
	if o.Timeout > 0 {
		a.Load(asm.AX, "ticks")
		a.Load(asm.CX, "tstart")
		a.Sub(asm.AX, asm.CX)
		a.CmpImm(asm.AX, o.ticks())
		a.JNear(asm.JAE, "poweroff")
	}
	if p.Heartbeat != 0 {
		// Every interval of ticks since the last line, counted from the
		// tick it printed at, so a pause (the guest's clock stops with
		// the VM) never makes a burst of lines.
		a.Load(asm.AX, "ticks")
		a.Mov(asm.BX, asm.AX)
		a.Load(asm.CX, "hblast")
		a.Sub(asm.AX, asm.CX)
		a.CmpImm(asm.AX, p.heartbeatTicks())
		a.J(asm.JB, "no_hb")
		a.Store("hblast", asm.BX)
		a.Load(asm.AX, "hblo")
		a.Load(asm.DX, "hbhi")
		a.AddImm(asm.AX, 1)
		a.AdcImm(asm.DX, 0)
		a.Store("hblo", asm.AX)
		a.Store("hbhi", asm.DX)
		if p.Echo {
			// A line being typed: end it, so the heartbeat starts a line
			// of its own. The matcher keeps what was typed.
			a.Load8(asm.AL, "col")
			a.Test8(asm.AL, asm.AL)
			a.J(asm.JZ, "hb_col0")
			a.MovAddr(asm.SI, "crlf")
			a.Call("putserial")
			a.MovImm8(asm.AL, 0)
			a.Store8("col", asm.AL)
			a.Label("hb_col0")
		}
		a.MovAddr(asm.SI, "hbline")
		a.Call("putserial")
		a.Load(asm.AX, "hblo")
		a.Load(asm.DX, "hbhi")
		a.Call("printline")
		a.Label("no_hb")
	}
	if p.Echo {
		// Drain COM1: int 14h AH=3 returns the line status in AH (bit 0,
		// data ready), AH=2 the byte in AL. No interrupt is needed, so
		// each timer tick polls; QEMU holds further input back while the
		// UART's byte is unread, so nothing is lost.
		a.Label("echo")
		a.Load8(asm.AL, "hasserial")
		a.Test8(asm.AL, asm.AL)
		a.J(asm.JZ, "no_echo")
		a.MovImm8(asm.AH, 0x03)
		a.Xor(asm.DX, asm.DX)
		a.Int(0x14)
		a.TestImm8(asm.AH, 0x01)
		a.J(asm.JZ, "no_echo")
		a.MovImm8(asm.AH, 0x02)
		a.Xor(asm.DX, asm.DX)
		a.Int(0x14)
		a.TestImm8(asm.AH, 0x80) // timeout or error: no byte
		a.J(asm.JNZ, "no_echo")
		a.Call("echochar")
		a.Jmp("echo")
		a.Label("no_echo")
	}
	a.JmpNear("wait")

	pmProbe(a)
}

// probeRoutines are the subroutines the probes call: putc and printline
// always, bootcount and disks when on.
func probeRoutines(a *asm.Assembler, p Probes) {
	// putc sends AL to COM1 when there is one; it changes AH and DX.
	a.Label("putc")
	a.Load8(asm.AH, "hasserial")
	a.Test8(asm.AH, asm.AH)
	a.J(asm.JZ, "putc_done")
	a.MovImm8(asm.AH, 0x01)
	a.Xor(asm.DX, asm.DX)
	a.Int(0x14)
	a.Label("putc_done")
	a.Ret()

	// putserial sends the NUL-terminated string at SI through putc.
	a.Label("putserial")
	a.Lodsb()
	a.Test8(asm.AL, asm.AL)
	a.J(asm.JZ, "putc_done")
	a.Call("putc")
	a.Jmp("putserial")

	// printline prints DX:AX in decimal, then CR LF. Each round divides
	// the 32-bit value by 10 in two 16-bit steps (high word, then the
	// remainder with the low word) and pushes the digit.
	a.Label("printline")
	a.MovImm(asm.CX, 10)
	a.Xor(asm.BX, asm.BX)
	a.Label("pl_div")
	a.Mov(asm.SI, asm.AX)
	a.Mov(asm.AX, asm.DX)
	a.Xor(asm.DX, asm.DX)
	a.Div(asm.CX)
	a.Mov(asm.DI, asm.AX)
	a.Mov(asm.AX, asm.SI)
	a.Div(asm.CX)
	a.Push(asm.DX)
	a.Inc(asm.BX)
	a.Mov(asm.DX, asm.DI)
	a.Mov(asm.SI, asm.DX)
	a.Or(asm.SI, asm.AX)
	a.J(asm.JNZ, "pl_div")
	a.Label("pl_out")
	a.Pop(asm.AX)
	a.AddImm(asm.AX, '0')
	a.Call("putc")
	a.Dec(asm.BX)
	a.J(asm.JNZ, "pl_out")
	a.MovAddr(asm.SI, "crlf")
	a.JmpNear("putserial")

	if p.Echo {
		// echochar echoes AL to COM1 (a CR as CR LF) and feeds the
		// "poweroff" matcher: a line that is exactly the word powers off.
		a.Label("echochar")
		a.Push(asm.AX)
		a.Call("putc")
		a.Pop(asm.AX)
		a.CmpImm8(asm.AL, '\r')
		a.J(asm.JE, "eol")
		a.CmpImm8(asm.AL, '\n')
		a.J(asm.JE, "eol")
		// Advance the matcher, or park it on pwbad until the line ends.
		a.Mov(asm.BX, asm.AX)
		a.MovImm8(asm.AL, 1) // the cursor is past the start of a line
		a.Store8("col", asm.AL)
		a.Load(asm.SI, "pwptr")
		a.Lodsb()
		a.Cmp8(asm.AL, asm.BL)
		a.J(asm.JE, "pw_next")
		a.MovAddr(asm.SI, "pwbad")
		a.Label("pw_next")
		a.Store("pwptr", asm.SI)
		a.Ret()
		a.Label("eol")
		a.CmpImm8(asm.AL, '\r')
		a.J(asm.JNE, "eol_lf")
		a.MovImm8(asm.AL, '\n')
		a.Call("putc")
		a.Label("eol_lf")
		a.MovImm8(asm.AL, 0)
		a.Store8("col", asm.AL)
		a.Load(asm.SI, "pwptr")
		a.Lodsb()
		a.CmpImm8(asm.AL, '\n') // the whole word matched
		a.JNear(asm.JE, "poweroff")
		a.MovAddr(asm.AX, "pw")
		a.Store("pwptr", asm.AX)
		a.Ret()
	}

	a.Equ("buf", diskBuffer)
	if p.BootCount {
		// bootcount reads the counter's sector from the boot drive,
		// checks its magic, adds one, writes it back (AH=43h) and
		// prints the count; any failure prints "tinyvm error bootcount".
		a.Equ("bclo", diskBuffer+uint16(bootCountOffset))
		a.Equ("bchi", diskBuffer+uint16(bootCountOffset)+2)
		a.Label("bootcount")
		a.MovImm(asm.AX, BootCountLBA)
		a.Call("readsector1")
		a.J(asm.JC, "bc_fail")
		a.MovAddr(asm.SI, "bcmagic")
		a.MovImm(asm.DI, diskBuffer)
		a.MovImm(asm.CX, uint16(len(BootCountMagic)))
		a.RepeCmpsb()
		a.J(asm.JNE, "bc_fail")
		a.Load(asm.AX, "bclo")
		a.Load(asm.DX, "bchi")
		a.AddImm(asm.AX, 1)
		a.AdcImm(asm.DX, 0)
		a.Store("bclo", asm.AX)
		a.Store("bchi", asm.DX)
		a.Load8(asm.DL, "bootdrive")
		a.MovAddr(asm.SI, "dap")
		a.MovImm(asm.AX, 0x4300) // AH=43h extended write, AL=0 no verify
		a.Int(0x13)
		a.J(asm.JC, "bc_fail")
		a.MovAddr(asm.SI, "bootline")
		a.Call("putserial")
		a.Load(asm.AX, "bclo")
		a.Load(asm.DX, "bchi")
		a.JmpNear("printline")
		a.Label("bc_fail")
		a.MovAddr(asm.SI, "bootfail")
		a.JmpNear("putserial")
	}

	// readsector1 reads sector AX of the boot drive into buf; CF on error.
	// readsector reads sector AX of drive DL.
	a.Label("readsector1")
	a.Load8(asm.DL, "bootdrive")
	a.Label("readsector")
	a.Store("daplba0", asm.AX)
	a.MovImm(asm.AX, 1)
	a.Store("dapcount", asm.AX)
	a.MovImm(asm.AX, diskBuffer)
	a.Store("dapoff", asm.AX)
	a.MovAddr(asm.SI, "dap")
	a.MovImm8(asm.AH, 0x42)
	a.Int(0x13)
	a.Ret()

	if !p.Disks {
		return
	}
	// disks prints the BIOS's hard disk count, then looks for an ISO
	// 9660 label on each hard disk (0x80 up) and each CD (0xE0 up, until
	// one is missing).
	a.Equ("hdcount", hdCount)
	a.Equ("eddsize", eddBuffer)
	a.Equ("eddbps", eddBPS)
	a.Label("disks")
	a.MovAddr(asm.SI, "disksline")
	a.Call("putserial")
	a.Load8(asm.AL, "hdcount")
	a.MovImm8(asm.AH, 0)
	a.Push(asm.AX)
	a.Xor(asm.DX, asm.DX)
	a.Call("printline")
	a.Pop(asm.AX)
	a.AddImm(asm.AX, 0x80)
	a.Store("hdend", asm.AX)
	a.MovImm(asm.AX, 0x80)
	a.Store("cur", asm.AX)
	a.Label("hd_next")
	a.Load(asm.AX, "cur")
	a.Load(asm.CX, "hdend")
	a.Cmp(asm.AX, asm.CX)
	a.J(asm.JAE, "cds")
	a.Call("volume")
	a.IncMem("cur")
	a.Jmp("hd_next")
	a.Label("cds")
	a.MovImm(asm.AX, firstCD)
	a.Store("cur", asm.AX)
	a.Label("cd_next")
	a.Call("volume")
	a.J(asm.JC, "disks_done") // no such drive: the CDs end
	a.IncMem("cur")
	a.Load(asm.AX, "cur")
	a.CmpImm(asm.AX, lastCD)
	a.J(asm.JBE, "cd_next")
	a.Label("disks_done")
	a.Ret()

	// volume looks at drive [cur]: CF set when the BIOS has no such
	// drive; otherwise it prints the label line if the drive's sector at
	// byte 32768 is an ISO 9660 primary volume descriptor with a label.
	a.Label("volume")
	a.MovImm(asm.AX, eddSize)
	a.Store("eddsize", asm.AX)
	a.Load(asm.DX, "cur")
	a.MovImm(asm.SI, eddBuffer)
	a.MovImm8(asm.AH, 0x48)
	a.Int(0x13)
	a.J(asm.JC, "vol_ret") // CF: no drive
	a.Load(asm.CX, "eddbps")
	a.Test(asm.CX, asm.CX)
	a.J(asm.JZ, "vol_none")
	a.CmpImm(asm.CX, maxBPS)
	a.J(asm.JA, "vol_none")
	a.MovImm(asm.AX, pvdOffset)
	a.Xor(asm.DX, asm.DX)
	a.Div(asm.CX) // the descriptor's LBA in the drive's sectors
	a.Load(asm.DX, "cur")
	a.Call("readsector")
	a.J(asm.JC, "vol_none")
	a.MovAddr(asm.SI, "cd001")
	a.MovImm(asm.DI, diskBuffer)
	a.MovImm(asm.CX, 6)
	a.RepeCmpsb()
	a.J(asm.JNE, "vol_none")
	// DI = the end of the label without its trailing spaces.
	a.MovImm(asm.SI, pvdLabel)
	a.Mov(asm.DI, asm.SI)
	a.MovImm(asm.CX, pvdLabelLen)
	a.Label("vol_scan")
	a.Lodsb()
	a.CmpImm8(asm.AL, ' ')
	a.J(asm.JBE, "vol_space")
	a.Mov(asm.DI, asm.SI)
	a.Label("vol_space")
	a.Dec(asm.CX)
	a.J(asm.JNZ, "vol_scan")
	a.SubImm(asm.DI, pvdLabel)
	a.J(asm.JZ, "vol_none") // an empty label prints nothing
	a.Push(asm.DI)
	a.MovAddr(asm.SI, "volline")
	a.Call("putserial")
	a.Pop(asm.CX)
	a.MovImm(asm.SI, pvdLabel)
	a.Label("vol_put")
	a.Lodsb()
	a.CmpImm8(asm.AL, 0x20) // not printable ASCII: '?'
	a.J(asm.JB, "vol_q")
	a.CmpImm8(asm.AL, 0x7E)
	a.J(asm.JBE, "vol_c")
	a.Label("vol_q")
	a.MovImm8(asm.AL, '?')
	a.Label("vol_c")
	a.Call("putc")
	a.Dec(asm.CX)
	a.J(asm.JNZ, "vol_put")
	a.MovAddr(asm.SI, "crlf")
	a.Call("putserial")
	a.Label("vol_none")
	a.Xor(asm.AX, asm.AX) // clears CF: the drive exists
	a.Label("vol_ret")
	a.Ret()
}
