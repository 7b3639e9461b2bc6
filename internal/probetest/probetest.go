// Package probetest is the QEMU harness of the fixture probes' boot
// tests (docs/probes.md): it starts an emulator with any machine,
// firmware and drives, captures its serial console (on stdio or on a
// socket the test writes to), talks QMP, waits for probe lines, and
// makes the disks and ISOs those tests attach. qemu.Options describes
// one boot disk; the probe tests need several drives, a serial socket
// and live migration, so they build the command line here instead.
//
// The BIOS tests of pkg/sector and the UEFI tests of pkg/sector/efi
// share it, and with it the scenarios both run: StopCont and Migrate.
package probetest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
)

// The probe lines, each ended by CR LF. A firmware's terminal may put
// escape sequences before a line, never inside it.
var (
	HeartbeatRE = regexp.MustCompile(`tinyvm heartbeat ([0-9]+)\r\n`)
	BootRE      = regexp.MustCompile(`tinyvm boot ([0-9]+)\r\n`)
	DisksRE     = regexp.MustCompile(`tinyvm disks ([0-9]+)\r\n`)
	VolumeRE    = regexp.MustCompile(`tinyvm volume ([ -~]+)\r\n`)
	IDRE        = regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
)

// Options are the parts of a probe boot's command line.
type Options struct {
	Binary string   // the emulator, e.g. qemu.Binary
	Args   []string // machine, CPU and memory
	// Code and Vars are a UEFI firmware's code and variables template,
	// both or neither. Each VM writes its own copy of Vars, as two
	// QEMUs of one migration need.
	Code, Vars string
	Drives     []string      // -drive and -device pairs, already written
	Incoming   string        // -incoming URI
	Socket     bool          // serial on a unix socket (VM.Conn) instead of stdio
	Reboot     bool          // let a guest reset restart it (no -no-reboot)
	Timeout    time.Duration // what WaitFor and Exits wait at most
}

// VM is one running QEMU with its serial captured and QMP on a socket.
type VM struct {
	t       testing.TB
	Cmd     *exec.Cmd
	Serial  *qemu.Capture
	Conn    net.Conn // the serial socket, with Options.Socket
	qmpPath string
	timeout time.Duration
	done    chan struct{}
	err     error
}

// Start starts QEMU under TCG without display or monitor; the test's
// Cleanup kills it if it still runs. The caller checks the emulator and
// firmware files with tooltest first: Start only fails on them.
func Start(t testing.TB, o Options) *VM {
	t.Helper()
	dir := t.TempDir()
	v := &VM{t: t, Serial: qemu.NewCapture(), qmpPath: filepath.Join(dir, "qmp.sock"), timeout: o.Timeout, done: make(chan struct{})}
	if v.timeout <= 0 {
		v.timeout = 5 * time.Minute
	}
	args := append([]string(nil), o.Args...)
	if o.Code != "" {
		vars, err := os.ReadFile(o.Vars)
		if err != nil {
			t.Fatal(err)
		}
		own := filepath.Join(dir, "vars.fd")
		if err := os.WriteFile(own, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+o.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+own)
	}
	args = append(args, "-accel", "tcg", "-display", "none", "-monitor", "none",
		"-qmp", "unix:"+v.qmpPath+",server=on,wait=off")
	if !o.Reboot {
		args = append(args, "-no-reboot")
	}
	sock := filepath.Join(dir, "serial.sock")
	if o.Socket {
		args = append(args, "-chardev", "socket,id=s0,path="+sock+",server=on,wait=off", "-serial", "chardev:s0")
	} else {
		args = append(args, "-serial", "stdio")
	}
	args = append(args, o.Drives...)
	if o.Incoming != "" {
		args = append(args, "-incoming", o.Incoming)
	}
	// A last bound on a QEMU that neither exits nor is killed.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	v.Cmd = exec.CommandContext(ctx, o.Binary, args...)
	if !o.Socket {
		v.Cmd.Stdout = v.Serial
	}
	var stderr strings.Builder
	v.Cmd.Stderr = &stderr
	if err := v.Cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		v.err = v.Cmd.Wait()
		if v.err != nil {
			v.err = fmt.Errorf("%w: %s", v.err, strings.TrimSpace(stderr.String()))
		}
		close(v.done)
	}()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			_ = v.Cmd.Process.Kill()
			<-v.done
		}
	})
	if o.Socket {
		conn, err := dial(sock)
		if err != nil {
			t.Fatalf("serial socket: %v", err)
		}
		v.Conn = conn
		t.Cleanup(func() { conn.Close() })
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := conn.Read(buf)
				v.Serial.Write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
	}
	return v
}

// dial connects to a unix socket QEMU is still creating.
func dial(path string) (net.Conn, error) {
	var err error
	for range 200 {
		var c net.Conn
		if c, err = net.Dial("unix", path); err == nil {
			return c, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}

// Done is closed when QEMU has ended.
func (v *VM) Done() <-chan struct{} { return v.done }

// Pid is QEMU's process id.
func (v *VM) Pid() int { return v.Cmd.Process.Pid }

// Write sends s to the serial socket (Options.Socket).
func (v *VM) Write(s string) {
	v.t.Helper()
	if _, err := v.Conn.Write([]byte(s)); err != nil {
		v.t.Fatalf("serial write %q: %v", s, err)
	}
}

// WaitFor waits for the serial output to match re and returns the
// submatches of its last match; why names the wait in the failure.
func (v *VM) WaitFor(re *regexp.Regexp, why string) []string {
	v.t.Helper()
	deadline := time.Now().Add(v.timeout)
	for {
		out := v.Serial.String()
		if m := re.FindAllStringSubmatch(out, -1); m != nil {
			return m[len(m)-1]
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s: no %v on serial within %v; got %q", why, re, v.timeout, Tail(out))
		}
		select {
		case <-v.done:
			if m := re.FindAllStringSubmatch(v.Serial.String(), -1); m != nil {
				return m[len(m)-1]
			}
			v.t.Fatalf("%s: qemu ended (%v) without %v; got %q", why, v.err, re, Tail(v.Serial.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exits waits for QEMU to end by itself with status 0.
func (v *VM) Exits(why string) {
	v.t.Helper()
	select {
	case <-v.done:
		if v.err != nil {
			v.t.Fatalf("%s: qemu failed: %v", why, v.err)
		}
	case <-time.After(v.timeout):
		v.t.Fatalf("%s: the guest did not power off within %v; serial %q", why, v.timeout, Tail(v.Serial.String()))
	}
}

// Alive fails the test if QEMU ends within d.
func (v *VM) Alive(d time.Duration, why string) {
	v.t.Helper()
	select {
	case <-v.done:
		v.t.Fatalf("%s: the guest stopped (%v), want it running; serial %q", why, v.err, Tail(v.Serial.String()))
	case <-time.After(d):
	}
}

// QMP runs commands, each {"execute": ..., "arguments": ...}, in one
// QMP session and returns the last one's reply; an error reply fails
// the test.
func (v *VM) QMP(cmds ...map[string]any) json.RawMessage {
	v.t.Helper()
	conn, err := dial(v.qmpPath)
	if err != nil {
		v.t.Fatalf("QMP: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadBytes('\n'); err != nil {
		v.t.Fatalf("QMP greeting: %v", err)
	}
	var last json.RawMessage
	for _, c := range append([]map[string]any{{"execute": "qmp_capabilities"}}, cmds...) {
		if err := json.NewEncoder(conn).Encode(c); err != nil {
			v.t.Fatalf("QMP %v: %v", c["execute"], err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				v.t.Fatalf("QMP %v: %v", c["execute"], err)
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
				v.t.Fatalf("QMP %v: %s", c["execute"], reply.Error.Desc)
			}
			if reply.Return != nil { // events have neither and are skipped
				last = reply.Return
				break
			}
		}
	}
	return last
}

// Exec runs one QMP command without arguments.
func (v *VM) Exec(command string) json.RawMessage {
	v.t.Helper()
	return v.QMP(map[string]any{"execute": command})
}

// SendKey presses and releases the key of a QEMU qcode, e.g. "q".
func (v *VM) SendKey(qcode string) {
	v.t.Helper()
	v.QMP(map[string]any{"execute": "send-key", "arguments": map[string]any{"keys": []any{map[string]any{"type": "qcode", "data": qcode}}}})
}

// status returns the "status" field of a query command's reply.
func (v *VM) status(command string) string {
	v.t.Helper()
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(v.Exec(command), &st); err != nil {
		v.t.Fatalf("QMP %s: %v", command, err)
	}
	return st.Status
}

// Tail is the end of a long serial log, for failure messages.
func Tail(s string) string {
	const keep = 2000
	if len(s) > keep {
		return "..." + s[len(s)-keep:]
	}
	return s
}

// Atoi parses a number matched by a probe line's regexp.
func Atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TypedRE matches the echo of the characters typed while heartbeats
// run: a heartbeat that comes due in the middle of a typed line ends the
// typed part first (CR LF, then the heartbeat line), and the rest of the
// line follows on a line of its own (docs/probes.md).
func TypedRE(typed string) *regexp.Regexp { return regexp.MustCompile(typedPattern(typed)) }

// EchoRE is TypedRE of a whole line, ended by CR LF.
func EchoRE(typed string) *regexp.Regexp {
	return regexp.MustCompile(typedPattern(typed) + beatPattern + `\r\n`)
}

// beatPattern is a heartbeat that may interrupt a typed line.
const beatPattern = `(?:\r\ntinyvm heartbeat [0-9]+\r\n)?`

func typedPattern(typed string) string {
	var parts []string
	for _, c := range typed {
		parts = append(parts, regexp.QuoteMeta(string(c)))
	}
	return strings.Join(parts, beatPattern)
}

// LastHeartbeat is the highest heartbeat number in out, or 0 if none.
func LastHeartbeat(out string) int {
	m := HeartbeatRE.FindAllStringSubmatch(out, -1)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Drive attaches path as device dev (e.g. "virtio-blk-pci", or
// "ide-hd,bus=ide.0"), with bootindex when it is not negative; extra is
// appended to the -drive options (e.g. ",readonly=on").
func Drive(dev, id, path, format string, bootindex int, extra string) []string {
	d := dev + ",drive=" + id
	if bootindex >= 0 {
		d += ",bootindex=" + strconv.Itoa(bootindex)
	}
	return []string{"-drive", "file=" + path + ",format=" + format + ",if=none,id=" + id + extra, "-device", d}
}

// CD attaches an ISO read-only as a CD-ROM on device dev, e.g.
// "ide-cd,bus=ide.2"; bootindex as for Drive.
func CD(dev, id, path string, bootindex int) []string {
	return Drive(dev, id, path, "raw", bootindex, ",media=cdrom,readonly=on")
}

// tool runs an external tool, failing the test with its output.
func tool(t testing.TB, name, install string, args ...string) {
	t.Helper()
	path := tooltest.Require(t, name, install)
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
