package efi

import (
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/a64"
)

// The AArch64 stack frame (AAPCS64): SP stays 16-byte aligned.
const (
	frameSize64 = 32
	slotKey64   = 0  // events[0]: ConIn->WaitForKey
	slotTimer64 = 8  // events[1]: the timer
	slotIndex64 = 16 // which event WaitForEvent saw
)

// The power button of QEMU's virt machine. With ACPI, as under AAVMF by
// default, system_powerdown sets the power-down bit in the selector
// register of the Generic Event Device; reading the register clears it.
// Without ACPI (virt,acpi=off) the machine has no GED but a PL061 GPIO
// controller whose line 3 QEMU pulses for 100 ms; its reset state detects
// falling edges, which latch in the raw interrupt status register. Only
// one of the two exists, and touching the other one faults, so the
// application looks for ACPI tables in the EFI configuration table first.
const (
	gedBase      = 0x09080000 // VIRT_ACPI_GED
	gedPowerDown = 1 << 1     // ACPI_GED_PWR_DOWN_EVT in the selector at offset 0
	pl061Base    = 0x09030000 // VIRT_GPIO
	pl061RIS     = 0x414      // GPIORIS, the raw interrupt status
	pl061Line3   = 1 << 3     // the power key's line
)

// Offsets in EFI_SYSTEM_TABLE and EFI_CONFIGURATION_TABLE, and
// EFI_ACPI_20_TABLE_GUID (8868E871-E4F1-11D3-BC22-0080C73C8881) as two
// little-endian words.
const (
	stNumberOfTableEntries = 0x68
	stConfigurationTable   = 0x70
	configEntrySize        = 24 // EFI_GUID and a pointer
	acpi20GUIDLow          = 0x11D3E4F1_8868E871
	acpi20GUIDHigh         = 0x81883CC7_800022BC
)

// arm64Program writes the AArch64 application. Registers that survive
// calls: X19 holds the system table, X20 the boot services, X21 the ticks
// left, X22 the power button's status register and W23 its bit.
func arm64Program(o sector.Options) ([]byte, error) {
	a := a64.New()
	a.SubImm(a64.SP, a64.SP, frameSize64)
	a.Mov(a64.X19, a64.X1) // X1: the system table; X0: our image handle

	// ConOut->OutputString(ConOut, text)
	a.Ldr(a64.X0, a64.X19, stConOut)
	a.Adr(a64.X1, "text")
	a.Ldr(a64.X9, a64.X0, conOutOutputString)
	a.Blr(a64.X9)

	switch o.Then {
	case sector.PowerOff:
		arm64Reset(a, resetShutdown)
	case sector.Reboot:
		arm64Reset(a, resetCold)
	case sector.Halt:
		// Sleep on a timer that is never set: nothing ever wakes us.
		arm64Idle(a)
		a.Label("halt")
		a.MovImm(a64.X0, 1)
		a.AddImm(a64.X1, a64.SP, slotTimer64)
		a.AddImm(a64.X2, a64.SP, slotIndex64)
		a.Ldr(a64.X9, a64.X20, bsWaitForEvent)
		a.Blr(a64.X9)
		a.B("halt")
	case sector.Wait:
		arm64Wait(a, o)
		a.Label("poweroff")
		arm64Reset(a, resetShutdown)
	}
	a.Label("text")
	a.DB(text(o)...)
	return a.Assemble()
}

// arm64Reset calls RuntimeServices->ResetSystem(kind, EFI_SUCCESS, 0,
// NULL), which does not return; if it did, the CPU sleeps.
func arm64Reset(a *a64.Assembler, kind uint64) {
	a.Ldr(a64.X9, a64.X19, stRuntimeServices)
	a.Ldr(a64.X9, a64.X9, rtResetSystem)
	a.MovImm(a64.X0, kind)
	a.MovImm(a64.X1, 0)
	a.MovImm(a64.X2, 0)
	a.MovImm(a64.X3, 0)
	a.Blr(a64.X9)
	a.Label("stop")
	a.Wfi()
	a.B("stop")
}

// arm64Idle turns off the boot manager's 5-minute watchdog and creates the
// timer event in slotTimer64 (not set yet). It leaves the boot services in
// X20.
func arm64Idle(a *a64.Assembler) {
	a.Ldr(a64.X20, a64.X19, stBootServices)
	// SetWatchdogTimer(0, 0, 0, NULL)
	a.MovImm(a64.X0, 0)
	a.MovImm(a64.X1, 0)
	a.MovImm(a64.X2, 0)
	a.MovImm(a64.X3, 0)
	a.Ldr(a64.X9, a64.X20, bsSetWatchdogTimer)
	a.Blr(a64.X9)
	// CreateEvent(EVT_TIMER, 0, NULL, NULL, &events[1])
	a.MovImm(a64.X0, evtTimer)
	a.MovImm(a64.X1, 0)
	a.MovImm(a64.X2, 0)
	a.MovImm(a64.X3, 0)
	a.AddImm(a64.X4, a64.SP, slotTimer64)
	a.Ldr(a64.X9, a64.X20, bsCreateEvent)
	a.Blr(a64.X9)
}

// arm64Wait sleeps in WaitForEvent on the keyboard and a periodic timer;
// on each tick it polls the power button and counts down the timeout.
func arm64Wait(a *a64.Assembler, o sector.Options) {
	arm64Idle(a)
	// SetTimer(events[1], TimerPeriodic, Tick)
	a.Ldr(a64.X0, a64.SP, slotTimer64)
	a.MovImm(a64.X1, timerPeriodic)
	a.MovImm(a64.X2, uint64(tick100ns))
	a.Ldr(a64.X9, a64.X20, bsSetTimer)
	a.Blr(a64.X9)
	// events[0] = ConIn->WaitForKey
	a.Ldr(a64.X9, a64.X19, stConIn)
	a.Ldr(a64.X9, a64.X9, conInWaitForKey)
	a.Str(a64.X9, a64.SP, slotKey64)
	arm64PowerButton(a)
	n := ticks(o)
	if n > 0 {
		a.MovImm(a64.X21, uint64(n))
	}

	a.Label("wait")
	// WaitForEvent(2, events, &index)
	a.MovImm(a64.X0, 2)
	a.AddImm(a64.X1, a64.SP, slotKey64)
	a.AddImm(a64.X2, a64.SP, slotIndex64)
	a.Ldr(a64.X9, a64.X20, bsWaitForEvent)
	a.Blr(a64.X9)
	a.Ldr(a64.X9, a64.SP, slotIndex64)
	a.Cbz(a64.X9, "poweroff") // index 0: a key
	a.Ldr32(a64.X10, a64.X22, 0)
	a.Tst32(a64.X10, a64.X23)
	a.BCond(a64.NE, "poweroff")
	if n > 0 {
		a.SubsImm32(a64.X21, a64.X21, 1)
		a.BCond(a64.EQ, "poweroff")
	}
	a.B("wait")
}

// arm64PowerButton sets X22 and W23 to the Generic Event Device's selector
// and power-down bit when the configuration table has ACPI 2.0 tables, and
// to the PL061's raw interrupt status and line 3 when it has none.
func arm64PowerButton(a *a64.Assembler) {
	a.MovImm(a64.X22, pl061Base+pl061RIS)
	a.MovImm(a64.X23, pl061Line3)
	a.Ldr(a64.X10, a64.X19, stNumberOfTableEntries)
	a.Ldr(a64.X11, a64.X19, stConfigurationTable)
	a.MovImm(a64.X12, acpi20GUIDLow)
	a.MovImm(a64.X14, acpi20GUIDHigh)
	a.Label("config")
	a.Cbz(a64.X10, "button_found")
	a.Ldr(a64.X13, a64.X11, 0)
	a.Cmp(a64.X13, a64.X12)
	a.BCond(a64.NE, "config_next")
	a.Ldr(a64.X13, a64.X11, 8)
	a.Cmp(a64.X13, a64.X14)
	a.BCond(a64.EQ, "acpi")
	a.Label("config_next")
	a.AddImm(a64.X11, a64.X11, configEntrySize)
	a.SubImm(a64.X10, a64.X10, 1)
	a.B("config")
	a.Label("acpi")
	a.MovImm(a64.X22, gedBase)
	a.MovImm(a64.X23, gedPowerDown)
	a.Label("button_found")
}
