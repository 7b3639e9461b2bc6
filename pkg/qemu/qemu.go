// Package qemu boots a disk image in the local qemu-system-x86_64 and
// talks to it over QMP. The run command and the boot tests share it.
package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
)

// Binary is the emulator this package runs.
const Binary = "qemu-system-x86_64"

// InstallHint says how to get the emulator on Debian.
const InstallHint = "install it with: apt-get install qemu-system-x86"

// Machines and buses that Options accept.
var (
	Machines = []string{"pc", "q35"}
	Buses    = []string{"ide", "virtio", "sata", "scsi", "cdrom"}
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
	// "cdrom" (ide-cd on pc, a SATA CD-ROM on q35).
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
}

// Validate reports a bad machine or bus.
func (o Options) Validate() error {
	if o.File == "" {
		return errors.New("qemu: no image file given")
	}
	if o.Machine != "" && !slices.Contains(Machines, o.Machine) {
		return fmt.Errorf("qemu: unknown machine %q: use pc or q35", o.Machine)
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
	}
	if bus == "" {
		bus = "ide"
	}
	if driver == "" {
		driver = "raw"
	}
	args := []string{"-machine", machine, "-display", "none", "-serial", "stdio", "-monitor", "none", "-m", "64"}
	accel := o.Accel
	if accel == "" {
		accel = "tcg"
	}
	args = append(args, "-accel", accel)
	if o.NoReboot {
		args = append(args, "-no-reboot")
	}
	drive := fmt.Sprintf("file=%s,format=%s,if=none,id=d0", escape(o.File), driver)
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
		args = append(args, "-drive", drive+",media=cdrom,readonly=on", "-device", "ide-cd,drive=d0,bus=ide.0,bootindex=0")
	}
	return args, nil
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
	cmd  *exec.Cmd
	qmp  string
	done chan struct{}
	err  error
}

// Start boots the image. The emulator runs until the guest powers off, ctx
// is cancelled, or Kill is called.
func Start(ctx context.Context, o Options) (*Process, error) {
	path, err := exec.LookPath(Binary)
	if err != nil {
		return nil, fmt.Errorf("qemu: %s not found: %s", Binary, InstallHint)
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
	p.cmd.Stdout = o.Serial
	if p.cmd.Stdout == nil {
		p.cmd.Stdout = io.Discard
	}
	stderr := &limitedBuffer{max: 4096}
	p.cmd.Stderr = stderr
	if err := p.cmd.Start(); err != nil {
		release()
		return nil, fmt.Errorf("qemu: start %s: %w", Binary, err)
	}
	go func() {
		err := p.cmd.Wait()
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

// QMP runs one QMP command; args may be nil.
func (p *Process) QMP(command string, args any) error {
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
