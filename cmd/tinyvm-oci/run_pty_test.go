package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// openPTY opens a pseudo-terminal pair with nothing but the kernel's
// ioctls: unlock the master's slave (TIOCSPTLCK), then name it (TIOCGPTN).
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	var unlock int32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSPTLCK, uintptr(unsafe.Pointer(&unlock))); e != 0 {
		t.Fatalf("unlock pty: %v", e)
	}
	var n uint32
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCGPTN, uintptr(unsafe.Pointer(&n))); e != 0 {
		t.Fatalf("name pty: %v", e)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 80x25, for curses; a new pty is 0x0.
	ws := [4]uint16{25, 80, 0, 0}
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, m.Fd(), syscall.TIOCSWINSZ, uintptr(unsafe.Pointer(&ws))); e != 0 {
		t.Fatalf("size pty: %v", e)
	}
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// terminal is the binary running on a pty as its controlling terminal,
// in the foreground, the way a shell runs it: Ctrl-C typed on the master
// is the kernel's SIGINT to its process group.
type terminal struct {
	master *os.File
	out    *qemu.Capture
	done   chan struct{}
	err    error
}

func startOnPTY(t *testing.T, bin string, args ...string) *terminal {
	t.Helper()
	master, slave := openPTY(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), "TERM=xterm")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close() // the child has it; the master reads EIO once it is gone
	term := &terminal{master: master, out: qemu.NewCapture(), done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.out.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}()
	go func() {
		term.err = cmd.Wait()
		close(term.done)
	}()
	return term
}

func (term *terminal) waitFor(t *testing.T, s string) {
	t.Helper()
	if !term.out.WaitFor(s, 2*time.Minute, term.done) {
		t.Fatalf("the terminal never showed %q; it shows %q", s, term.out.String())
	}
}

// escapes are the terminal control sequences curses draws with: CSI
// sequences, character set choices and keypad modes.
var escapes = regexp.MustCompile(`\x1b(\[[0-9;?=]*[A-Za-z]|\([0-9A-Za-z]|[=>])`)

// waitForText waits until the terminal shows s once control sequences are
// left out: curses may change colours in the middle of a word it draws.
func (term *terminal) waitForText(t *testing.T, s string) {
	t.Helper()
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if strings.Contains(escapes.ReplaceAllString(term.out.String(), ""), s) {
			return
		}
		select {
		case <-term.done:
			t.Fatalf("run ended before the terminal showed %q; it shows %q", s, term.out.String())
		default:
		}
	}
	t.Fatalf("the terminal never showed %q; it shows %q", s, term.out.String())
}

func (term *terminal) typ(t *testing.T, s string) {
	t.Helper()
	if _, err := term.master.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

// exit waits for the binary and returns its exit code.
func (term *terminal) exit(t *testing.T) int {
	t.Helper()
	select {
	case <-term.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("still running; the terminal shows %q", term.out.String())
	}
	t.Logf("terminal: %q", term.out.String())
	var ee *exec.ExitError
	switch {
	case term.err == nil:
		return 0
	case errors.As(term.err, &ee) && ee.ExitCode() >= 0:
		return ee.ExitCode()
	}
	t.Fatalf("%v; the terminal shows %q", term.err, term.out.String())
	return -1
}

// TestRunTerminal stops `run` the ways a user at a terminal does: Ctrl-C
// presses the power button (exit 0); Ctrl-C twice kills a guest that
// ignores it (exit 130); and a line typed to the echo probe powers off.
func TestRunTerminal(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	bin := filepath.Join(t.TempDir(), "tinyvm-oci")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	t.Run("ctrl-c", func(t *testing.T) {
		term := startOnPTY(t, bin, "run")
		term.waitFor(t, "Hello World!")
		term.typ(t, "\x03")
		if code := term.exit(t); code != 0 {
			t.Errorf("exit %d after the power button, want 0; terminal %q", code, term.out.String())
		}
		if !strings.Contains(term.out.String(), "pressed the ACPI power button") {
			t.Errorf("no word of the power button: %q", term.out.String())
		}
	})
	t.Run("ctrl-c while the firmware boots", func(t *testing.T) {
		// The press comes before the EFI application has enabled the
		// power button, so QEMU drops it; run presses again each second.
		tooltest.RequireFile(t, qemu.OVMFCode, tooltest.OVMF)
		term := startOnPTY(t, bin, "run", "--boot", "uefi")
		term.waitFor(t, "BdsDxe")
		term.typ(t, "\x03")
		if code := term.exit(t); code != 0 {
			t.Errorf("exit %d after the power button during boot, want 0; terminal %q", code, term.out.String())
		}
		if !strings.Contains(term.out.String(), "Hello World!") {
			t.Errorf("the guest never ran: %q", term.out.String())
		}
	})
	t.Run("ctrl-c twice", func(t *testing.T) {
		term := startOnPTY(t, bin, "run", "--then", "halt")
		term.waitFor(t, "Hello World!")
		term.typ(t, "\x03")
		term.waitFor(t, "Ctrl-C again kills QEMU")
		term.typ(t, "\x03")
		if code := term.exit(t); code != exitInterrupted {
			t.Errorf("exit %d after two Ctrl-C, want %d; terminal %q", code, exitInterrupted, term.out.String())
		}
	})
	t.Run("typed poweroff", func(t *testing.T) {
		term := startOnPTY(t, bin, "run", "--probe", "echo", "--firmware", "bios")
		term.waitFor(t, "Hello World!")
		term.typ(t, "poweroff\r") // Enter; the terminal makes it a line
		if code := term.exit(t); code != 0 {
			t.Errorf("exit %d after a typed poweroff, want 0; terminal %q", code, term.out.String())
		}
		if strings.Contains(term.out.String(), "power button") {
			t.Errorf("the guest powered off by a signal, not the typed line: %q", term.out.String())
		}
	})
	t.Run("curses", func(t *testing.T) {
		// QEMU draws the screen here and takes the keys: one key press is
		// the waiting VM's cue to power off.
		term := startOnPTY(t, bin, "run", "--display", "curses")
		term.waitForText(t, "the 512-byte VM")
		term.typ(t, "x")
		if code := term.exit(t); code != 0 {
			t.Errorf("exit %d after a key press on the curses screen, want 0; terminal %q", code, term.out.String())
		}
	})
}
