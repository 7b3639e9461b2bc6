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
// left, RBP the PM1 base (0 when none was found).
func amd64Program(o sector.Options) ([]byte, error) {
	a := x64.New()
	a.SubImm8(x64.RSP, frameSize)
	a.Mov(x64.RBX, x64.RDX) // RDX: the system table; RCX: our image handle

	// ConOut->OutputString(ConOut, text)
	a.Load(x64.RCX, x64.RBX, stConOut)
	a.Lea(x64.RDX, "text")
	a.CallMem(x64.RCX, conOutOutputString)

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
	a.Label("text")
	a.DB(text(o)...)
	return a.Assemble()
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

	a.Label("wait")
	// WaitForEvent(2, events, &index)
	a.MovImm32(x64.RCX, 2)
	a.LeaMem(x64.RDX, x64.RSP, slotKey)
	a.LeaMem(x64.R8, x64.RSP, slotIndex)
	a.CallMem(x64.RSI, bsWaitForEvent)
	a.Load(x64.RAX, x64.RSP, slotIndex)
	a.Test32(x64.RAX, x64.RAX) // index 0: a key
	a.J(x64.JZ, "poweroff")
	a.Test32(pmBaseReg, pmBaseReg)
	a.J(x64.JZ, "no_pm")
	a.Mov32(x64.RDX, pmBaseReg)
	a.InDX() // PM1_STS
	a.TestImm32(x64.RAX, pwrbtnBit)
	a.J(x64.JNZ, "poweroff")
	a.Label("no_pm")
	if n > 0 {
		a.Dec32(x64.RDI)
		a.J(x64.JZ, "poweroff")
	}
	a.Jmp("wait")

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
