package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestRunWindowNeedsDisplay: without a desktop, gtk and sdl are a one-line
// usage error found before anything is built, not QEMU's dying words; the
// line they print still needs no window.
func TestRunWindowNeedsDisplay(t *testing.T) {
	t.Setenv("DISPLAY", "")
	t.Setenv("WAYLAND_DISPLAY", "")
	for _, d := range []string{"gtk", "sdl"} {
		code, stdout, stderr := cli(t, "run", "--display", d)
		// The error's line, then cobra's pointer to --help.
		first, rest, _ := strings.Cut(stderr, "\n")
		if code != exitUsage || stdout != "" || !strings.Contains(first, "--display "+d) || !strings.Contains(first, "set DISPLAY") ||
			strings.Contains(rest, "qemu") {
			t.Errorf("run --display %s without DISPLAY: exit %d, stdout %q, stderr %q; want exit 2 and one line saying to set DISPLAY",
				d, code, stdout, stderr)
		}
	}
	dir := t.TempDir()
	if code, _, stderr := cli(t, "build", "-q", "-o", dir, "--format", "raw"); code != 0 {
		t.Fatal(stderr)
	}
	code, stdout, stderr := cli(t, "run", "--print-command", "--display", "gtk", filepath.Join(dir, "512-byte-vm.raw"))
	if code != 0 || !strings.Contains(stdout, " -display gtk ") {
		t.Errorf("run --print-command --display gtk without DISPLAY: exit %d, stdout %q, stderr %q; want the line with -display gtk", code, stdout, stderr)
	}
}

// TestRunWindow runs `run --display gtk` and `--display sdl` on an X server
// of its own (Xvfb, a unix socket and a cookie, no TCP), the way a desktop
// user does: the serial marker comes on stdout, the X server has a
// viewable window of the guest's screen whose _NET_WM_PID is the QEMU that
// run started, and Ctrl-C (SIGINT) powers the guest off, exit 0, the
// window gone with QEMU.
func TestRunWindow(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	xvfb := tooltest.Require(t, "Xvfb", tooltest.Xvfb)
	tooltest.Require(t, "xwininfo", tooltest.X11Utils)
	tooltest.Require(t, "xprop", tooltest.X11Utils)
	out, err := exec.Command(qemu.Binary, "-display", "help").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -display help: %v: %s", qemu.Binary, err, out)
	}
	uis := strings.Fields(string(out)) // one name a line, and QEMU's notes
	x := startXvfb(t, xvfb)
	bin := filepath.Join(t.TempDir(), "tinyvm-oci")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	for _, d := range []string{"gtk", "sdl"} {
		t.Run(d, func(t *testing.T) {
			if !slices.Contains(uis, d) {
				tooltest.Missing(t, fmt.Sprintf("%s has no %s display: %s", qemu.Binary, d, tooltest.QemuGUI))
			}
			// A fresh server: any QEMU window found later is this run's.
			if ws := x.qemuWindows(t); len(ws) != 0 {
				t.Fatalf("before run, the X server already has QEMU windows %+v", ws)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, "run", "--display", d)
			cmd.Dir = t.TempDir()
			cmd.Env = x.env()
			stdout, stderr := qemu.NewCapture(), qemu.NewCapture()
			cmd.Stdout, cmd.Stderr = stdout, stderr
			// Stdin stays open, as a terminal's would: EOF is not a stop.
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var waitErr error
			go func() {
				waitErr = cmd.Wait()
				close(done)
			}()
			defer func() { cancel(); <-done }()
			if !stdout.WaitFor(sector.DefaultSerial, 2*time.Minute, done) {
				t.Fatalf("stdout never showed %q: stdout %q, stderr %q", sector.DefaultSerial, stdout.String(), stderr.String())
			}
			pid := childQemu(t, cmd.Process.Pid, done)
			win := x.waitWindow(t, pid, done)
			t.Logf("QEMU (pid %d) opened %+v", pid, win)

			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(2 * time.Minute):
				t.Fatalf("run still running 2m after SIGINT; stderr %q", stderr.String())
			}
			var ee *exec.ExitError
			if waitErr != nil && !(errors.As(waitErr, &ee) && ee.ExitCode() >= 0) {
				t.Fatalf("run: %v; stderr %q", waitErr, stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("exit %d after SIGINT, want 0 (the guest powered off); stderr %q", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "pressed the ACPI power button") {
				t.Errorf("no word of the power button on stderr: %q", stderr.String())
			}
			// QEMU is gone, and its window with it; the server notices the
			// closed connection on its own time.
			deadline := time.Now().Add(30 * time.Second)
			for ws := x.qemuWindows(t); len(ws) != 0; ws = x.qemuWindows(t) {
				if time.Now().After(deadline) {
					t.Fatalf("QEMU's windows %+v outlived run", ws)
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// xserver is a running Xvfb and how its clients reach it.
type xserver struct {
	display string // ":N"
	auth    string // the Xauthority file with its cookie
}

// startXvfb starts Xvfb on a display number it picks itself (-displayfd),
// reachable only on this machine's unix sockets and only with a cookie of
// this test's, and kills it when the test ends.
func startXvfb(t *testing.T, xvfb string) *xserver {
	t.Helper()
	dir := t.TempDir()
	auth := filepath.Join(dir, "Xauthority")
	if err := os.WriteFile(auth, xauthority(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	log := qemu.NewCapture()
	cmd := exec.Command(xvfb, "-displayfd", "3", "-nolisten", "tcp", "-auth", auth, "-screen", "0", "1024x768x24")
	cmd.ExtraFiles = []*os.File{w} // fd 3
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		w.Close()
		t.Fatal(err)
	}
	w.Close() // Xvfb has its copy; EOF here if it dies first
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		// SIGTERM lets Xvfb remove its lock and socket; SIGKILL would leave
		// them in /tmp.
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	number := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		number <- strings.TrimSpace(line)
	}()
	select {
	case n := <-number:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb gave display %q: %s", n, log.String())
		}
		x := &xserver{display: ":" + n, auth: auth}
		// The cookie is what lets a client in: without it, none is.
		nocookie := exec.Command("xwininfo", "-display", x.display, "-root")
		nocookie.Env = append(x.env(), "XAUTHORITY="+os.DevNull)
		if out, err := nocookie.CombinedOutput(); err == nil {
			t.Fatalf("Xvfb %s let in a client without its cookie: %s", x.display, out)
		}
		return x
	case <-time.After(time.Minute):
		t.Fatalf("Xvfb named no display within a minute: %s", log.String())
	}
	return nil
}

// xauthority is an Xauthority file of one MIT-MAGIC-COOKIE-1 entry for
// any address and display (family FamilyWild, address and number empty),
// each field a big-endian length and its bytes.
func xauthority() []byte {
	const familyWild = 0xffff
	cookie := make([]byte, 16)
	_, _ = rand.Read(cookie)
	b := []byte{familyWild >> 8, familyWild & 0xff}
	for _, field := range [][]byte{nil, nil, []byte("MIT-MAGIC-COOKIE-1"), cookie} {
		b = append(b, byte(len(field)>>8), byte(len(field)))
		b = append(b, field...)
	}
	return b
}

// env is this process's environment with the X server as the desktop:
// DISPLAY and XAUTHORITY point at it, and no Wayland compositor is named
// that GTK would prefer.
func (x *xserver) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if name != "DISPLAY" && name != "XAUTHORITY" && name != "WAYLAND_DISPLAY" {
			env = append(env, kv)
		}
	}
	return append(env, "DISPLAY="+x.display, "XAUTHORITY="+x.auth)
}

// xclient runs one X client on the server and returns its output.
func (x *xserver) xclient(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, append([]string{"-display", x.display}, args...)...)
	cmd.Env = x.env()
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// window is one top-level window as xwininfo and xprop see it.
type window struct {
	ID            string
	Name          string
	Width, Height int
	PID           int // _NET_WM_PID, 0 when the window sets none
	Viewable      bool
}

// treeLine is a window in xwininfo -root -tree: id, "name", classes, and
// WIDTHxHEIGHT+X+Y.
var treeLine = regexp.MustCompile(`^\s*(0x[0-9a-f]+) "([^"]*)": \(.*\)\s+(\d+)x(\d+)[+-]`)

// qemuWindows lists the windows whose title starts with QEMU, as both its
// gtk and sdl displays name theirs.
func (x *xserver) qemuWindows(t *testing.T) []window {
	t.Helper()
	var ws []window
	for _, line := range strings.Split(x.xclient(t, "xwininfo", "-root", "-tree"), "\n") {
		m := treeLine.FindStringSubmatch(line)
		if m == nil || !strings.HasPrefix(m[2], "QEMU") {
			continue
		}
		w := window{ID: m[1], Name: m[2]}
		w.Width, _ = strconv.Atoi(m[3])
		w.Height, _ = strconv.Atoi(m[4])
		// _NET_WM_PID(CARDINAL) = 1234, or "not found."
		if _, v, ok := strings.Cut(x.xclient(t, "xprop", "-id", w.ID, "_NET_WM_PID"), " = "); ok {
			w.PID, _ = strconv.Atoi(strings.TrimSpace(v))
		}
		w.Viewable = strings.Contains(x.xclient(t, "xwininfo", "-id", w.ID), "Map State: IsViewable")
		ws = append(ws, w)
	}
	return ws
}

// waitWindow waits for the X server to show a window of QEMU pid's that
// holds the guest's screen: viewable, and at least the 720x400 of the VGA
// text mode SeaBIOS and the VM draw in (80x25 characters of 9x16).
func (x *xserver) waitWindow(t *testing.T, pid int, done <-chan struct{}) window {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ws := x.qemuWindows(t)
		for _, w := range ws {
			if w.PID == pid && w.Viewable && w.Width >= 720 && w.Height >= 400 {
				return w
			}
		}
		select {
		case <-done:
			t.Fatalf("run exited before QEMU (pid %d) showed its window; QEMU windows %+v", pid, ws)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no viewable 720x400 window of QEMU (pid %d) within 2m; QEMU windows %+v", pid, ws)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// childQemu returns the pid of the emulator that process parent started,
// found in /proc by its parent and name.
func childQemu(t *testing.T, parent int, done <-chan struct{}) int {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		dirs, _ := filepath.Glob("/proc/[0-9]*")
		for _, dir := range dirs {
			stat, err := os.ReadFile(filepath.Join(dir, "stat"))
			if err != nil {
				continue // gone since the glob
			}
			// pid (comm) state ppid ...: comm may hold spaces and parens.
			i := strings.LastIndexByte(string(stat), ')')
			if i < 0 {
				continue
			}
			comm := string(stat[strings.IndexByte(string(stat), '(')+1 : i])
			fields := strings.Fields(string(stat[i+1:]))
			if len(fields) < 2 || fields[1] != strconv.Itoa(parent) || !strings.HasPrefix(comm, "qemu-system") {
				continue
			}
			pid, _ := strconv.Atoi(filepath.Base(dir))
			return pid
		}
		select {
		case <-done:
			t.Fatal("run exited before a QEMU child was seen")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has no qemu-system child", parent)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
