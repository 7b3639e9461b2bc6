// Package qemu boots a disk image in the local qemu-system-x86_64 (or
// qemu-system-aarch64) and talks to it over QMP. The run command and the
// boot tests share it.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
)

// Binary is the emulator this package runs.
const Binary = "qemu-system-x86_64"

// InstallHint says how to get the emulator on Debian.
const InstallHint = "install it with: apt-get install qemu-system-x86"

// BinaryARM is the emulator for Arch "arm64".
const BinaryARM = "qemu-system-aarch64"

// InstallHintARM says how to get BinaryARM on Debian.
const InstallHintARM = "install it with: apt-get install qemu-system-arm"

// Machines and buses that Options accept.
var (
	Machines = []string{"pc", "q35", "virt"}
	Buses    = []string{"ide", "virtio", "sata", "scsi", "cdrom"}
)

// Firmware files from Debian's ovmf and qemu-efi-aarch64 packages. The
// VARS files are templates: a boot writes to a throw-away overlay
// (snapshot=on), never to the file.
const (
	OVMFCode       = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars       = "/usr/share/OVMF/OVMF_VARS_4M.fd"
	OVMFSecureCode = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd" // needs SMM
	OVMFSecureVars = "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"      // Microsoft keys enrolled
	// OVMFSnakeoilVars has Debian's snakeoil test key (PkKek-1-snakeoil)
	// enrolled as PK, KEK and db, for images signed with it.
	OVMFSnakeoilVars = "/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"
	AAVMFCode        = "/usr/share/AAVMF/AAVMF_CODE.fd"
	AAVMFVars        = "/usr/share/AAVMF/AAVMF_VARS.fd"
)

// Options describe one boot.
type Options struct {
	// File is the disk image to boot.
	File string
	// Driver is QEMU's block driver for File (raw, qcow2, vmdk, vdi, vpc,
	// vhdx). Empty means raw.
	Driver string
	// Machine is "pc" (default) or "q35".
	Machine string
	// Bus attaches File: "ide" (default), "virtio", "sata", "scsi", or
	// "cdrom" (ide-cd on pc, a SATA CD-ROM on q35, a SCSI CD-ROM on virt).
	Bus string
	// Serial receives the guest's COM1 output.
	Serial io.Writer
	// NoReboot makes a guest reboot end QEMU, so reboots can be observed.
	NoReboot bool
	// Offset and Length, when Length is set, boot the Length bytes of
	// File that start at Offset: the disk inside an OVA's tar.
	Offset, Length int64
	// Accel is "tcg" (default) or "kvm". TCG boots the 512-byte VM in
	// well under a second and behaves the same on every host; KVM can be
	// far slower under nested virtualisation, where every port access of
	// the BIOS is a costly exit.
	Accel string
	// Arch is "amd64" (default: qemu-system-x86_64) or "arm64"
	// (qemu-system-aarch64, machine virt with a Cortex-A57, UEFI only).
	Arch string
	// Firmware is "bios" (default on amd64: SeaBIOS) or "uefi" (OVMF on
	// amd64, AAVMF on arm64). File may then be "fat:DIR", QEMU's vvfat:
	// a FAT disk holding DIR, such as one with EFI/BOOT/BOOTX64.EFI,
	// whose writes are thrown away.
	Firmware string
	// SecureBoot boots OVMF's Secure Boot build with Microsoft's keys
	// enrolled (q35 with SMM), which refuses unsigned applications.
	// Under Secure Boot OVMF does not boot from a vvfat directory: use a
	// FAT image.
	SecureBoot bool
	// SecureBootVars replaces the enrolled keys, such as with
	// OVMFSnakeoilVars.
	SecureBootVars string
	// NoACPI builds the machine without ACPI (acpi=off): on arm64 virt the
	// power button is then a PL061 GPIO line instead of the Generic Event
	// Device.
	NoACPI bool
	// Memory is the guest's RAM in MiB: 0 means 64, or 128 on arm64,
	// where AAVMF needs it.
	Memory int
	// Console, when set, is typed on the serial console (the emulator's
	// standard input); UEFI firmware reads it as key presses. An *os.File
	// is handed over as it is; any other reader (a terminal's os.Stdin
	// wrapped, say) is copied through a pipe until the emulator exits, and
	// Wait does not wait for a Read that blocks. A terminal must not be
	// handed over: QEMU runs in its own process group, where reading the
	// terminal would stop it (SIGTTIN), and it would switch the terminal
	// to raw mode and non-blocking I/O under us.
	Console io.Reader
	// Display is QEMU's -display: "" or "none" (default) for no window,
	// "gtk" or "sdl" for a window on the desktop, where the serial console
	// stays on Serial; or "curses", which draws the screen on Terminal
	// and moves the serial console to QEMU's second console there.
	Display string
	// Screen gives the arm64 virt machine a screen, which it has none of
	// by default: a ramfb framebuffer that AAVMF draws its console on.
	// x86 machines always have VGA.
	Screen bool
	// Terminal, with Display "curses", is the terminal QEMU draws on: it
	// becomes QEMU's stdin and stdout, and QEMU's process group its
	// foreground group until QEMU exits, so that its keys, Ctrl-C
	// included, go to the guest. Serial and Console must be unset.
	Terminal *os.File
	// NoShutdown keeps QEMU running, the guest stopped, when the guest
	// powers off (-no-shutdown), so its screen can still be read; Status
	// then reports "shutdown", and Quit ends QEMU.
	NoShutdown bool
}

// Displays are the values of Options.Display.
var Displays = []string{"none", "gtk", "sdl", "curses"}

func (o Options) arm() bool { return o.Arch == "arm64" }

func (o Options) uefi() bool { return o.Firmware == "uefi" || o.arm() }

// binary is the emulator for the options' architecture, and how to get it.
func (o Options) binary() (string, string) {
	if o.arm() {
		return BinaryARM, InstallHintARM
	}
	return Binary, InstallHint
}

// FirmwareFiles returns the firmware's code and variables files, or ""
// for SeaBIOS, which QEMU brings.
func (o Options) FirmwareFiles() (code, vars string) {
	switch {
	case o.arm():
		return AAVMFCode, AAVMFVars
	case o.SecureBoot && o.SecureBootVars != "":
		return OVMFSecureCode, o.SecureBootVars
	case o.SecureBoot:
		return OVMFSecureCode, OVMFSecureVars
	case o.uefi():
		return OVMFCode, OVMFVars
	}
	return "", ""
}

// Validate reports a bad machine or bus.
func (o Options) Validate() error {
	if o.File == "" {
		return errors.New("qemu: no image file given")
	}
	if o.Arch != "" && o.Arch != "amd64" && o.Arch != "arm64" {
		return fmt.Errorf("qemu: unknown architecture %q: use amd64 or arm64", o.Arch)
	}
	if o.Firmware != "" && o.Firmware != "bios" && o.Firmware != "uefi" {
		return fmt.Errorf("qemu: unknown firmware %q: use bios or uefi", o.Firmware)
	}
	if o.Machine != "" && !slices.Contains(Machines, o.Machine) {
		return fmt.Errorf("qemu: unknown machine %q: use pc or q35 (virt on arm64)", o.Machine)
	}
	if o.arm() {
		if o.Firmware == "bios" || o.SecureBoot {
			return errors.New("qemu: arm64 boots only plain UEFI: drop bios and Secure Boot")
		}
		if o.Machine != "" && o.Machine != "virt" {
			return fmt.Errorf("qemu: machine %q is x86: arm64 uses virt", o.Machine)
		}
		if o.Bus != "" && o.Bus != "virtio" && o.Bus != "scsi" && o.Bus != "cdrom" {
			return fmt.Errorf("qemu: bus %q does not exist on virt: use virtio, scsi or cdrom", o.Bus)
		}
	} else if o.Machine == "virt" {
		return errors.New("qemu: machine virt is arm64: use pc or q35")
	}
	if o.SecureBoot && (!o.uefi() || o.Machine == "pc") {
		return errors.New("qemu: Secure Boot needs --firmware uefi on q35")
	}
	if o.Memory < 0 {
		return fmt.Errorf("qemu: memory %d MiB is negative", o.Memory)
	}
	if o.Display != "" && !slices.Contains(Displays, o.Display) {
		return fmt.Errorf("qemu: unknown display %q: use none, gtk, sdl or curses", o.Display)
	}
	if (o.Display == "curses") != (o.Terminal != nil) {
		return errors.New("qemu: the curses display and a Terminal go together: give both or neither")
	}
	if o.Terminal != nil && (o.Serial != nil || o.Console != nil) {
		return errors.New("qemu: with a Terminal the serial console is drawn there: drop Serial and Console")
	}
	if o.Accel != "" && o.Accel != "tcg" && o.Accel != "kvm" {
		return fmt.Errorf("qemu: unknown accelerator %q: use tcg or kvm", o.Accel)
	}
	if o.Bus != "" && !slices.Contains(Buses, o.Bus) {
		return fmt.Errorf("qemu: unknown bus %q: use ide, virtio, sata, scsi or cdrom", o.Bus)
	}
	return nil
}

// Args returns the emulator's command-line arguments, without qmp.
func (o Options) Args() ([]string, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	machine, bus, driver := o.Machine, o.Bus, o.Driver
	if machine == "" {
		machine = "pc"
		if o.arm() {
			machine = "virt"
		} else if o.SecureBoot {
			machine = "q35"
		}
	}
	if bus == "" {
		bus = "ide"
		if o.arm() {
			bus = "virtio"
		}
	}
	if driver == "" {
		driver = "raw"
	}
	memory := o.Memory
	if memory == 0 {
		memory = 64
		if o.arm() {
			memory = 128
		}
	}
	accel := o.Accel
	if accel == "" {
		accel = "tcg"
	}
	machineArg := machine
	if o.SecureBoot {
		machineArg += ",smm=on" // the Secure Boot build keeps its variables in SMM
	}
	if o.NoACPI {
		machineArg += ",acpi=off"
	}
	display := o.Display
	if display == "" {
		display = "none"
	}
	serial := "stdio"
	if display == "curses" {
		serial = "vc" // stdio is the screen now
	}
	args := []string{"-machine", machineArg, "-display", display, "-serial", serial, "-monitor", "none", "-m", strconv.Itoa(memory)}
	args = append(args, "-accel", accel)
	if o.arm() {
		cpu := "cortex-a57"
		if accel == "kvm" {
			cpu = "host"
		}
		args = append(args, "-cpu", cpu)
	}
	if o.arm() && (o.Screen || display != "none") {
		args = append(args, "-device", "ramfb")
	}
	if code, vars := o.FirmwareFiles(); code != "" {
		if o.SecureBoot {
			args = append(args, "-global", "driver=cfi.pflash01,property=secure,value=on")
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+escape(code),
			"-drive", "if=pflash,format=raw,unit=1,snapshot=on,file="+escape(vars))
	}
	if o.NoReboot {
		args = append(args, "-no-reboot")
	}
	if o.NoShutdown {
		args = append(args, "-no-shutdown")
	}
	drive := fmt.Sprintf("file=%s,format=%s,if=none,id=d0", escape(o.File), driver)
	if strings.HasPrefix(o.File, "fat:") {
		// vvfat is read-only, which ide-hd refuses; a throw-away overlay
		// lets every device write, and DIR is never changed.
		drive += ",snapshot=on"
	}
	if o.Length > 0 {
		// The raw driver's offset and size read a slice of the file; the
		// format driver sits on top of it.
		spec, err := json.Marshal(map[string]any{
			"driver": driver,
			"file": map[string]any{
				"driver": "raw", "offset": o.Offset, "size": o.Length,
				"file": map[string]any{"driver": "file", "filename": o.File},
			},
		})
		if err != nil {
			return nil, err
		}
		drive = fmt.Sprintf("file=json:%s,if=none,id=d0", escape(string(spec)))
	}
	switch bus {
	case "ide":
		// pc's ide.0 is the PIIX IDE channel; q35 has no legacy IDE and
		// names its ICH9 AHCI ports ide.N, so this is SATA there.
		args = append(args, "-drive", drive, "-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0")
	case "sata":
		if machine == "q35" {
			args = append(args, "-drive", drive, "-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0")
		} else {
			args = append(args, "-drive", drive, "-device", "ahci,id=ahci0", "-device", "ide-hd,drive=d0,bus=ahci0.0,bootindex=0")
		}
	case "virtio":
		args = append(args, "-drive", drive, "-device", "virtio-blk-pci,drive=d0,bootindex=0")
	case "scsi":
		args = append(args, "-drive", drive, "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=d0,bus=scsi0.0,bootindex=0")
	case "cdrom":
		if o.arm() {
			// virt has no IDE: a SCSI CD-ROM, which AAVMF boots from its
			// El Torito EFI entry.
			args = append(args, "-drive", drive+",media=cdrom,readonly=on", "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-cd,drive=d0,bus=scsi0.0,bootindex=0")
		} else {
			args = append(args, "-drive", drive+",media=cdrom,readonly=on", "-device", "ide-cd,drive=d0,bus=ide.0,bootindex=0")
		}
	}
	return args, nil
}

// Command returns the emulator and its arguments, without qmp: the line
// a user could type to boot the same way.
func (o Options) Command() ([]string, error) {
	args, err := o.Args()
	if err != nil {
		return nil, err
	}
	binary, _ := o.binary()
	return append([]string{binary}, args...), nil
}

// escape doubles commas, which QEMU's option syntax would split on.
func escape(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// Process is a running emulator.
type Process struct {
	cmd      *exec.Cmd
	qmp      string
	done     chan struct{}
	err      error
	terminal *os.File // given to QEMU's foreground; taken back when it exits
}

// Start boots the image. The emulator runs until the guest powers off, ctx
// is cancelled, or Kill is called.
func Start(ctx context.Context, o Options) (*Process, error) {
	binary, hint := o.binary()
	path, err := exec.LookPath(binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s not found: %s", binary, hint)
	}
	args, err := o.Args()
	if err != nil {
		return nil, err
	}
	// A killed run leaves this behind; the next Start removes it.
	dir, release, err := txn.Scratch("")
	if err != nil {
		return nil, fmt.Errorf("qemu: %w", err)
	}
	p := &Process{qmp: filepath.Join(dir, "qmp.sock"), done: make(chan struct{})}
	args = append(args, "-qmp", "unix:"+p.qmp+",server=on,wait=off")
	p.cmd = exec.CommandContext(ctx, path, args...)
	// QEMU runs in its own process group, killed with us (see
	// process_linux.go), so that neither a signal to us nor our death
	// leaves it running; cancelling ctx kills the whole group.
	p.cmd.SysProcAttr = sysProcAttr()
	p.cmd.Cancel = func() error { return killGroup(p.cmd.Process) }
	var console *os.File // our end of the console pipe, closed when QEMU exits
	switch c := o.Console.(type) {
	case nil:
	case *os.File:
		p.cmd.Stdin = c
	default:
		// exec would copy too, but its Wait waits for the copy, which a
		// terminal's Read can block for ever after QEMU is gone.
		r, w, err := os.Pipe()
		if err != nil {
			release()
			return nil, fmt.Errorf("qemu: console pipe: %w", err)
		}
		defer r.Close() // the child has its own copy once started
		p.cmd.Stdin, console = r, w
		go func() { _, _ = io.Copy(w, c) }()
	}
	p.cmd.Stdout = o.Serial
	if p.cmd.Stdout == nil {
		p.cmd.Stdout = io.Discard
	}
	if o.Terminal != nil {
		if err := foreground(p.cmd.SysProcAttr, o.Terminal); err != nil {
			release()
			return nil, err
		}
		p.cmd.Stdin, p.cmd.Stdout = o.Terminal, o.Terminal
		p.terminal = o.Terminal
	}
	stderr := &limitedBuffer{max: 4096}
	p.cmd.Stderr = stderr
	if err := p.cmd.Start(); err != nil {
		release()
		if console != nil {
			console.Close()
		}
		return nil, fmt.Errorf("qemu: start %s: %w", binary, err)
	}
	go func() {
		err := p.cmd.Wait()
		if p.terminal != nil {
			takeTerminal(p.terminal)
		}
		if console != nil {
			console.Close() // ends the copy at its next write
		}
		switch {
		case err != nil && ctx.Err() != nil:
			err = ctx.Err() // killed because ctx ended, not a QEMU failure
		case err != nil && len(stderr.b) > 0:
			err = fmt.Errorf("%w: %s", err, firstLine(stderr.b))
		}
		p.err = err
		release()
		close(p.done)
	}()
	return p, nil
}

// Pid is the emulator's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the emulator has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the emulator to exit and returns its error, if any.
func (p *Process) Wait() error {
	<-p.done
	if p.err != nil {
		return fmt.Errorf("qemu: %w", p.err)
	}
	return nil
}

// Kill stops the emulator, and its process group, at once.
func (p *Process) Kill() {
	_ = killGroup(p.cmd.Process)
	<-p.done
}

// Powerdown presses the ACPI power button (QMP system_powerdown), the way
// virsh shutdown and virtctl stop ask a guest to stop.
func (p *Process) Powerdown() error {
	return p.QMP("system_powerdown", nil)
}

// SendKey presses and releases one key, named by its QEMU QKeyCode ("a",
// "ret", "spc").
func (p *Process) SendKey(key string) error {
	return p.QMP("send-key", map[string]any{"keys": []map[string]string{{"type": "qcode", "data": key}}})
}

// Status is the guest's run state as QMP's query-status says: "running",
// "paused", or "shutdown" once a guest with NoShutdown has powered off.
func (p *Process) Status() (string, error) {
	var st struct {
		Status string `json:"status"`
	}
	if err := p.query("query-status", nil, &st); err != nil {
		return "", err
	}
	return st.Status, nil
}

// Screendump has QEMU write the guest's screen to path as a binary PPM
// (P6) image: VGA text mode is rendered with the console font, 720x400
// for 80x25.
func (p *Process) Screendump(path string) error {
	return p.QMP("screendump", map[string]any{"filename": path})
}

// Quit ends QEMU (QMP quit) and waits for it to exit.
func (p *Process) Quit() error {
	if err := p.QMP("quit", nil); err != nil {
		select {
		case <-p.done:
			return nil // it exited before it could reply
		default:
			return err
		}
	}
	<-p.done
	return nil
}

// QMP runs one QMP command; args may be nil.
func (p *Process) QMP(command string, args any) error {
	return p.query(command, args, nil)
}

// query runs one QMP command and decodes its return value into out,
// unless out is nil.
func (p *Process) query(command string, args any, out any) error {
	var conn net.Conn
	var err error
	for i := 0; i < 100; i++ { // the socket appears shortly after start
		if conn, err = net.Dial("unix", p.qmp); err == nil {
			break
		}
		select {
		case <-p.done:
			return errors.New("qemu: exited before QMP was ready")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("qemu: connect QMP: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil { // greeting
		return fmt.Errorf("qemu: QMP greeting: %w", err)
	}
	for _, req := range []map[string]any{{"execute": "qmp_capabilities"}, {"execute": command, "arguments": args}} {
		cmd := req["execute"]
		if req["arguments"] == nil {
			delete(req, "arguments")
		}
		if err := json.NewEncoder(conn).Encode(req); err != nil {
			return fmt.Errorf("qemu: QMP %s: %w", cmd, err)
		}
		for { // skip events until the command's reply
			line, err := r.ReadBytes('\n')
			if err != nil {
				return fmt.Errorf("qemu: QMP %s: %w", cmd, err)
			}
			var reply struct {
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Desc string `json:"desc"`
				} `json:"error"`
			}
			if json.Unmarshal(line, &reply) != nil {
				continue
			}
			if reply.Error != nil {
				return fmt.Errorf("qemu: QMP %s: %s", cmd, reply.Error.Desc)
			}
			if reply.Return != nil {
				if out != nil && cmd == command {
					if err := json.Unmarshal(reply.Return, out); err != nil {
						return fmt.Errorf("qemu: QMP %s: %w", cmd, err)
					}
				}
				break
			}
		}
	}
	return nil
}

// Run boots the image and returns when the guest powers off.
func Run(ctx context.Context, o Options) error {
	p, err := Start(ctx, o)
	if err != nil {
		return err
	}
	return p.Wait()
}

type limitedBuffer struct {
	b   []byte
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func firstLine(b []byte) string {
	for i, c := range b {
		if c == '\n' {
			return string(b[:i])
		}
	}
	return string(b)
}
