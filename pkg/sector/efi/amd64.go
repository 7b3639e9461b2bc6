package efi

import (
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/x64"
)

// The x86-64 stack frame (Microsoft x64 calling convention): RSP is 8 mod
// 16 on entry, so subtracting frameSize aligns it for calls. The callee may
// use the 32 bytes of shadow space at the bottom.
const (
	frameSize = 0x48
	argFifth  = 0x20 // the fifth argument of a call goes on the stack
	slotKey   = 0x28 // events[0]: ConIn->WaitForKey
	slotTimer = 0x30 // events[1]: the timer
	slotIndex = 0x38 // which event WaitForEvent saw
)

// pmBases are the ACPI PM1 event blocks the application probes for the
// power button: OVMF's on q35 (ICH9) and on pc (PIIX4), and VirtualBox's.
var pmBases = []uint32{0x0600, 0xB000, 0x4000}

// PM1 event block registers and bits.
const (
	pm1En     = 2      // PM1_EN, after the 16-bit PM1_STS at the base
	pwrbtnBit = 0x0100 // PWRBTN_STS in PM1_STS, PWRBTN_EN in PM1_EN
)

// pmBaseReg holds the PM1 base found, or 0; RBP survives firmware calls.
const pmBaseReg = x64.RBP

// amd64Program writes the x86-64 application. Registers that survive
// calls: RBX holds the system table, RSI the boot services, RDI the ticks
// left, RBP the PM1 base (0 when none was found); with probes, R12 the
// probes' frame and R13-R15 their state (see frameReg).
func amd64Program(o sector.Options) ([]byte, error) {
	code, _, err := amd64Code(o)
	return code, err
}

// amd64Code assembles the application and also returns where its data
// starts: the probes' GUIDs and lines, then the text.
func amd64Code(o sector.Options) ([]byte, int, error) {
	a := x64.New()
	probes := o.Probes.Any()
	if probes {
		a.SubImm32(x64.RSP, probeFrame)
	} else {
		a.SubImm8(x64.RSP, frameSize)
	}
	a.Mov(x64.RBX, x64.RDX) // RDX: the system table; RCX: our image handle
	if probes {
		a.Mov(frameReg, x64.RSP)
		a.Store(x64.RSP, slotImage, x64.RCX)
	}

	// ConOut->OutputString(ConOut, text)
	a.Load(x64.RCX, x64.RBX, stConOut)
	a.Lea(x64.RDX, "text")
	a.CallMem(x64.RCX, conOutOutputString)
	if probes {
		amd64BootLines(a, o)
	}

	switch o.Then {
	case sector.PowerOff:
		amd64Reset(a, resetShutdown)
	case sector.Reboot:
		amd64Reset(a, resetCold)
	case sector.Halt:
		// Sleep on a timer that is never set: nothing ever wakes us.
		amd64Idle(a)
		a.Label("halt")
		a.MovImm32(x64.RCX, 1)
		a.LeaMem(x64.RDX, x64.RSP, slotTimer)
		a.LeaMem(x64.R8, x64.RSP, slotIndex)
		a.CallMem(x64.RSI, bsWaitForEvent)
		a.Jmp("halt")
	case sector.Wait:
		amd64Wait(a, o)
		a.Label("poweroff")
		amd64Reset(a, resetShutdown)
	}
	if probes {
		amd64Routines(a)
		a.Label("data")
		amd64Data(a, o)
	}
	a.Label("text")
	a.DB(text(o)...)
	code, err := a.Assemble()
	if err != nil {
		return nil, 0, err
	}
	data, ok := a.Offset("data")
	if !ok {
		data, _ = a.Offset("text")
	}
	return code, data, nil
}

// amd64Reset calls RuntimeServices->ResetSystem(kind, EFI_SUCCESS, 0,
// NULL), which does not return; if it did, the CPU halts.
func amd64Reset(a *x64.Assembler, kind uint32) {
	a.Load(x64.RAX, x64.RBX, stRuntimeServices)
	a.MovImm32(x64.RCX, kind)
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.Xor32(x64.R9, x64.R9)
	a.CallMem(x64.RAX, rtResetSystem)
	a.Label("stop")
	a.Hlt()
	a.Jmp("stop")
}

// amd64Idle turns off the boot manager's 5-minute watchdog, which would
// reset a machine that is still in its boot option, and creates the timer
// event in slotTimer (not set yet). It leaves the boot services in RSI.
func amd64Idle(a *x64.Assembler) {
	a.Load(x64.RSI, x64.RBX, stBootServices)
	// SetWatchdogTimer(0, 0, 0, NULL)
	a.Xor32(x64.RCX, x64.RCX)
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.Xor32(x64.R9, x64.R9)
	a.CallMem(x64.RSI, bsSetWatchdogTimer)
	// CreateEvent(EVT_TIMER, 0, NULL, NULL, &events[1])
	a.LeaMem(x64.RAX, x64.RSP, slotTimer)
	a.Store(x64.RSP, argFifth, x64.RAX)
	a.MovImm32(x64.RCX, evtTimer)
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.Xor32(x64.R9, x64.R9)
	a.CallMem(x64.RSI, bsCreateEvent)
}

// amd64Wait sleeps in WaitForEvent on the keyboard and a periodic timer;
// on each tick it polls PWRBTN_STS and counts down the timeout.
func amd64Wait(a *x64.Assembler, o sector.Options) {
	amd64Idle(a)
	// SetTimer(events[1], TimerPeriodic, Tick)
	a.Load(x64.RCX, x64.RSP, slotTimer)
	a.MovImm32(x64.RDX, timerPeriodic)
	a.MovImm32(x64.R8, tick100ns)
	a.CallMem(x64.RSI, bsSetTimer)
	// events[0] = ConIn->WaitForKey
	a.Load(x64.RAX, x64.RBX, stConIn)
	a.Load(x64.RAX, x64.RAX, conInWaitForKey)
	a.Store(x64.RSP, slotKey, x64.RAX)

	// Find the PM1 event block: enable PWRBTN_EN and keep the first base
	// whose PM1_EN reads it back (an absent port reads 0xFFFF).
	for _, base := range pmBases {
		a.MovImm32(pmBaseReg, base)
		a.Call("pmprobe")
		a.J(x64.JE, "pm_found")
	}
	a.Xor32(pmBaseReg, pmBaseReg)
	a.Label("pm_found")
	n := ticks(o)
	if n > 0 {
		a.MovImm32(x64.RDI, n)
	}

	p := o.Probes
	// The probes' code makes the loop longer than a short jump reaches;
	// without them the bytes stay as they were.
	jcc, jmp := a.J, a.Jmp
	if p.Any() {
		jcc, jmp = a.JNear, a.JmpNear
	}
	if p.Heartbeat != 0 {
		a.Xor32(hbCount, hbCount)
		a.MovImm32(hbLeft, heartbeatTicks(p))
	}
	if p.Echo {
		a.Xor32(lineLen, lineLen)
	}
	column := p.Heartbeat != 0 && p.Echo
	if column {
		// The stack is not zeroed: no line is open yet.
		a.Xor32(x64.RAX, x64.RAX)
		a.Store8(frameReg, slotColumn, x64.RAX)
	}

	a.Label("wait")
	// WaitForEvent(2, events, &index)
	a.MovImm32(x64.RCX, 2)
	a.LeaMem(x64.RDX, x64.RSP, slotKey)
	a.LeaMem(x64.R8, x64.RSP, slotIndex)
	a.CallMem(x64.RSI, bsWaitForEvent)
	a.Load(x64.RAX, x64.RSP, slotIndex)
	a.Test32(x64.RAX, x64.RAX) // index 0: a key
	if p.Echo {
		jcc(x64.JZ, "key")
	} else {
		jcc(x64.JZ, "poweroff")
	}
	a.Test32(pmBaseReg, pmBaseReg)
	a.J(x64.JZ, "no_pm")
	a.Mov32(x64.RDX, pmBaseReg)
	a.InDX() // PM1_STS
	a.TestImm32(x64.RAX, pwrbtnBit)
	jcc(x64.JNZ, "poweroff")
	a.Label("no_pm")
	if n > 0 {
		a.Dec32(x64.RDI)
		jcc(x64.JZ, "poweroff")
	}
	if p.Heartbeat != 0 {
		// Counted in ticks of the guest's timer, which stops while the VM
		// is paused: a pause never makes a burst of lines.
		a.Dec32(hbLeft)
		a.J(x64.JNZ, "no_hb")
		a.MovImm32(hbLeft, heartbeatTicks(p))
		a.AddImm8(hbCount, 1)
		if column {
			// A heartbeat starts a line of its own: end the line being
			// typed on screen, but keep it for the poweroff match.
			a.LoadByte(x64.RAX, frameReg, slotColumn)
			a.Test32(x64.RAX, x64.RAX)
			a.J(x64.JZ, "hb_column")
			a.Lea(x64.RDX, "crlfline")
			a.Call("puts")
			a.Xor32(x64.RAX, x64.RAX)
			a.Store8(frameReg, slotColumn, x64.RAX)
			a.Label("hb_column")
		}
		a.Lea(x64.RDX, "hbline")
		a.Call("puts")
		a.Mov32(x64.RAX, hbCount)
		a.Call("putnum")
		a.Label("no_hb")
	}
	jmp("wait")
	if p.Echo {
		amd64Echo(a, column)
	}

	// pmprobe: write PWRBTN_EN to PM1_EN; ZF set if it reads back.
	a.Label("pmprobe")
	a.Mov32(x64.RDX, pmBaseReg)
	a.AddImm8(x64.RDX, pm1En)
	a.MovImm32(x64.RAX, pwrbtnBit)
	a.OutDX()
	a.InDX()
	a.CmpImm32(x64.RAX, pwrbtnBit)
	a.Ret()
}

// The probes' stack frame: the wait's slots as above, then scratch for
// the firmware calls' out parameters and the lines being built. Its size
// is 8 mod 16, like frameSize, so calls stay 16-byte aligned.
const (
	probeFrame   = 0xC8
	slotA        = 0x40 // an out parameter: the page, the handle count
	slotB        = 0x48 // the handle buffer; the device path pointer
	slotC        = 0x50 // an interface; the boot disk's handle
	slotImage    = 0x58 // our image handle
	slotInputKey = 0x60 // EFI_INPUT_KEY
	slotLine     = 0x68 // the echo's line so far, 8 bytes
	slotEcho     = 0x70 // the echoed character as a UCS-2 string
	slotStr      = 0x78 // a volume label line being built, up to 35 CHAR16
	slotNumEnd   = 0xB8 // where putnum puts CR LF NUL; its digits go below
	slotColumn   = 0xC0 // with heartbeat and echo: 1 while a typed line is open
)

// Registers the probes keep across firmware calls (callee-saved in the
// Microsoft x64 convention), besides RBX, RSI, RDI and RBP above.
const (
	frameReg = x64.R12 // the probe frame, reachable from subroutines
	pageReg  = x64.R14 // the page from AllocatePages, or 0
	hbCount  = x64.R13 // the heartbeat's last N
	hbLeft   = x64.R15 // ticks until the next heartbeat
	lineLen  = x64.R14 // the echo's line length, saturating at 9
)

// Where things go in the page: the 2048 bytes read from each disk (the
// counter's sector too), then the boot disk's device path as copied.
const (
	pageRead     = 0x000
	readBytes    = 2048
	pageDevPath  = 0x800
	pageDevLimit = 0xF00 // a longer device path is refused
)

// heartbeatTicks is the heartbeat's interval in ticks, rounded up.
func heartbeatTicks(p sector.Probes) uint32 {
	return uint32((p.Heartbeat + Tick - 1) / Tick)
}

// le64 is the first 8 bytes of s as a little-endian word, to compare
// memory with in one instruction.
func le64(s string) uint64 {
	var v uint64
	for i := 7; i >= 0; i-- {
		v = v<<8 | uint64(s[i])
	}
	return v
}

// amd64BootLines prints the probes' once-per-boot lines in the BIOS
// program's order (docs/probes.md): id, boot, then disks and its volumes.
// It leaves the boot services in RSI.
func amd64BootLines(a *x64.Assembler, o sector.Options) {
	p := o.Probes
	a.Load(x64.RSI, x64.RBX, stBootServices)
	if p.Disks || p.BootCount {
		// AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &page): 4 KiB
		// aligned, which satisfies any disk's IoAlign.
		a.Xor32(pageReg, pageReg)
		a.Store(frameReg, slotA, pageReg)
		a.MovImm32(x64.RCX, allocateAnyPages)
		a.MovImm32(x64.RDX, loaderData)
		a.MovImm32(x64.R8, 1)
		a.LeaMem(x64.R9, frameReg, slotA)
		a.CallMem(x64.RSI, bsAllocatePages)
		a.Test32(x64.RAX, x64.RAX)
		a.J(x64.JNZ, "no_page")
		a.Load(pageReg, frameReg, slotA)
		a.Label("no_page")
	}
	if p.ID {
		a.Lea(x64.RDX, "idline")
		a.Call("puts")
	}
	if p.BootCount {
		amd64BootCount(a)
	}
	if p.Disks {
		amd64Disks(a)
	}
}

// amd64Disks prints the hard disks' count, then the ISO 9660 label of
// each whole disk or CD that has one, in firmware order.
func amd64Disks(a *x64.Assembler) {
	// Given a boot order, OVMF and AAVMF connect only the devices in it:
	// connect every controller, as a boot manager's ConnectAll does, so
	// that every disk and CD has its BlockIo.
	// LocateHandleBuffer(AllHandles, NULL, NULL, &n, &handles)
	a.Xor32(x64.RAX, x64.RAX)
	a.Store(frameReg, slotA, x64.RAX)
	a.LeaMem(x64.RAX, frameReg, slotB)
	a.Store(x64.RSP, argFifth, x64.RAX)
	a.MovImm32(x64.RCX, allHandles)
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.LeaMem(x64.R9, frameReg, slotA)
	a.CallMem(x64.RSI, bsLocateHandleBuffer)
	a.Test32(x64.RAX, x64.RAX)
	a.J(x64.JNZ, "connected")
	a.Load(x64.R15, frameReg, slotB)
	a.Load(x64.RDI, frameReg, slotA)
	a.Label("connect")
	a.Test32(x64.RDI, x64.RDI)
	a.J(x64.JZ, "connected")
	// ConnectController(handle, NULL, NULL, TRUE); a failure is a
	// handle no driver wants.
	a.Load(x64.RCX, x64.R15, 0)
	a.Xor32(x64.RDX, x64.RDX)
	a.Xor32(x64.R8, x64.R8)
	a.MovImm32(x64.R9, 1)
	a.CallMem(x64.RSI, bsConnectController)
	a.AddImm8(x64.R15, 8)
	a.Dec32(x64.RDI)
	a.Jmp("connect")
	a.Label("connected")

	// LocateHandleBuffer(ByProtocol, &BlockIo, NULL, &n, &handles)
	a.Xor32(x64.RAX, x64.RAX)
	a.Store(frameReg, slotA, x64.RAX)
	a.LeaMem(x64.RAX, frameReg, slotB)
	a.Store(x64.RSP, argFifth, x64.RAX)
	a.MovImm32(x64.RCX, byProtocol)
	a.Lea(x64.RDX, "guid_blockio")
	a.Xor32(x64.R8, x64.R8)
	a.LeaMem(x64.R9, frameReg, slotA)
	a.CallMem(x64.RSI, bsLocateHandleBuffer)
	a.Test32(x64.RAX, x64.RAX)
	a.J(x64.JZ, "lhb_ok")
	a.Xor32(x64.RAX, x64.RAX) // none: no handles to walk
	a.Store(frameReg, slotA, x64.RAX)
	a.Label("lhb_ok")

	// Count the whole disks that are not removable (a CD drive is).
	a.Xor32(x64.R13, x64.R13)
	a.Load(x64.R15, frameReg, slotB)
	a.Load(x64.RDI, frameReg, slotA)
	a.Label("count")
	a.Test32(x64.RDI, x64.RDI)
	a.J(x64.JZ, "counted")
	a.Load(x64.RCX, x64.R15, 0)
	a.Call("blockio")
	a.J(x64.JNZ, "count_next")
	a.Load(x64.RAX, frameReg, slotC)
	a.Load(x64.RAX, x64.RAX, bioMedia)
	a.LoadByte(x64.RCX, x64.RAX, mediaLogicalPartition)
	a.Test32(x64.RCX, x64.RCX)
	a.J(x64.JNZ, "count_next")
	a.LoadByte(x64.RCX, x64.RAX, mediaRemovable)
	a.Test32(x64.RCX, x64.RCX)
	a.J(x64.JNZ, "count_next")
	a.AddImm8(x64.R13, 1)
	a.Label("count_next")
	a.AddImm8(x64.R15, 8)
	a.Dec32(x64.RDI)
	a.Jmp("count")
	a.Label("counted")
	a.Lea(x64.RDX, "disksline")
	a.Call("puts")
	a.Mov32(x64.RAX, x64.R13)
	a.Call("putnum")

	// Read byte 32768 of each whole disk or CD with a medium; print the
	// label of an ISO 9660 primary volume descriptor.
	a.Test(pageReg, pageReg)
	a.JNear(x64.JZ, "vol_done")
	a.Load(x64.R15, frameReg, slotB)
	a.Load(x64.RDI, frameReg, slotA)
	a.Label("vol")
	a.Test32(x64.RDI, x64.RDI)
	a.JNear(x64.JZ, "vol_done")
	a.Load(x64.RCX, x64.R15, 0)
	a.Call("blockio")
	a.JNear(x64.JNZ, "vol_next")
	a.Load(x64.RCX, frameReg, slotC)
	a.Load(x64.RAX, x64.RCX, bioMedia)
	a.LoadByte(x64.RDX, x64.RAX, mediaLogicalPartition)
	a.Test32(x64.RDX, x64.RDX)
	a.JNear(x64.JNZ, "vol_next")
	a.LoadByte(x64.RDX, x64.RAX, mediaPresent)
	a.Test32(x64.RDX, x64.RDX)
	a.JNear(x64.JZ, "vol_next")
	// ReadBlocks(This, MediaId, 32768/BlockSize, 2048, page)
	a.Load32(x64.R8, x64.RAX, mediaBlockSize)
	a.MovImm32(x64.R9, pvdOffset/512)
	a.CmpImm32(x64.R8, 512)
	a.J(x64.JE, "vol_read")
	a.MovImm32(x64.R9, pvdOffset/2048)
	a.CmpImm32(x64.R8, 2048)
	a.JNear(x64.JNE, "vol_next")
	a.Label("vol_read")
	a.Mov(x64.R8, x64.R9)
	a.Load32(x64.RDX, x64.RAX, mediaID)
	a.MovImm32(x64.R9, readBytes)
	a.Store(x64.RSP, argFifth, pageReg)
	a.CallMem(x64.RCX, bioReadBlocks)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "vol_next")
	// Type 1 and "CD001" (ECMA-119 8.4.1, 8.4.2).
	a.LoadByte(x64.RAX, pageReg, pageRead)
	a.CmpImm32(x64.RAX, 1)
	a.JNear(x64.JNE, "vol_next")
	a.Load32(x64.RAX, pageReg, pageRead+1)
	a.CmpImm32(x64.RAX, uint32(le64("CD00\x00\x00\x00\x00")))
	a.JNear(x64.JNE, "vol_next")
	a.LoadByte(x64.RAX, pageReg, pageRead+5)
	a.CmpImm32(x64.RAX, '1')
	a.JNear(x64.JNE, "vol_next")
	// R10 = the end of the label without its trailing spaces.
	a.LeaMem(x64.R8, pageReg, pageRead+pvdLabel)
	a.Mov(x64.R10, x64.R8)
	a.MovImm32(x64.R9, pvdLabelLen)
	a.Label("vol_scan")
	a.LoadByte(x64.RAX, x64.R8, 0)
	a.AddImm8(x64.R8, 1)
	a.CmpImm32(x64.RAX, ' ')
	a.J(x64.JBE, "vol_space")
	a.Mov(x64.R10, x64.R8)
	a.Label("vol_space")
	a.Dec32(x64.R9)
	a.J(x64.JNZ, "vol_scan")
	a.LeaMem(x64.R8, pageReg, pageRead+pvdLabel)
	a.Sub(x64.R10, x64.R8)
	a.J(x64.JZ, "vol_next") // an empty label prints nothing
	// The label as UCS-2, bytes outside printable ASCII as '?', then CR
	// LF NUL.
	a.LeaMem(x64.R11, frameReg, slotStr)
	a.Label("vol_copy")
	a.LoadByte(x64.RAX, x64.R8, 0)
	a.AddImm8(x64.R8, 1)
	a.CmpImm32(x64.RAX, 0x20)
	a.J(x64.JB, "vol_q")
	a.CmpImm32(x64.RAX, 0x7E)
	a.J(x64.JBE, "vol_c")
	a.Label("vol_q")
	a.MovImm32(x64.RAX, '?')
	a.Label("vol_c")
	a.Store16(x64.R11, 0, x64.RAX)
	a.AddImm8(x64.R11, 2)
	a.Dec32(x64.R10)
	a.J(x64.JNZ, "vol_copy")
	a.MovImm32(x64.RAX, crlf)
	a.Store32(x64.R11, 0, x64.RAX)
	a.Xor32(x64.RAX, x64.RAX)
	a.Store16(x64.R11, 4, x64.RAX)
	a.Lea(x64.RDX, "volline")
	a.Call("puts")
	a.LeaMem(x64.RDX, frameReg, slotStr)
	a.Call("puts")
	a.Label("vol_next")
	a.AddImm8(x64.R15, 8)
	a.Dec32(x64.RDI)
	a.JmpNear("vol")
	a.Label("vol_done")
}

// ISO 9660 figures: the primary volume descriptor is at byte 32768
// (ECMA-119 6.2.1, 8.4) and its 32-byte volume identifier at byte 40.
const (
	pvdOffset   = 32768
	pvdLabel    = 40
	pvdLabelLen = 32
)

// crlf is CR LF as two CHAR16 in one little-endian dword.
const crlf = 0x000A000D

// amd64BootCount finds the whole disk the application was loaded from,
// adds one to the counter in its sector BootCountLBA, writes and flushes
// it, and prints the count; any failure prints the error line.
func amd64BootCount(a *x64.Assembler) {
	a.Test(pageReg, pageReg)
	a.JNear(x64.JZ, "bc_fail")
	// HandleProtocol(ImageHandle, &LoadedImage, &image)
	a.Load(x64.RCX, frameReg, slotImage)
	a.Lea(x64.RDX, "guid_loadedimage")
	a.LeaMem(x64.R8, frameReg, slotC)
	a.CallMem(x64.RSI, bsHandleProtocol)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "bc_fail")
	// HandleProtocol(image->DeviceHandle, &DevicePath, &path): the ESP's.
	a.Load(x64.RAX, frameReg, slotC)
	a.Load(x64.RCX, x64.RAX, liDeviceHandle)
	a.Lea(x64.RDX, "guid_devicepath")
	a.LeaMem(x64.R8, frameReg, slotC)
	a.CallMem(x64.RSI, bsHandleProtocol)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "bc_fail")
	// Copy the path up to its first hard drive or CD-ROM media node:
	// what is left is the whole disk's path.
	a.Load(x64.R8, frameReg, slotC)
	a.LeaMem(x64.R9, pageReg, pageDevPath)
	a.LeaMem(x64.R10, pageReg, pageDevLimit)
	a.Label("dp")
	a.LoadByte(x64.RAX, x64.R8, dpType)
	a.CmpImm32(x64.RAX, dpEnd)
	a.J(x64.JE, "dp_end")
	a.CmpImm32(x64.RAX, dpMedia)
	a.J(x64.JNE, "dp_copy")
	a.LoadByte(x64.RAX, x64.R8, dpSubType)
	a.CmpImm32(x64.RAX, dpMediaHD)
	a.J(x64.JE, "dp_end")
	a.CmpImm32(x64.RAX, dpMediaCDROM)
	a.J(x64.JE, "dp_end")
	a.Label("dp_copy")
	a.LoadWord(x64.RCX, x64.R8, dpLength)
	a.CmpImm32(x64.RCX, dpEndNodeBytes) // shorter is malformed: never loop
	a.JNear(x64.JB, "bc_fail")
	a.Mov(x64.RAX, x64.R9)
	a.Add(x64.RAX, x64.RCX)
	a.Cmp(x64.RAX, x64.R10)
	a.JNear(x64.JA, "bc_fail")
	a.Label("dp_byte")
	a.LoadByte(x64.RAX, x64.R8, 0)
	a.Store8(x64.R9, 0, x64.RAX)
	a.AddImm8(x64.R8, 1)
	a.AddImm8(x64.R9, 1)
	a.Dec32(x64.RCX)
	a.J(x64.JNZ, "dp_byte")
	a.Jmp("dp")
	a.Label("dp_end")
	a.MovImm32(x64.RAX, dpEnd|dpEndEntire<<8|dpEndNodeBytes<<16)
	a.Store32(x64.R9, 0, x64.RAX)
	// LocateDevicePath(&BlockIo, &path, &disk) must consume the whole
	// path: a shorter match is some other device.
	a.LeaMem(x64.RAX, pageReg, pageDevPath)
	a.Store(frameReg, slotB, x64.RAX)
	a.Lea(x64.RCX, "guid_blockio")
	a.LeaMem(x64.RDX, frameReg, slotB)
	a.LeaMem(x64.R8, frameReg, slotC)
	a.CallMem(x64.RSI, bsLocateDevicePath)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "bc_fail")
	a.Load(x64.RAX, frameReg, slotB)
	a.LoadByte(x64.RAX, x64.RAX, dpType)
	a.CmpImm32(x64.RAX, dpEnd)
	a.JNear(x64.JNE, "bc_fail")
	a.Load(x64.RCX, frameReg, slotC)
	a.Call("blockio")
	a.JNear(x64.JNZ, "bc_fail")
	a.Load(x64.R13, frameReg, slotC)
	a.Load(x64.RAX, x64.R13, bioMedia)
	a.Load32(x64.RCX, x64.RAX, mediaBlockSize)
	a.CmpImm32(x64.RCX, sector.Size)
	a.JNear(x64.JNE, "bc_fail")
	a.LoadByte(x64.RCX, x64.RAX, mediaReadOnly)
	a.Test32(x64.RCX, x64.RCX)
	a.JNear(x64.JNZ, "bc_fail")
	amd64CounterIO(a, bioReadBlocks)
	magic := sector.BootCountMagic
	for i := 0; i < len(magic); i += 8 {
		a.Load(x64.RAX, pageReg, int32(pageRead+i))
		a.MovImm64(x64.RCX, le64(magic[i:]))
		a.Cmp(x64.RAX, x64.RCX)
		a.JNear(x64.JNE, "bc_fail")
	}
	a.Load32(x64.RAX, pageReg, int32(pageRead+len(magic)))
	a.AddImm8(x64.RAX, 1)
	a.Store32(pageReg, int32(pageRead+len(magic)), x64.RAX)
	a.Mov32(x64.R15, x64.RAX)
	amd64CounterIO(a, bioWriteBlocks)
	a.Mov(x64.RCX, x64.R13)
	a.CallMem(x64.R13, bioFlushBlocks)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "bc_fail")
	a.Lea(x64.RDX, "bootline")
	a.Call("puts")
	a.Mov32(x64.RAX, x64.R15)
	a.Call("putnum")
	a.JmpNear("bc_done")
	a.Label("bc_fail")
	a.Lea(x64.RDX, "bootfail")
	a.Call("puts")
	a.Label("bc_done")
}

// amd64CounterIO calls ReadBlocks or WriteBlocks (fn) of the BlockIo in
// R13 for the counter's sector, in the page; a failure goes to bc_fail.
func amd64CounterIO(a *x64.Assembler, fn int32) {
	a.Mov(x64.RCX, x64.R13)
	a.Load(x64.RAX, x64.R13, bioMedia)
	a.Load32(x64.RDX, x64.RAX, mediaID)
	a.MovImm32(x64.R8, sector.BootCountLBA)
	a.MovImm32(x64.R9, sector.Size)
	a.Store(x64.RSP, argFifth, pageReg)
	a.CallMem(x64.R13, fn)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "bc_fail")
}

// amd64Echo reads every key waiting on ConIn and echoes it (CR as CR
// LF); a line that is exactly "poweroff", ended by CR or LF as on BIOS,
// powers off. It jumps back to the wait when ConIn has nothing more.
// With column it keeps slotColumn: set while a typed line is open on the
// console, cleared when CR or LF ends it.
func amd64Echo(a *x64.Assembler, column bool) {
	a.Label("key")
	// ReadKeyStroke(ConIn, &key) until EFI_NOT_READY (or any error).
	a.Load(x64.RCX, x64.RBX, stConIn)
	a.LeaMem(x64.RDX, frameReg, slotInputKey)
	a.CallMem(x64.RCX, conInReadKeyStroke)
	a.Test32(x64.RAX, x64.RAX)
	a.JNear(x64.JNZ, "wait")
	a.LoadWord(x64.RAX, frameReg, slotInputKey+keyUnicodeChar)
	a.Test32(x64.RAX, x64.RAX) // a scan code alone, such as an arrow key
	a.J(x64.JZ, "key")
	a.Store16(frameReg, slotEcho, x64.RAX)
	a.CmpImm32(x64.RAX, '\r')
	a.J(x64.JNE, "not_cr")
	a.MovImm32(x64.RCX, '\n')
	a.Store16(frameReg, slotEcho+2, x64.RCX)
	a.Xor32(x64.RCX, x64.RCX)
	a.Store16(frameReg, slotEcho+4, x64.RCX)
	a.LeaMem(x64.RDX, frameReg, slotEcho)
	a.Call("puts")
	a.Label("eol")
	if column {
		a.Xor32(x64.RCX, x64.RCX)
		a.Store8(frameReg, slotColumn, x64.RCX)
	}
	a.CmpImm32(lineLen, uint32(len(poweroffLine)))
	a.J(x64.JNE, "line_reset")
	a.Load(x64.RAX, frameReg, slotLine)
	a.MovImm64(x64.RCX, le64(poweroffLine))
	a.Cmp(x64.RAX, x64.RCX)
	a.JNear(x64.JE, "poweroff")
	a.Label("line_reset")
	a.Xor32(lineLen, lineLen)
	a.Jmp("key")
	a.Label("not_cr")
	a.Xor32(x64.RCX, x64.RCX)
	a.Store16(frameReg, slotEcho+2, x64.RCX)
	a.CmpImm32(x64.RAX, '\n') // echoed as it came, and ends the line
	a.J(x64.JNE, "not_lf")
	a.LeaMem(x64.RDX, frameReg, slotEcho)
	a.Call("puts")
	a.JmpNear("eol")
	a.Label("not_lf")
	// Keep the line's first 8 characters; count up to 9, enough to know
	// a longer line cannot match. A character beyond ASCII is kept as
	// 0xFF, which the word has not.
	a.CmpImm32(x64.RAX, 0x7F)
	a.J(x64.JBE, "ascii")
	a.MovImm32(x64.RAX, 0xFF)
	a.Label("ascii")
	a.CmpImm32(lineLen, uint32(len(poweroffLine)))
	a.J(x64.JAE, "line_full")
	a.LeaMem(x64.RCX, frameReg, slotLine)
	a.Add(x64.RCX, lineLen)
	a.Store8(x64.RCX, 0, x64.RAX)
	a.Label("line_full")
	a.CmpImm32(lineLen, uint32(len(poweroffLine))+1)
	a.J(x64.JAE, "line_long")
	a.AddImm8(lineLen, 1)
	a.Label("line_long")
	if column {
		a.MovImm32(x64.RCX, 1)
		a.Store8(frameReg, slotColumn, x64.RCX)
	}
	a.LeaMem(x64.RDX, frameReg, slotEcho)
	a.Call("puts")
	a.JmpNear("key")
}

// poweroffLine is the echo's line that powers off: 8 bytes, one compare.
const poweroffLine = "poweroff"

// amd64Routines are the probes' subroutines. Each one that calls the
// firmware makes its own shadow space, which also realigns the stack.
func amd64Routines(a *x64.Assembler) {
	// puts prints the UCS-2 string at RDX.
	a.Label("puts")
	a.SubImm8(x64.RSP, 0x28)
	a.Load(x64.RCX, x64.RBX, stConOut)
	a.CallMem(x64.RCX, conOutOutputString)
	a.AddImm8(x64.RSP, 0x28)
	a.Ret()

	// putnum prints EAX in decimal, then CR LF.
	a.Label("putnum")
	a.LeaMem(x64.R11, frameReg, slotNumEnd)
	a.MovImm32(x64.RCX, crlf)
	a.Store32(x64.R11, 0, x64.RCX)
	a.Xor32(x64.RCX, x64.RCX)
	a.Store16(x64.R11, 4, x64.RCX)
	a.MovImm32(x64.RCX, 10)
	a.Label("putnum_digit")
	a.Xor32(x64.RDX, x64.RDX)
	a.Div32(x64.RCX)
	a.AddImm8(x64.RDX, '0')
	a.AddImm8(x64.R11, -2)
	a.Store16(x64.R11, 0, x64.RDX)
	a.Test32(x64.RAX, x64.RAX)
	a.J(x64.JNZ, "putnum_digit")
	a.Mov(x64.RDX, x64.R11)
	a.Jmp("puts")

	// blockio: HandleProtocol(RCX, &BlockIo, &slotC); ZF set on success.
	a.Label("blockio")
	a.SubImm8(x64.RSP, 0x28)
	a.Lea(x64.RDX, "guid_blockio")
	a.LeaMem(x64.R8, frameReg, slotC)
	a.CallMem(x64.RSI, bsHandleProtocol)
	a.AddImm8(x64.RSP, 0x28)
	a.Test32(x64.RAX, x64.RAX)
	a.Ret()
}

// amd64Data is the probes' data: the GUIDs and the lines' fixed parts as
// UCS-2.
func amd64Data(a *x64.Assembler, o sector.Options) {
	for _, d := range []struct {
		label string
		b     []byte
	}{
		{"guid_blockio", guidBlockIo},
		{"guid_loadedimage", guidLoadedImage},
		{"guid_devicepath", guidDevicePath},
		{"hbline", ucs2(sector.LineHeartbeat)},
		{"disksline", ucs2(sector.LineDisks)},
		{"volline", ucs2(sector.LineVolume)},
		{"bootline", ucs2(sector.LineBoot)},
		{"bootfail", ucs2(sector.LineError + sector.ErrLineBootCount + "\r\n")},
		{"idline", ucs2(sector.LineID + o.ID() + "\r\n")},
	} {
		a.Label(d.label)
		a.DB(d.b...)
	}
	if p := o.Probes; p.Heartbeat != 0 && p.Echo {
		a.Label("crlfline") // ends a typed line before a heartbeat
		a.DB(ucs2("\r\n")...)
	}
}
