package main

import (
	"bufio"
	"context"
	"crypto/rand"
	endian "encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"io"
	"net"
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
// user does: the serial marker comes on stdout; the X server has a
// viewable window whose _NET_WM_PID is the QEMU that run started, and
// which shows what a headless `run --screenshot` saw of the guest's
// screen; and Ctrl-C (SIGINT) powers the guest off, exit 0, the window
// gone with QEMU.
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
	exe := filepath.Join(t.TempDir(), "tinyvm-oci")
	if out, err := exec.Command("go", "build", "-o", exe, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}

	// The screen the windows must show, as QMP's screendump has it.
	shot := filepath.Join(t.TempDir(), "screen.png")
	ref := startRun(t, exe, os.Environ(), "run", "--screenshot", shot)
	ref.waitMarker(t)
	screen := waitPNG(t, shot, ref.done)
	ref.stop(t)
	if lit := litPixels(screen); lit < 1000 {
		t.Fatalf("the guest's screen has %d lit pixels: no banner to look for in a window", lit)
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
			r := startRun(t, exe, x.env(), "run", "--display", d)
			r.waitMarker(t)
			pid := childQemu(t, r.cmd.Process.Pid, r.done)
			win := x.waitWindow(t, pid, r.done)
			t.Logf("QEMU (pid %d) opened %+v", pid, win)
			x.waitShows(t, win, screen, r.done)
			r.stop(t)
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

// running is the binary running with stdout and stderr captured.
type running struct {
	cmd            *exec.Cmd
	stdout, stderr *qemu.Capture
	done           chan struct{}
	err            error
}

// startRun starts bin with args and env; it is killed, if still running,
// when the test ends.
func startRun(t *testing.T, bin string, env []string, args ...string) *running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	r := &running{stdout: qemu.NewCapture(), stderr: qemu.NewCapture(), done: make(chan struct{})}
	r.cmd = exec.CommandContext(ctx, bin, args...)
	r.cmd.Dir = t.TempDir()
	r.cmd.Env = env
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	// Stdin stays open, as a terminal's would: EOF is not a stop.
	stdin, err := r.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
		stdin.Close()
	})
	return r
}

// waitMarker waits for the VM's serial marker on stdout.
func (r *running) waitMarker(t *testing.T) {
	t.Helper()
	if !r.stdout.WaitFor(sector.DefaultSerial, 2*time.Minute, r.done) {
		t.Fatalf("stdout never showed %q: stdout %q, stderr %q", sector.DefaultSerial, r.stdout.String(), r.stderr.String())
	}
}

// stop is Ctrl-C: SIGINT to run, which must press the power button and
// exit 0 once the guest has powered off.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("run still running 2m after SIGINT; stderr %q", r.stderr.String())
	}
	var ee *exec.ExitError
	if r.err != nil && !(errors.As(r.err, &ee) && ee.ExitCode() >= 0) {
		t.Fatalf("run: %v; stderr %q", r.err, r.stderr.String())
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGINT, want 0 (the guest powered off); stderr %q", code, r.stderr.String())
	}
	if !strings.Contains(r.stderr.String(), "pressed the ACPI power button") {
		t.Errorf("no word of the power button on stderr: %q", r.stderr.String())
	}
}

// waitPNG waits for run --screenshot's PNG, which it renames into place
// whole, and decodes it.
func waitPNG(t *testing.T, path string, done <-chan struct{}) image.Image {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if f, err := os.Open(path); err == nil {
			defer f.Close()
			img, err := png.Decode(f)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			return img
		}
		select {
		case <-done:
			t.Fatalf("run exited before it wrote %s", path)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute of the marker", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// litPixels counts the pixels of img that are not black.
func litPixels(img image.Image) int {
	n := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, g, bl, _ := img.At(x, y).RGBA(); r|g|bl != 0 {
				n++
			}
		}
	}
	return n
}

// xserver is a running Xvfb and how its clients reach it.
type xserver struct {
	display string // ":N"
	auth    string // the Xauthority file with its cookie
	cookie  []byte // MIT-MAGIC-COOKIE-1
}

// startXvfb starts Xvfb on a display number it picks itself (-displayfd),
// reachable only on this machine's unix sockets and only with a cookie of
// this test's, and stops it when the test ends.
func startXvfb(t *testing.T, xvfb string) *xserver {
	t.Helper()
	dir := t.TempDir()
	auth := filepath.Join(dir, "Xauthority")
	cookie := make([]byte, 16)
	_, _ = rand.Read(cookie)
	if err := os.WriteFile(auth, xauthority(cookie), 0o600); err != nil {
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
		x := &xserver{display: ":" + n, auth: auth, cookie: cookie}
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
func xauthority(cookie []byte) []byte {
	const familyWild = 0xffff
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

// waitShows waits for win to show screen pixel for pixel, at whatever
// offset its toolkit puts it (gtk has a menu bar above it), but for the
// text cursor, which blinks: at most two 9x16 character cells may differ,
// far fewer than the banner lights.
func (x *xserver) waitShows(t *testing.T, win window, screen image.Image, done <-chan struct{}) {
	t.Helper()
	want := image.NewRGBA(screen.Bounds())
	draw.Draw(want, want.Bounds(), screen, screen.Bounds().Min, draw.Src)
	const tolerance = 2 * 9 * 16
	deadline := time.Now().Add(time.Minute)
	for {
		got := x.getImage(t, win)
		at, diff := bestOffset(got, want)
		if diff <= tolerance {
			t.Logf("window %s shows the guest's %v screen at %v (%d pixels differ)", win.ID, want.Bounds().Size(), at, diff)
			return
		}
		select {
		case <-done:
			t.Fatalf("run exited before window %s showed the guest's screen", win.ID)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("window %s (%dx%d) never showed the guest's screen: at best %d of %d pixels differ, at %v",
				win.ID, win.Width, win.Height, diff, want.Bounds().Dx()*want.Bounds().Dy(), at)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// bestOffset finds where in got want fits best, comparing red, green and
// blue, and how many pixels differ there.
func bestOffset(got, want *image.RGBA) (image.Point, int) {
	best, bestDiff := image.Point{}, want.Bounds().Dx()*want.Bounds().Dy()+1
	w, h := want.Bounds().Dx(), want.Bounds().Dy()
	for oy := 0; oy+h <= got.Bounds().Dy(); oy++ {
		for ox := 0; ox+w <= got.Bounds().Dx(); ox++ {
			diff := 0
			for y := 0; y < h && diff < bestDiff; y++ {
				g := got.Pix[(oy+y)*got.Stride+ox*4:]
				r := want.Pix[y*want.Stride:]
				for i := 0; i < w*4; i += 4 {
					if g[i] != r[i] || g[i+1] != r[i+1] || g[i+2] != r[i+2] {
						diff++
					}
				}
			}
			if diff < bestDiff {
				best, bestDiff = image.Pt(ox, oy), diff
			}
		}
	}
	return best, bestDiff
}

// getImage reads win's pixels as the X server composes them, with the
// core protocol's GetImage over the server's unix socket and the test's
// cookie: the few requests of the protocol this needs, little-endian.
func (x *xserver) getImage(t *testing.T, win window) *image.RGBA {
	t.Helper()
	id, err := strconv.ParseUint(strings.TrimPrefix(win.ID, "0x"), 16, 32)
	if err != nil {
		t.Fatalf("window id %q: %v", win.ID, err)
	}
	conn, err := net.DialTimeout("unix", "/tmp/.X11-unix/X"+strings.TrimPrefix(x.display, ":"), 10*time.Second)
	if err != nil {
		t.Fatalf("connect to X %s: %v", x.display, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	le := endian.LittleEndian
	pad := func(b []byte) []byte { return append(b, make([]byte, (4-len(b)%4)%4)...) }
	read := func(n int) []byte {
		b := make([]byte, n)
		if _, err := io.ReadFull(conn, b); err != nil {
			t.Fatalf("read from X %s: %v", x.display, err)
		}
		return b
	}

	// Connection setup: byte order 'l', protocol 11.0, the cookie.
	name := []byte("MIT-MAGIC-COOKIE-1")
	req := []byte{'l', 0}
	req = le.AppendUint16(req, 11)
	req = le.AppendUint16(req, 0)
	req = le.AppendUint16(req, uint16(len(name)))
	req = le.AppendUint16(req, uint16(len(x.cookie)))
	req = le.AppendUint16(req, 0)
	req = append(pad(append(req, name...)), pad(x.cookie)...)
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	head := read(8)
	body := read(4 * int(le.Uint16(head[6:])))
	if head[0] != 1 {
		t.Fatalf("X %s refused the connection: %q", x.display, body[:min(int(head[1]), len(body))])
	}
	// After 32 fixed bytes come the vendor, padded, and the pixmap
	// formats: depth, bits per pixel, scanline pad, 5 unused.
	const (
		offVendorLen  = 16
		offFormats    = 21
		offByteOrder  = 22
		offVendor     = 32
		formatSize    = 8
		lsbFirst      = 0
		opGetImage    = 73
		formatZPixmap = 2
	)
	if body[offByteOrder] != lsbFirst {
		t.Fatalf("X %s sends images most significant byte first; this reader takes LSBFirst", x.display)
	}
	formats := body[offVendor+len(pad(make([]byte, le.Uint16(body[offVendorLen:])))):]
	bpp24 := 0
	for i := 0; i < int(body[offFormats]); i++ {
		if f := formats[i*formatSize:]; f[0] == 24 {
			bpp24 = int(f[1])
		}
	}

	req = []byte{opGetImage, formatZPixmap}
	req = le.AppendUint16(req, 5) // request length in 4-byte units
	req = le.AppendUint32(req, uint32(id))
	req = le.AppendUint16(req, 0) // x
	req = le.AppendUint16(req, 0) // y
	req = le.AppendUint16(req, uint16(win.Width))
	req = le.AppendUint16(req, uint16(win.Height))
	req = le.AppendUint32(req, 0xffffffff) // every plane
	if _, err := conn.Write(req); err != nil {
		t.Fatal(err)
	}
	reply := read(32)
	if reply[0] != 1 {
		t.Fatalf("X %s: GetImage of window %s: error %d", x.display, win.ID, reply[1])
	}
	data := read(4 * int(le.Uint32(reply[4:])))
	if depth := reply[1]; depth != 24 || bpp24 != 32 {
		t.Fatalf("window %s is %d bits deep at %d bits per pixel; this reader takes 24 at 32", win.ID, depth, bpp24)
	}
	// 32-bit pixels need no scanline padding: B, G, R, unused (the
	// TrueColor masks Xvfb's 24-bit screen has).
	img := image.NewRGBA(image.Rect(0, 0, win.Width, win.Height))
	if len(data) < 4*win.Width*win.Height {
		t.Fatalf("X %s: GetImage of %dx%d gave %d bytes", x.display, win.Width, win.Height, len(data))
	}
	for i := 0; i < win.Width*win.Height; i++ {
		img.Pix[4*i], img.Pix[4*i+1], img.Pix[4*i+2], img.Pix[4*i+3] = data[4*i+2], data[4*i+1], data[4*i], 0xff
	}
	return img
}
