package efi

import (
	"encoding/binary"

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

// The larger frame of a program with probes, which adds these slots.
const (
	frameProbes64 = 160
	slotImage64   = 24  // our image handle
	slotCount64   = 32  // LocateHandleBuffer's handle count
	slotHandles64 = 40  // and its handle buffer
	slotPage64    = 48  // the page from AllocatePages, 0 if none
	slotBio64     = 56  // a BlockIo interface from media
	slotOut64     = 64  // an interface or handle the firmware returns
	slotPath64    = 72  // the device path LocateDevicePath advances
	slotInKey64   = 80  // EFI_INPUT_KEY from ReadKeyStroke
	slotEcho64    = 84  // a CHAR16 and NUL to echo
	slotLine64    = 88  // the typed line's first lineMax64 bytes
	slotNumPtr64  = 96  // where putnum's digits start
	slotColumn64  = 104 // with heartbeat and echo: 1 while a typed line is open
	slotNum64     = 112 // putnum's buffer: 20 digits, CR LF NUL in UCS-2
	slotNumEnd64  = frameProbes64
	lineMax64     = len(powerOffLine64)
)

// powerOffLine64 is the line that the echo probe powers off on.
const powerOffLine64 = "poweroff"

// The page from AllocatePages holds a disk read in its first half (the
// ISO 9660 volume descriptor, the boot counter's sector) and a UCS-2
// label or a device path in its second.
const (
	pageHalf64    = pageSize / 2
	isoRead64     = 2048  // one CD sector, four disk sectors
	pvdOffset64   = 32768 // the primary volume descriptor (ECMA-119 8.4)
	pvdLabel64    = 40    // its 32-byte volume identifier
	pvdLabelLen64 = 32
	// pvdMagic64 is the descriptor's first six bytes, type 1 and
	// "CD001", shifted to the top of a little-endian 64-bit word.
	pvdMagic64 = 0x3130_3044_4301_0000
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
// left, X22 the power button's status register and W23 its bit; with
// probes, X24 and X25 the heartbeat's ticks left and count, X26 the
// length of the line typed, and X27 and X28 the return addresses of the
// probes' subroutines.
func arm64Program(o sector.Options) ([]byte, error) {
	code, _, err := arm64Code(o)
	if err != nil {
		return nil, err
	}
	return code, nil
}

// arm64Code assembles the program and returns where its data (GUIDs,
// lines, then the text) starts.
func arm64Code(o sector.Options) ([]byte, int, error) {
	a := a64.New()
	p := o.Probes
	if p.Any() {
		a.SubImm(a64.SP, a64.SP, frameProbes64)
		a.Str(a64.X0, a64.SP, slotImage64)
	} else {
		a.SubImm(a64.SP, a64.SP, frameSize64)
	}
	a.Mov(a64.X19, a64.X1) // X1: the system table; X0: our image handle

	// ConOut->OutputString(ConOut, text)
	a.Ldr(a64.X0, a64.X19, stConOut)
	a.Adr(a64.X1, "text")
	a.Ldr(a64.X9, a64.X0, conOutOutputString)
	a.Blr(a64.X9)
	if p.Any() {
		arm64BootLines(a, o)
	}

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
	if p.Any() {
		arm64Routines(a, p)
	}
	a.Label("data")
	if p.Any() {
		arm64Data(a, o)
	}
	a.Label("text")
	a.DB(text(o)...)
	code, err := a.Assemble()
	if err != nil {
		return nil, 0, err
	}
	data, _ := a.Offset("data")
	return code, data, nil
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
// on each tick it polls the power button, counts down the timeout and
// the heartbeat. A key powers off, or with echo is read and echoed.
func arm64Wait(a *a64.Assembler, o sector.Options) {
	p := o.Probes
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
	hb := heartbeatTicks64(p)
	if hb > 0 {
		a.MovImm(a64.X24, uint64(hb))
		a.MovImm(a64.X25, 0)
	}
	if p.Echo {
		a.MovImm(a64.X26, 0)
	}
	column := hb > 0 && p.Echo
	if column {
		// The stack is not zeroed: no line is open yet.
		a.Str(a64.XZR, a64.SP, slotColumn64)
	}

	a.Label("wait")
	// WaitForEvent(2, events, &index)
	a.MovImm(a64.X0, 2)
	a.AddImm(a64.X1, a64.SP, slotKey64)
	a.AddImm(a64.X2, a64.SP, slotIndex64)
	a.Ldr(a64.X9, a64.X20, bsWaitForEvent)
	a.Blr(a64.X9)
	a.Ldr(a64.X9, a64.SP, slotIndex64)
	if p.Echo {
		a.Cbz(a64.X9, "key") // index 0: a key, to echo
	} else {
		a.Cbz(a64.X9, "poweroff") // index 0: a key
	}
	a.Ldr32(a64.X10, a64.X22, 0)
	a.Tst32(a64.X10, a64.X23)
	a.BCond(a64.NE, "poweroff")
	if n > 0 {
		a.SubsImm32(a64.X21, a64.X21, 1)
		a.BCond(a64.EQ, "poweroff")
	}
	if hb > 0 {
		// Counted in ticks of the guest's own timer, which stops while
		// the VM is paused: a pause shows as a gap, never a burst.
		a.SubsImm32(a64.X24, a64.X24, 1)
		a.BCond(a64.NE, "wait")
		a.MovImm(a64.X24, uint64(hb))
		a.AddImm(a64.X25, a64.X25, 1)
		if column {
			// A heartbeat starts a line of its own: end the line being
			// typed on screen, but keep it for the poweroff match.
			a.Ldr(a64.X9, a64.SP, slotColumn64)
			a.Cbz(a64.X9, "hb_column")
			a.Adr(a64.X1, "crlf")
			a.Bl("puts")
			a.Str(a64.XZR, a64.SP, slotColumn64)
			a.Label("hb_column")
		}
		a.Mov(a64.X0, a64.X25)
		a.Adr(a64.X1, "hbline")
		a.Bl("putnum")
	}
	a.B("wait")
	if p.Echo {
		arm64Echo(a, column)
	}
}

// heartbeatTicks64 is the heartbeat's interval in ticks, rounded up; 0
// without the heartbeat.
func heartbeatTicks64(p sector.Probes) uint32 {
	return uint32((p.Heartbeat + Tick - 1) / Tick)
}

// arm64Echo reads every waiting key with ReadKeyStroke and echoes its
// character (CR as CR LF; scan-code-only keys have none). It keeps the
// line's first bytes at slotLine64 and its length, capped at one past
// "poweroff", in X26: a CR or LF ending exactly "poweroff" powers off.
// With column it keeps slotColumn64: set while a typed line is open on
// the console, cleared when CR or LF ends it.
func arm64Echo(a *a64.Assembler, column bool) {
	a.Label("key")
	a.Ldr(a64.X0, a64.X19, stConIn)
	a.AddImm(a64.X1, a64.SP, slotInKey64)
	a.Ldr(a64.X9, a64.X0, conInReadKeyStroke)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "wait") // EFI_NOT_READY: no more keys
	a.Ldrh(a64.X9, a64.SP, slotInKey64+keyUnicodeChar)
	a.Cbz(a64.X9, "key")
	a.CmpImm(a64.X9, '\r')
	a.BCond(a64.EQ, "key_cr")
	a.Strh(a64.X9, a64.SP, slotEcho64)
	a.Strh(a64.XZR, a64.SP, slotEcho64+2)
	a.AddImm(a64.X1, a64.SP, slotEcho64)
	a.Bl("puts")
	a.Ldrh(a64.X9, a64.SP, slotInKey64+keyUnicodeChar)
	a.CmpImm(a64.X9, '\n')
	a.BCond(a64.EQ, "key_eol")
	if column {
		a.MovImm(a64.X10, 1)
		a.Str(a64.X10, a64.SP, slotColumn64)
	}
	// Only ASCII can match; anything else makes the line overlong.
	a.CmpImm(a64.X9, 0x80)
	a.BCond(a64.HS, "key_over")
	a.CmpImm(a64.X26, uint32(lineMax64))
	a.BCond(a64.HS, "key_over")
	a.AddImm(a64.X10, a64.SP, slotLine64)
	a.Add(a64.X10, a64.X10, a64.X26, 0)
	a.Strb(a64.X9, a64.X10, 0)
	a.AddImm(a64.X26, a64.X26, 1)
	a.B("key")
	a.Label("key_over")
	a.MovImm(a64.X26, uint64(lineMax64+1))
	a.B("key")
	a.Label("key_cr")
	a.Adr(a64.X1, "crlf")
	a.Bl("puts")
	a.Label("key_eol")
	if column {
		a.Str(a64.XZR, a64.SP, slotColumn64)
	}
	a.CmpImm(a64.X26, uint32(lineMax64))
	a.MovImm(a64.X26, 0) // MOVZ leaves the flags alone
	a.BCond(a64.NE, "key")
	a.Ldr(a64.X9, a64.SP, slotLine64)
	a.MovImm(a64.X10, binary.LittleEndian.Uint64([]byte(powerOffLine64)))
	a.Cmp(a64.X9, a64.X10)
	a.BCond(a64.EQ, "poweroff")
	a.B("key")
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

// arm64BootLines prints the probes' boot lines in the BIOS program's
// order (docs/probes.md): id, boot, then disks and its volumes. It
// loads the boot services into X20 and, for disks and bootcount, gets a
// page for their reads.
func arm64BootLines(a *a64.Assembler, o sector.Options) {
	p := o.Probes
	a.Ldr(a64.X20, a64.X19, stBootServices)
	if p.Disks || p.BootCount {
		// AllocatePages(AllocateAnyPages, EfiLoaderData, 1, &page): 4 KiB
		// aligned, which satisfies any IoAlign.
		a.Str(a64.XZR, a64.SP, slotPage64)
		a.MovImm(a64.X0, allocateAnyPages)
		a.MovImm(a64.X1, loaderData)
		a.MovImm(a64.X2, 1)
		a.AddImm(a64.X3, a64.SP, slotPage64)
		a.Ldr(a64.X9, a64.X20, bsAllocatePages)
		a.Blr(a64.X9)
	}
	if p.ID {
		a.Adr(a64.X1, "idline")
		a.Bl("puts")
	}
	if p.BootCount {
		arm64BootCount(a)
	}
	if p.Disks {
		arm64Disks(a)
	}
}

// arm64Disks prints "tinyvm disks N", the BlockIo handles that are whole
// fixed disks, then a volume line for each whole medium present whose
// ISO 9660 primary volume descriptor has a label. X24 counts the handles
// down, X26 walks them and X25 counts disks.
func arm64Disks(a *a64.Assembler) {
	// The firmware connects only the devices in QEMU's boot order (edk2's
	// ConnectDevicesFromQemu): connect every handle's drivers, as
	// EfiBootManagerConnectAll does, so that a disk or CD without a
	// bootindex, such as a cloud-init seed, has its BlockIo too.
	// LocateHandleBuffer(AllHandles, NULL, NULL, &n, &handles), then
	// ConnectController(handle, NULL, NULL, TRUE) for each.
	a.Str(a64.XZR, a64.SP, slotCount64)
	a.MovImm(a64.X0, allHandles)
	a.MovImm(a64.X1, 0)
	a.MovImm(a64.X2, 0)
	a.AddImm(a64.X3, a64.SP, slotCount64)
	a.AddImm(a64.X4, a64.SP, slotHandles64)
	a.Ldr(a64.X9, a64.X20, bsLocateHandleBuffer)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "connected")
	a.Ldr(a64.X24, a64.SP, slotCount64)
	a.Ldr(a64.X26, a64.SP, slotHandles64)
	a.Label("connect")
	a.Cbz(a64.X24, "connected")
	a.Ldr(a64.X0, a64.X26, 0)
	a.MovImm(a64.X1, 0)
	a.MovImm(a64.X2, 0)
	a.MovImm(a64.X3, 1)
	a.Ldr(a64.X9, a64.X20, bsConnectController)
	a.Blr(a64.X9)
	a.AddImm(a64.X26, a64.X26, 8)
	a.SubImm(a64.X24, a64.X24, 1)
	a.B("connect")
	a.Label("connected")

	// LocateHandleBuffer(ByProtocol, &BlockIo, NULL, &n, &handles)
	a.Str(a64.XZR, a64.SP, slotCount64)
	a.MovImm(a64.X0, byProtocol)
	a.Adr(a64.X1, "guid_blockio")
	a.MovImm(a64.X2, 0)
	a.AddImm(a64.X3, a64.SP, slotCount64)
	a.AddImm(a64.X4, a64.SP, slotHandles64)
	a.Ldr(a64.X9, a64.X20, bsLocateHandleBuffer)
	a.Blr(a64.X9)
	a.Cbz(a64.X0, "disks_found")
	a.Str(a64.XZR, a64.SP, slotCount64) // none: count 0
	a.Label("disks_found")

	a.Ldr(a64.X24, a64.SP, slotCount64)
	a.Ldr(a64.X26, a64.SP, slotHandles64)
	a.MovImm(a64.X25, 0)
	a.Label("count")
	a.Cbz(a64.X24, "counted")
	a.Ldr(a64.X0, a64.X26, 0)
	a.Bl("media")
	a.Cbz(a64.X0, "count_next")
	a.Ldrb(a64.X9, a64.X0, mediaLogicalPartition)
	a.Cbnz(a64.X9, "count_next")
	a.Ldrb(a64.X9, a64.X0, mediaRemovable) // CD drives are removable
	a.Cbnz(a64.X9, "count_next")
	a.AddImm(a64.X25, a64.X25, 1)
	a.Label("count_next")
	a.AddImm(a64.X26, a64.X26, 8)
	a.SubImm(a64.X24, a64.X24, 1)
	a.B("count")
	a.Label("counted")
	a.Mov(a64.X0, a64.X25)
	a.Adr(a64.X1, "disksline")
	a.Bl("putnum")

	a.Ldr(a64.X24, a64.SP, slotCount64)
	a.Ldr(a64.X26, a64.SP, slotHandles64)
	a.Ldr(a64.X9, a64.SP, slotPage64)
	a.Cbz(a64.X9, "volumes_done")
	a.Label("volume")
	a.Cbz(a64.X24, "volumes_done")
	a.Ldr(a64.X0, a64.X26, 0)
	a.Bl("media")
	a.Cbz(a64.X0, "volume_next")
	a.Ldrb(a64.X9, a64.X0, mediaLogicalPartition)
	a.Cbnz(a64.X9, "volume_next")
	a.Ldrb(a64.X9, a64.X0, mediaPresent)
	a.Cbz(a64.X9, "volume_next")
	// The descriptor's LBA for the two block sizes it can be read with.
	a.Ldr32(a64.X9, a64.X0, mediaBlockSize)
	a.MovImm(a64.X2, pvdOffset64/512)
	a.CmpImm(a64.X9, 512)
	a.BCond(a64.EQ, "volume_read")
	a.MovImm(a64.X2, pvdOffset64/2048)
	a.CmpImm(a64.X9, 2048)
	a.BCond(a64.NE, "volume_next")
	a.Label("volume_read")
	// ReadBlocks(BlockIo, MediaId, LBA, 2048, page)
	a.Ldr32(a64.X1, a64.X0, mediaID)
	a.Ldr(a64.X0, a64.SP, slotBio64)
	a.MovImm(a64.X3, isoRead64)
	a.Ldr(a64.X4, a64.SP, slotPage64)
	a.Ldr(a64.X9, a64.X0, bioReadBlocks)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "volume_next")
	a.Ldr(a64.X10, a64.SP, slotPage64)
	a.Ldr(a64.X9, a64.X10, 0)
	a.LslImm(a64.X9, a64.X9, 16)
	a.MovImm(a64.X11, pvdMagic64)
	a.Cmp(a64.X9, a64.X11)
	a.BCond(a64.NE, "volume_next")
	// The label without its trailing spaces, as UCS-2 in the page's
	// second half.
	a.AddImm(a64.X11, a64.X10, pvdLabel64)
	a.MovImm(a64.X12, pvdLabelLen64)
	a.Label("trim")
	a.Cbz(a64.X12, "volume_next") // all spaces: no label
	a.Add(a64.X13, a64.X11, a64.X12, 0)
	a.Ldurb(a64.X9, a64.X13, -1)
	a.CmpImm(a64.X9, ' ')
	a.BCond(a64.NE, "trimmed")
	a.SubImm(a64.X12, a64.X12, 1)
	a.B("trim")
	a.Label("trimmed")
	a.AddImm(a64.X14, a64.X10, pageHalf64)
	a.Label("widen")
	a.LdrbPost(a64.X9, a64.X11, 1)
	a.StrhPost(a64.X9, a64.X14, 2)
	a.SubsImm32(a64.X12, a64.X12, 1)
	a.BCond(a64.NE, "widen")
	a.MovImm(a64.X9, '\r')
	a.StrhPost(a64.X9, a64.X14, 2)
	a.MovImm(a64.X9, '\n')
	a.StrhPost(a64.X9, a64.X14, 2)
	a.StrhPost(a64.XZR, a64.X14, 2)
	a.Adr(a64.X1, "volline")
	a.Bl("puts")
	a.Ldr(a64.X1, a64.SP, slotPage64)
	a.AddImm(a64.X1, a64.X1, pageHalf64)
	a.Bl("puts")
	a.Label("volume_next")
	a.AddImm(a64.X26, a64.X26, 8)
	a.SubImm(a64.X24, a64.X24, 1)
	a.B("volume")
	a.Label("volumes_done")
}

// arm64BootCount finds the whole disk the application was loaded from
// (its device path up to the partition node), increments the counter in
// the sector at BootCountLBA through BlockIo and prints "tinyvm boot N",
// or "tinyvm error bootcount" when any step fails.
func arm64BootCount(a *a64.Assembler) {
	// HandleProtocol(ImageHandle, &LoadedImage, &image)
	a.Ldr(a64.X0, a64.SP, slotImage64)
	a.Adr(a64.X1, "guid_loadedimage")
	a.AddImm(a64.X2, a64.SP, slotOut64)
	a.Ldr(a64.X9, a64.X20, bsHandleProtocol)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "bc_fail")
	// HandleProtocol(image->DeviceHandle, &DevicePath, &path)
	a.Ldr(a64.X0, a64.SP, slotOut64)
	a.Ldr(a64.X0, a64.X0, liDeviceHandle)
	a.Adr(a64.X1, "guid_devicepath")
	a.AddImm(a64.X2, a64.SP, slotOut64)
	a.Ldr(a64.X9, a64.X20, bsHandleProtocol)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "bc_fail")

	// Copy the path's nodes up to the first hard drive or CD-ROM media
	// node into the page's second half (X10 from, X11 to, X14 the room
	// left for nodes before the End node), then end it.
	a.Ldr(a64.X10, a64.SP, slotOut64)
	a.Ldr(a64.X11, a64.SP, slotPage64)
	a.Cbz(a64.X11, "bc_fail")
	a.AddImm(a64.X11, a64.X11, pageHalf64)
	a.MovImm(a64.X14, pageHalf64-dpEndNodeBytes)
	a.Label("dp_node")
	a.Ldrb(a64.X9, a64.X10, dpType)
	a.CmpImm(a64.X9, dpEnd)
	a.BCond(a64.EQ, "dp_end")
	a.CmpImm(a64.X9, dpMedia)
	a.BCond(a64.NE, "dp_copy")
	a.Ldrb(a64.X12, a64.X10, dpSubType)
	a.CmpImm(a64.X12, dpMediaHD)
	a.BCond(a64.EQ, "dp_end")
	a.CmpImm(a64.X12, dpMediaCDROM)
	a.BCond(a64.EQ, "dp_end")
	a.Label("dp_copy")
	// Nodes are byte-aligned: read the length a byte at a time.
	a.Ldrb(a64.X12, a64.X10, dpLength)
	a.Ldrb(a64.X13, a64.X10, dpLength+1)
	a.Add(a64.X12, a64.X12, a64.X13, 8)
	a.CmpImm(a64.X12, dpEndNodeBytes) // a malformed node would loop
	a.BCond(a64.LO, "bc_fail")
	a.Subs(a64.X14, a64.X14, a64.X12)
	a.BCond(a64.LO, "bc_fail")
	a.Label("dp_byte")
	a.LdrbPost(a64.X13, a64.X10, 1)
	a.StrbPost(a64.X13, a64.X11, 1)
	a.SubsImm32(a64.X12, a64.X12, 1)
	a.BCond(a64.NE, "dp_byte")
	a.B("dp_node")
	a.Label("dp_end")
	for _, b := range []uint64{dpEnd, dpEndEntire, dpEndNodeBytes, 0} {
		a.MovImm(a64.X9, b)
		a.StrbPost(a64.X9, a64.X11, 1)
	}

	// LocateDevicePath(&BlockIo, &path, &disk) must match the whole
	// path: the disk's own handle, not a parent's.
	a.Ldr(a64.X9, a64.SP, slotPage64)
	a.AddImm(a64.X9, a64.X9, pageHalf64)
	a.Str(a64.X9, a64.SP, slotPath64)
	a.Adr(a64.X0, "guid_blockio")
	a.AddImm(a64.X1, a64.SP, slotPath64)
	a.AddImm(a64.X2, a64.SP, slotOut64)
	a.Ldr(a64.X9, a64.X20, bsLocateDevicePath)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "bc_fail")
	a.Ldr(a64.X9, a64.SP, slotPath64)
	a.Ldrb(a64.X9, a64.X9, dpType)
	a.CmpImm(a64.X9, dpEnd)
	a.BCond(a64.NE, "bc_fail")
	a.Ldr(a64.X0, a64.SP, slotOut64)
	a.Bl("media")
	a.Cbz(a64.X0, "bc_fail")
	a.Ldrb(a64.X9, a64.X0, mediaReadOnly)
	a.Cbnz(a64.X9, "bc_fail")
	a.Ldr32(a64.X9, a64.X0, mediaBlockSize)
	a.CmpImm(a64.X9, sector.Size)
	a.BCond(a64.NE, "bc_fail")

	// ReadBlocks(BlockIo, MediaId, BootCountLBA, 512, page)
	a.Ldr32(a64.X1, a64.X0, mediaID)
	arm64CounterIO(a, bioReadBlocks)
	a.Ldr(a64.X10, a64.SP, slotPage64)
	for i, w := range bootCountMagic64() {
		a.Ldr(a64.X9, a64.X10, uint32(8*i))
		a.MovImm(a64.X11, w)
		a.Cmp(a64.X9, a64.X11)
		a.BCond(a64.NE, "bc_fail")
	}
	a.Ldr32(a64.X9, a64.X10, uint32(bootCountAt64))
	a.AddImm(a64.X9, a64.X9, 1)
	a.Str32(a64.X9, a64.X10, uint32(bootCountAt64))
	a.Ldr32(a64.X25, a64.X10, uint32(bootCountAt64)) // the stored 32 bits
	// WriteBlocks(BlockIo, MediaId, BootCountLBA, 512, page), then
	// FlushBlocks(BlockIo).
	a.Ldr(a64.X0, a64.SP, slotBio64)
	a.Ldr(a64.X1, a64.X0, bioMedia)
	a.Ldr32(a64.X1, a64.X1, mediaID)
	arm64CounterIO(a, bioWriteBlocks)
	a.Ldr(a64.X0, a64.SP, slotBio64)
	a.Ldr(a64.X9, a64.X0, bioFlushBlocks)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "bc_fail")
	a.Mov(a64.X0, a64.X25)
	a.Adr(a64.X1, "bootline")
	a.Bl("putnum")
	a.B("bc_done")
	a.Label("bc_fail")
	a.Adr(a64.X1, "bootfail")
	a.Bl("puts")
	a.Label("bc_done")
}

// arm64CounterIO calls ReadBlocks or WriteBlocks (at offset fn of the
// BlockIo in slotBio64) on the counter's sector with the page as the
// buffer; W1 holds the MediaId. A failure goes to bc_fail.
func arm64CounterIO(a *a64.Assembler, fn uint32) {
	a.Ldr(a64.X0, a64.SP, slotBio64)
	a.MovImm(a64.X2, sector.BootCountLBA)
	a.MovImm(a64.X3, sector.Size)
	a.Ldr(a64.X4, a64.SP, slotPage64)
	a.Ldr(a64.X9, a64.X0, fn)
	a.Blr(a64.X9)
	a.Cbnz(a64.X0, "bc_fail")
}

// bootCountAt64 is the counter's offset in its sector.
const bootCountAt64 = len(sector.BootCountMagic)

// bootCountMagic64 is sector.BootCountMagic as little-endian 64-bit words.
func bootCountMagic64() []uint64 {
	m := []byte(sector.BootCountMagic)
	var out []uint64
	for i := 0; i < len(m); i += 8 {
		out = append(out, binary.LittleEndian.Uint64(m[i:i+8]))
	}
	return out
}

// arm64Routines are the probes' subroutines. puts prints the UCS-2
// string at X1; putnum prints the line part at X1, X0 in decimal and CR
// LF; media returns in X0 the BlockIo media of handle X0, or 0, leaving
// the BlockIo in slotBio64. They keep their return address in X28 (puts)
// and X27 (putnum, media), since the firmware calls overwrite X30.
func arm64Routines(a *a64.Assembler, p sector.Probes) {
	a.Label("puts")
	a.Mov(a64.X28, a64.X30)
	a.Ldr(a64.X0, a64.X19, stConOut)
	a.Ldr(a64.X9, a64.X0, conOutOutputString)
	a.Blr(a64.X9)
	a.Ret(a64.X28)

	if p.Heartbeat != 0 || p.Disks || p.BootCount {
		a.Label("putnum")
		a.Mov(a64.X27, a64.X30)
		a.MovImm(a64.X9, '\r')
		a.Strh(a64.X9, a64.SP, slotNumEnd64-6)
		a.MovImm(a64.X9, '\n')
		a.Strh(a64.X9, a64.SP, slotNumEnd64-4)
		a.Strh(a64.XZR, a64.SP, slotNumEnd64-2)
		a.AddImm(a64.X10, a64.SP, slotNumEnd64-6)
		a.MovImm(a64.X12, 10)
		a.Label("digit")
		a.Udiv(a64.X11, a64.X0, a64.X12)
		a.Msub(a64.X13, a64.X11, a64.X12, a64.X0)
		a.AddImm(a64.X13, a64.X13, '0')
		a.SubImm(a64.X10, a64.X10, 2)
		a.Strh(a64.X13, a64.X10, 0)
		a.Mov(a64.X0, a64.X11)
		a.Cbnz(a64.X0, "digit")
		a.Str(a64.X10, a64.SP, slotNumPtr64)
		a.Bl("puts")
		a.Ldr(a64.X1, a64.SP, slotNumPtr64)
		a.Bl("puts")
		a.Ret(a64.X27)
	}

	if p.Disks || p.BootCount {
		a.Label("media")
		a.Mov(a64.X27, a64.X30)
		a.Adr(a64.X1, "guid_blockio")
		a.AddImm(a64.X2, a64.SP, slotBio64)
		a.Ldr(a64.X9, a64.X20, bsHandleProtocol)
		a.Blr(a64.X9)
		a.Cbnz(a64.X0, "media_none")
		a.Ldr(a64.X0, a64.SP, slotBio64)
		a.Ldr(a64.X0, a64.X0, bioMedia)
		a.Ret(a64.X27)
		a.Label("media_none")
		a.MovImm(a64.X0, 0)
		a.Ret(a64.X27)
	}
}

// arm64Data is what the probes read: the GUIDs (EFI_GUID is 64-bit
// aligned) and the lines' fixed parts as UCS-2.
func arm64Data(a *a64.Assembler, o sector.Options) {
	p := o.Probes
	a.Align(8)
	if p.Disks || p.BootCount {
		a.Label("guid_blockio")
		a.DB(guidBlockIo...)
	}
	if p.BootCount {
		a.Label("guid_loadedimage")
		a.DB(guidLoadedImage...)
		a.Label("guid_devicepath")
		a.DB(guidDevicePath...)
	}
	lines := []struct {
		on          bool
		label, text string
	}{
		{p.Heartbeat != 0, "hbline", sector.LineHeartbeat},
		{p.Echo, "crlf", "\r\n"},
		{p.Disks, "disksline", sector.LineDisks},
		{p.Disks, "volline", sector.LineVolume},
		{p.BootCount, "bootline", sector.LineBoot},
		{p.BootCount, "bootfail", sector.LineError + sector.ErrLineBootCount + "\r\n"},
		{p.ID, "idline", sector.LineID + o.ID() + "\r\n"},
	}
	for _, l := range lines {
		if l.on {
			a.Label(l.label)
			a.DB(ucs2(l.text)...)
		}
	}
}
