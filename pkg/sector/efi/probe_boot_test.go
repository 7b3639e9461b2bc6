package efi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/idletest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/qcow2"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// probeFirmware is one UEFI firmware the probe tests boot on: the
// application it starts, its emulator, machine and firmware files, and
// the bus of the boot disk. A row for AAVMF goes in probeFirmwares.
type probeFirmware struct {
	name       string
	arch       efi.Arch
	binary     string   // the emulator
	args       []string // machine, CPU and memory
	code, vars string   // the firmware's code and its variables template
	diskDevice string   // the -device of a disk, taking drive=ID
	cdDevice   string   // the -device of a CD, taking drive=ID; "" if none
}

// ovmf is OVMF on q35 with virtio disks and SATA CDs.
var ovmf = probeFirmware{
	name:       "ovmf",
	arch:       efi.AMD64,
	binary:     qemu.Binary,
	args:       []string{"-machine", "q35", "-m", "128"},
	code:       qemu.OVMFCode,
	vars:       qemu.OVMFVars,
	diskDevice: "virtio-blk-pci",
	cdDevice:   "ide-cd,bus=ide.%d",
}

// probeFirmwares are the firmwares every table-driven probe test runs on.
var probeFirmwares = []probeFirmware{ovmf}

// requireFirmware skips (fails under TINYVM_REQUIRE_TOOLS=1) without the
// emulator and firmware files.
func requireFirmware(t *testing.T, fw probeFirmware) {
	t.Helper()
	if fw.arch == efi.ARM64 {
		tooltest.Require(t, fw.binary, tooltest.QemuSystemARM)
		tooltest.RequireFile(t, fw.code, tooltest.AAVMF)
		tooltest.RequireFile(t, fw.vars, tooltest.AAVMF)
		return
	}
	tooltest.Require(t, fw.binary, tooltest.QemuSystem)
	tooltest.RequireFile(t, fw.code, tooltest.OVMF)
	tooltest.RequireFile(t, fw.vars, tooltest.OVMF)
}

// probeDisk builds the universal disk as the build composes it: the BIOS
// program with its second stage and counter in the gap before the ESP,
// and both EFI applications on the ESP.
func probeDisk(t *testing.T, o sector.Options) disk.Disk {
	t.Helper()
	o.Layout = sector.Partitioned
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var files []fat.File
	for _, arch := range efi.Arches {
		app, err := efi.Build(o, arch)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fat.File{Path: arch.BootPath(), Data: app})
	}
	var opts []universal.Option
	for _, r := range s.Reserved() {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	d, err := universal.New(s.Code(), files, 1<<20, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// probeFile writes probeDisk as a raw file.
func probeFile(t *testing.T, o sector.Options) string {
	t.Helper()
	return writeDisk(t, probeDisk(t, o))
}

func writeDisk(t *testing.T, d disk.Disk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, io.NewSectionReader(d, 0, d.Size())); err != nil {
		t.Fatal(err)
	}
	return path
}

// vm is one QEMU with its serial captured and QMP on a socket.
type vm struct {
	t       *testing.T
	cmd     *exec.Cmd
	serial  *qemu.Capture
	qmpPath string
	done    chan struct{}
	err     error
	conn    net.Conn // the serial socket, when asked for
}

// vmOptions are the parts of a probe boot's command line.
type vmOptions struct {
	fw       probeFirmware
	drives   []string // -drive and -device pairs, already written
	incoming string   // -incoming URI
	socket   bool     // serial on a unix socket instead of stdio
	bios     bool     // SeaBIOS on q35 instead of fw
	reboot   bool     // let a guest reset restart it (no -no-reboot)
}

// drive attaches path to fw's disk bus; bootindex < 0 gives none.
func (fw probeFirmware) drive(id, path, format string, bootindex int) []string {
	dev := fw.diskDevice + ",drive=" + id
	if bootindex >= 0 {
		dev += ",bootindex=" + strconv.Itoa(bootindex)
	}
	return []string{"-drive", "file=" + path + ",format=" + format + ",if=none,id=" + id, "-device", dev}
}

// cd attaches an ISO as the n-th CD.
func (fw probeFirmware) cd(n int, path string) []string {
	id := fmt.Sprintf("cd%d", n)
	return []string{"-drive", "file=" + path + ",format=raw,if=none,id=" + id + ",media=cdrom,readonly=on",
		"-device", fmt.Sprintf(fw.cdDevice, n) + ",drive=" + id}
}

// startVM starts QEMU with its own copy of the firmware variables;
// Cleanup kills it.
func startVM(t *testing.T, o vmOptions) *vm {
	t.Helper()
	dir := t.TempDir()
	v := &vm{t: t, serial: qemu.NewCapture(), qmpPath: filepath.Join(dir, "qmp.sock"), done: make(chan struct{})}
	binary := o.fw.binary
	var args []string
	if o.bios {
		tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
		binary = qemu.Binary
		args = []string{"-machine", "q35", "-m", "64"}
	} else {
		requireFirmware(t, o.fw)
		vars, err := os.ReadFile(o.fw.vars)
		if err != nil {
			t.Fatal(err)
		}
		varsCopy := filepath.Join(dir, "vars.fd")
		if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(append(args, o.fw.args...),
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+o.fw.code,
			"-drive", "if=pflash,format=raw,unit=1,file="+varsCopy)
	}
	args = append(args, "-accel", "tcg", "-display", "none", "-monitor", "none",
		"-qmp", "unix:"+v.qmpPath+",server=on,wait=off")
	if !o.reboot {
		args = append(args, "-no-reboot")
	}
	sock := filepath.Join(dir, "serial.sock")
	if o.socket {
		args = append(args, "-chardev", "socket,id=s0,path="+sock+",server=on,wait=off", "-serial", "chardev:s0")
	} else {
		args = append(args, "-serial", "stdio")
	}
	args = append(args, o.drives...)
	if o.incoming != "" {
		args = append(args, "-incoming", o.incoming)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	v.cmd = exec.CommandContext(ctx, binary, args...)
	if !o.socket {
		v.cmd.Stdout = v.serial
	}
	var stderr strings.Builder
	v.cmd.Stderr = &stderr
	if err := v.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		v.err = v.cmd.Wait()
		if v.err != nil {
			v.err = fmt.Errorf("%w: %s", v.err, strings.TrimSpace(stderr.String()))
		}
		close(v.done)
	}()
	t.Cleanup(func() {
		select {
		case <-v.done:
		default:
			_ = v.cmd.Process.Kill()
			<-v.done
		}
	})
	if o.socket {
		var err error
		for range 200 {
			if v.conn, err = net.Dial("unix", sock); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("serial socket: %v", err)
		}
		t.Cleanup(func() { v.conn.Close() })
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := v.conn.Read(buf)
				v.serial.Write(buf[:n])
				if err != nil {
					return
				}
			}
		}()
	}
	return v
}

// waitFor waits for the serial output to match re and returns the
// submatches of its last match.
func (v *vm) waitFor(re *regexp.Regexp, why string) []string {
	v.t.Helper()
	deadline := time.Now().Add(3 * bootTimeout)
	for {
		out := v.serial.String()
		if m := re.FindAllStringSubmatch(out, -1); m != nil {
			return m[len(m)-1]
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s: no %v on serial within %v; got %q", why, re, 3*bootTimeout, tail(out))
		}
		select {
		case <-v.done:
			if m := re.FindAllStringSubmatch(v.serial.String(), -1); m != nil {
				return m[len(m)-1]
			}
			v.t.Fatalf("%s: qemu ended (%v) without %v; got %q", why, v.err, re, tail(v.serial.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// exits waits for QEMU to end by itself with status 0.
func (v *vm) exits(why string) {
	v.t.Helper()
	select {
	case <-v.done:
		if v.err != nil {
			v.t.Fatalf("%s: qemu failed: %v", why, v.err)
		}
	case <-time.After(3 * bootTimeout):
		v.t.Fatalf("%s: the guest did not power off within %v; serial %q", why, 3*bootTimeout, tail(v.serial.String()))
	}
}

// alive fails if QEMU ends within d.
func (v *vm) alive(d time.Duration, why string) {
	v.t.Helper()
	select {
	case <-v.done:
		v.t.Fatalf("%s: the guest stopped (%v), want it running; serial %q", why, v.err, tail(v.serial.String()))
	case <-time.After(d):
	}
}

// qmp runs QMP commands in one session and returns the last reply.
func (v *vm) qmp(cmds ...map[string]any) json.RawMessage {
	v.t.Helper()
	var conn net.Conn
	var err error
	for range 200 {
		if conn, err = net.Dial("unix", v.qmpPath); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
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
			if reply.Return != nil {
				last = reply.Return
				break
			}
		}
	}
	return last
}

// The probe lines, each on a line of its own. The firmware's terminal
// may put escape sequences before a line, never inside it.
var (
	heartbeatRE = regexp.MustCompile(`tinyvm heartbeat ([0-9]+)\r\n`)
	bootRE      = regexp.MustCompile(`tinyvm boot ([0-9]+)\r\n`)
	disksRE     = regexp.MustCompile(`tinyvm disks ([0-9]+)\r\n`)
	volumeRE    = regexp.MustCompile(`tinyvm volume ([ -~]+?)\r\n`)
	idRE        = regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
)

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// lastHeartbeat is the highest heartbeat on out so far, or 0.
func lastHeartbeat(out string) int {
	m := heartbeatRE.FindAllStringSubmatch(out, -1)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[len(m)-1][1])
	return n
}

// lineTimes records when each heartbeat first appears on serial.
type lineTimes struct {
	mu sync.Mutex
	at map[int]time.Time
}

// watch polls v's serial and stamps each new heartbeat number until stop.
func (lt *lineTimes) watch(v *vm, stop <-chan struct{}) {
	for {
		now := time.Now()
		for _, m := range heartbeatRE.FindAllStringSubmatch(v.serial.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			lt.mu.Lock()
			if _, ok := lt.at[n]; !ok {
				lt.at[n] = now
			}
			lt.mu.Unlock()
		}
		select {
		case <-stop:
			return
		case <-v.done:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// forEachFirmware runs f as a subtest on each probe firmware.
func forEachFirmware(t *testing.T, f func(t *testing.T, fw probeFirmware)) {
	for _, fw := range probeFirmwares {
		t.Run(fw.name, func(t *testing.T) { f(t, fw) })
	}
}

// labelledISO makes an ISO 9660 image with volume label label, the way
// cloud-init's NoCloud seed is made, with xorriso.
func labelledISO(t *testing.T, label string) string {
	t.Helper()
	xorriso := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{"meta-data": "instance-id: tinyvm\n", "user-data": "#cloud-config\n"} {
		if err := os.WriteFile(filepath.Join(seed, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, label+".iso")
	if out, err := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", path, seed).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	return path
}

// allProbes turns on every probe.
var allProbes = sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}

// TestProbeLines boots every probe with a cidata CD: each line is a line
// of its own, matches the golden's regexp, and they come in the BIOS
// program's order (id, boot, disks, volume, then heartbeats).
func TestProbeLines(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Timeout: 3 * time.Second, Probes: sector.Probes{Heartbeat: 500 * time.Millisecond, Disks: true, BootCount: true, ID: true}}
		drives := append(fw.drive("d0", probeFile(t, o), "raw", 0), fw.cd(2, labelledISO(t, "cidata"))...)
		v := startVM(t, vmOptions{fw: fw, drives: drives})
		v.exits("--timeout 3s")
		out := v.serial.String()
		_, after, ok := strings.Cut(out, marker)
		if !ok {
			t.Fatalf("no marker: %q", tail(out))
		}
		want := []string{"tinyvm id " + o.ID(), "tinyvm boot 1", "tinyvm disks 1", "tinyvm volume cidata", "tinyvm heartbeat 1", "tinyvm heartbeat 2"}
		lines := strings.Split(after, "\r\n")
		if len(lines) < len(want) {
			t.Fatalf("lines after the marker %q, want %q first", lines, want)
		}
		for i, w := range want {
			if lines[i] != w {
				t.Errorf("line %d after the marker is %q, want %q", i, lines[i], w)
			}
		}
		for _, l := range lines[:len(lines)-1] {
			if !goldenMatch(t, l) {
				t.Errorf("line %q matches no regexp of testdata/probes/lines.txt", l)
			}
		}
	})
}

// goldenMatch reports whether line matches one of the regexps in
// testdata/probes/lines.txt, the versioned line format.
func goldenMatch(t *testing.T, line string) bool {
	t.Helper()
	b, err := os.ReadFile("../../../testdata/probes/lines.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "# "+sector.LinesVersion+"\n") {
		t.Fatalf("lines.txt is not %s", sector.LinesVersion)
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if re, ok := strings.CutPrefix(l, "re "); ok && regexp.MustCompile(re).MatchString(line) {
			return true
		}
	}
	return false
}

// TestProbeHeartbeatStopCont pauses the guest over QMP: the next
// heartbeat after cont is the next number, and the time between the two
// lines shows the pause.
func TestProbeHeartbeatStopCont(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}}
		v := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", probeFile(t, o), "raw", 0)})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 3\r\n`), "heartbeat before stop")
		lt := &lineTimes{at: map[int]time.Time{}}
		stop := make(chan struct{})
		go lt.watch(v, stop)
		v.qmp(map[string]any{"execute": "stop"})
		before := lastHeartbeat(v.serial.String())
		const pause = 4 * time.Second
		time.Sleep(pause)
		last := lastHeartbeat(v.serial.String())
		if last > before+1 {
			// One line may have been on its way when stop landed.
			t.Errorf("heartbeats went on while stopped: %d, then %d", before, last)
		}
		v.qmp(map[string]any{"execute": "cont"})
		v.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+2)), "heartbeats after cont")
		time.Sleep(100 * time.Millisecond) // let the watcher stamp it
		close(stop)
		lt.mu.Lock()
		defer lt.mu.Unlock()
		gap, next := lt.at[last+1].Sub(lt.at[last]), lt.at[last+2].Sub(lt.at[last+1])
		t.Logf("heartbeat %d, then %d after cont: gap %v, then %v to %d", last, last+1, gap, next, last+2)
		if gap < pause-200*time.Millisecond {
			t.Errorf("gap between heartbeat %d and %d is %v, want the %v pause in it", last, last+1, gap, pause)
		}
		if next >= gap {
			t.Errorf("the interval after the pause (%v) is no shorter than the gap (%v)", next, gap)
		}
		if out := v.serial.String(); strings.Count(out, fmt.Sprintf("tinyvm heartbeat %d\r\n", last+1)) != 1 {
			t.Errorf("heartbeat %d printed other than once: %q", last+1, tail(out))
		}
	})
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestProbeHeartbeatMigration live-migrates the guest between two QEMUs
// on loopback, each with its own firmware variables: the destination's
// first heartbeat continues the source's count.
func TestProbeHeartbeatMigration(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		path := probeFile(t, sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}})
		src := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", path, "raw", 0)})
		src.waitFor(regexp.MustCompile(`tinyvm heartbeat 2\r\n`), "source heartbeat")
		port := freePort(t)
		// The destination opens the same image: the source stops writing
		// before the switch, as with shared storage.
		dst := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", path, "raw", 0), incoming: fmt.Sprintf("tcp:127.0.0.1:%d", port)})
		for deadline := time.Now().Add(bootTimeout); ; {
			var st struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(dst.qmp(map[string]any{"execute": "query-status"}), &st); err != nil {
				t.Fatal(err)
			}
			if st.Status == "inmigrate" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the destination is %q, not waiting for the migration", st.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		src.qmp(map[string]any{"execute": "migrate", "arguments": map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", port)}})
		for deadline := time.Now().Add(3 * bootTimeout); ; {
			var st struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(src.qmp(map[string]any{"execute": "query-migrate"}), &st); err != nil {
				t.Fatal(err)
			}
			if st.Status == "completed" {
				break
			}
			if st.Status == "failed" || st.Status == "cancelled" || time.Now().After(deadline) {
				t.Fatalf("migration %s", st.Status)
			}
			time.Sleep(100 * time.Millisecond)
		}
		last := lastHeartbeat(src.serial.String())
		time.Sleep(time.Second) // the source is paused after migration
		if again := lastHeartbeat(src.serial.String()); again != last {
			t.Errorf("the source printed heartbeat %d after the migration completed at %d", again, last)
		}
		m := dst.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat (%d)\r\n`, last+1)), "destination heartbeat")
		if first := heartbeatRE.FindStringSubmatch(dst.serial.String()); first[1] != m[1] {
			t.Errorf("the destination's first heartbeat is %s, want %d, the one after the source's last", first[1], last+1)
		}
		if strings.Contains(dst.serial.String(), marker) {
			t.Errorf("the destination booted afresh (printed the marker): %q", tail(dst.serial.String()))
		}
		t.Logf("source stopped at heartbeat %d, destination went on with %s", last, m[1])
		dst.qmp(map[string]any{"execute": "system_powerdown"})
		dst.exits("power button on the destination")
	})
}

// bootOnce boots path until it powers off and returns its boot count.
func bootOnce(t *testing.T, o vmOptions, path, format string) int {
	t.Helper()
	o.drives = o.fw.drive("d0", path, format, 0)
	v := startVM(t, o)
	m := v.waitFor(bootRE, "bootcount")
	v.exits("--then poweroff")
	return atoi(t, m[1])
}

// imgTool runs qemu-img.
func imgTool(t *testing.T, args ...string) {
	t.Helper()
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	if out, err := exec.Command(img, args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// offlineCount reads the counter from any image qemu-img reads, as
// inspect does from a raw file.
func offlineCount(t *testing.T, path, format string) uint32 {
	t.Helper()
	raw := filepath.Join(t.TempDir(), "offline.raw")
	imgTool(t, "convert", "-f", format, "-O", "raw", path, raw)
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, ok, err := sector.ReadBootCount(f)
	if err != nil || !ok {
		t.Fatalf("ReadBootCount(%s) = %d, %v, %v", path, n, ok, err)
	}
	return n
}

// TestProbeBootCount boots the same disk repeatedly: the application's
// BlockIo writes count 1, 2; qemu-img snapshots and overlays give back the
// count they were taken at; and a BIOS boot and a UEFI boot of one disk
// count together.
func TestProbeBootCount(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		vo := vmOptions{fw: fw}
		t.Run("qcow2", func(t *testing.T) {
			base := filepath.Join(t.TempDir(), "disk.qcow2")
			f, err := os.Create(base)
			if err != nil {
				t.Fatal(err)
			}
			if err := qcow2.Write(f, probeDisk(t, o), qcow2.Options{}); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if n := bootOnce(t, vo, base, "qcow2"); n != 1 {
				t.Fatalf("first boot: tinyvm boot %d, want 1", n)
			}
			imgTool(t, "snapshot", "-c", "after1", base)
			if n := bootOnce(t, vo, base, "qcow2"); n != 2 {
				t.Errorf("second boot: tinyvm boot %d, want 2", n)
			}
			imgTool(t, "snapshot", "-a", "after1", base)
			if n := offlineCount(t, base, "qcow2"); n != 1 {
				t.Errorf("reverted to the snapshot after boot 1: count %d, want 1", n)
			}
			if n := bootOnce(t, vo, base, "qcow2"); n != 2 {
				t.Errorf("boot after the revert: tinyvm boot %d, want 2", n)
			}
			clone := filepath.Join(t.TempDir(), "clone.qcow2")
			imgTool(t, "create", "-f", "qcow2", "-b", base, "-F", "qcow2", clone)
			if n := bootOnce(t, vo, clone, "qcow2"); n != 3 {
				t.Errorf("the clone's boot: tinyvm boot %d, want 3", n)
			}
			if n := offlineCount(t, base, "qcow2"); n != 2 {
				t.Errorf("the clone's boot changed its base: count %d, want 2", n)
			}
		})
		t.Run("raw", func(t *testing.T) {
			path := probeFile(t, o)
			for want := 1; want <= 2; want++ {
				if n := bootOnce(t, vo, path, "raw"); n != want {
					t.Errorf("boot %d: tinyvm boot %d", want, n)
				}
			}
			if n := offlineCount(t, path, "raw"); n != 2 {
				t.Errorf("ReadBootCount after two boots: %d, want 2", n)
			}
		})
		if fw.arch != efi.AMD64 {
			return // SeaBIOS and SATA are x86's
		}
		t.Run("sata", func(t *testing.T) {
			// The device path runs through the AHCI port, not virtio.
			sata := fw
			sata.diskDevice = "ide-hd,bus=ide.0"
			if n := bootOnce(t, vmOptions{fw: sata}, probeFile(t, o), "raw"); n != 1 {
				t.Errorf("SATA boot disk: tinyvm boot %d, want 1", n)
			}
		})
		t.Run("bios-then-uefi", func(t *testing.T) {
			path := probeFile(t, o)
			if n := bootOnce(t, vmOptions{fw: fw, bios: true}, path, "raw"); n != 1 {
				t.Errorf("SeaBIOS boot: tinyvm boot %d, want 1", n)
			}
			if n := bootOnce(t, vo, path, "raw"); n != 2 {
				t.Errorf("%s boot after the SeaBIOS one: tinyvm boot %d, want 2", fw.name, n)
			}
		})
	})
}

func blankDisk(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestProbeDisks attaches 1, 2 and 3 more virtio disks without a boot
// index (the firmware connects only the boot order's devices; the
// application connects the rest) and, with the first, a cidata and a
// config-2 CD.
func TestProbeDisks(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		path := probeFile(t, sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}})
		var cidata, config2 string
		if fw.cdDevice != "" {
			cidata, config2 = labelledISO(t, "cidata"), labelledISO(t, "config-2")
		}
		for extra := 1; extra <= 3; extra++ {
			t.Run(fmt.Sprintf("%d-disks", extra+1), func(t *testing.T) {
				drives := fw.drive("d0", path, "raw", 0)
				for i := range extra {
					drives = append(drives, fw.drive(fmt.Sprintf("x%d", i), blankDisk(t), "raw", -1)...)
				}
				var want []string
				if extra == 1 && fw.cdDevice != "" {
					drives = append(append(drives, fw.cd(1, cidata)...), fw.cd(2, config2)...)
					want = []string{"cidata", "config-2"}
				}
				v := startVM(t, vmOptions{fw: fw, drives: drives})
				m := v.waitFor(disksRE, "disks")
				v.exits("--then poweroff")
				if got := atoi(t, m[1]); got != extra+1 {
					t.Errorf("tinyvm disks %d, want %d (CDs are not counted)", got, extra+1)
				}
				var got []string
				for _, m := range volumeRE.FindAllStringSubmatch(v.serial.String(), -1) {
					got = append(got, m[1])
				}
				if strings.Join(got, ",") != strings.Join(want, ",") {
					t.Errorf("volume lines %q, want %q; serial %q", got, want, tail(v.serial.String()))
				}
			})
		}
	})
}

// TestProbeEcho talks to the guest over a serial socket: what is sent
// comes back, and only the line "poweroff" powers it off.
func TestProbeEcho(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		o := sector.Options{Probes: sector.Probes{Echo: true}}
		v := startVM(t, vmOptions{fw: fw, socket: true, drives: fw.drive("d0", probeFile(t, o), "raw", 0)})
		v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)), "marker")
		if _, err := v.conn.Write([]byte("hello\r")); err != nil {
			t.Fatal(err)
		}
		v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)+`hello\r\n`), "echo")
		// Not a power-off: a longer word, the word inside a line, a prefix.
		for _, line := range []string{"poweroffx\r", "xpoweroff\r", "power\r"} {
			if _, err := v.conn.Write([]byte(line)); err != nil {
				t.Fatal(err)
			}
		}
		v.waitFor(regexp.MustCompile(`xpoweroff\r\npower\r\n`), "echo of the non-matching lines")
		v.alive(time.Second, "lines that are not exactly poweroff")
		// An LF ends a line too, as on BIOS (TestEchoARM64 ends it with CR).
		if _, err := v.conn.Write([]byte("poweroff\n")); err != nil {
			t.Fatal(err)
		}
		v.exits("the line poweroff")
		if !strings.HasSuffix(v.serial.String(), "power\r\npoweroff\n") {
			t.Errorf("poweroff was not echoed last: %q", tail(v.serial.String()))
		}
	})
}

// TestProbeIDBootOrder boots two disks, in both boot orders: the id
// printed is the one of the disk with bootindex 0.
func TestProbeIDBootOrder(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		a := sector.Options{Then: sector.PowerOff, Serial: new("disk A"), Probes: sector.Probes{ID: true}}
		b := sector.Options{Then: sector.PowerOff, Serial: new("disk B"), Probes: sector.Probes{ID: true}}
		if a.ID() == b.ID() {
			t.Fatalf("two option sets share id %s", a.ID())
		}
		pa, pb := probeFile(t, a), probeFile(t, b)
		for _, c := range []struct{ first, second, want string }{{pa, pb, a.ID()}, {pb, pa, b.ID()}} {
			// The second disk comes first on the bus, so the boot index,
			// not the bus order, decides.
			drives := append(fw.drive("d1", c.second, "raw", 1), fw.drive("d0", c.first, "raw", 0)...)
			v := startVM(t, vmOptions{fw: fw, drives: drives})
			m := v.waitFor(idRE, "id")
			v.exits("--then poweroff")
			if m[1] != c.want {
				t.Errorf("booted id %s, want %s (the disk with bootindex 0)", m[1], c.want)
			}
		}
	})
}

// TestProbesKeepBehaviourUEFI boots with every probe on: the power
// button and the timeout still power off, waiting stays idle, and a
// keyboard key is echoed instead of powering off; without echo a key
// still powers off.
func TestProbesKeepBehaviourUEFI(t *testing.T) {
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		t.Run("powerbutton-idle-key", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", probeFile(t, sector.Options{Probes: allProbes}), "raw", 0)})
			v.waitFor(regexp.MustCompile(`tinyvm heartbeat 2\r\n`), "heartbeat")
			idletest.Check(t, v.cmd.Process.Pid, 5*time.Second, "idle "+fw.name+" guest with every probe")
			v.qmp(map[string]any{"execute": "send-key", "arguments": map[string]any{"keys": []any{map[string]any{"type": "qcode", "data": "q"}}}})
			v.waitFor(regexp.MustCompile(`\r\nq`), "the keyboard key echoed")
			v.alive(time.Second, "a keyboard key with echo")
			v.qmp(map[string]any{"execute": "system_powerdown"})
			v.exits("system_powerdown")
		})
		t.Run("timeout", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", probeFile(t, sector.Options{Timeout: 3 * time.Second, Probes: allProbes}), "raw", 0)})
			v.waitFor(idRE, "id")
			v.exits("--timeout 3s")
		})
		t.Run("key-without-echo", func(t *testing.T) {
			p := allProbes
			p.Echo = false
			v := startVM(t, vmOptions{fw: fw, socket: true, drives: fw.drive("d0", probeFile(t, sector.Options{Probes: p}), "raw", 0)})
			v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
			if _, err := v.conn.Write([]byte("x")); err != nil {
				t.Fatal(err)
			}
			v.exits("a key without echo")
		})
	})
}

// TestProbeBootCountFailures: a read-only disk and a counter sector that
// is not ours print the error line, then the boot goes on (the id line
// follows), and the disk is left as it was.
func TestProbeBootCountFailures(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true, ID: true}}
	errLine := regexp.MustCompile(regexp.QuoteMeta(sector.LineError+sector.ErrLineBootCount) + `\r\n` + `tinyvm id ` + o.ID() + `\r\n`)
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		t.Run("readonly", func(t *testing.T) {
			path := probeFile(t, o)
			drives := fw.drive("d0", path, "raw", 0)
			drives[1] += ",readonly=on"
			v := startVM(t, vmOptions{fw: fw, drives: drives})
			v.waitFor(errLine, "bootcount on a read-only disk")
			v.exits("--then poweroff")
			if n := offlineCount(t, path, "raw"); n != 0 {
				t.Errorf("the read-only disk counts %d, want 0", n)
			}
		})
		t.Run("foreign-sector", func(t *testing.T) {
			path := probeFile(t, o)
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(make([]byte, sector.Size), sector.BootCountLBA*sector.Size); err != nil {
				t.Fatal(err)
			}
			f.Close()
			v := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", path, "raw", 0)})
			v.waitFor(errLine, "bootcount on a zeroed counter sector")
			v.exits("--then poweroff")
			if bootRE.MatchString(v.serial.String()) {
				t.Errorf("a count was printed for a foreign sector: %q", tail(v.serial.String()))
			}
		})
	})
}

// TestProbesThen runs the once-per-boot probes with --then halt and
// reboot: halt ignores the power button after its lines, and reboot
// restarts the firmware, whose next boot counts 2.
func TestProbesThen(t *testing.T) {
	p := sector.Probes{Disks: true, BootCount: true, ID: true}
	forEachFirmware(t, func(t *testing.T, fw probeFirmware) {
		t.Run("halt", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, drives: fw.drive("d0", probeFile(t, sector.Options{Then: sector.Halt, Probes: p}), "raw", 0)})
			v.waitFor(idRE, "id")
			v.qmp(map[string]any{"execute": "system_powerdown"})
			v.alive(3*time.Second, "--then halt after system_powerdown")
		})
		t.Run("reboot", func(t *testing.T) {
			v := startVM(t, vmOptions{fw: fw, reboot: true, drives: fw.drive("d0", probeFile(t, sector.Options{Then: sector.Reboot, Probes: p}), "raw", 0)})
			v.waitFor(regexp.MustCompile(`tinyvm boot 2\r\n`), "the count after a reboot")
			if n := strings.Count(v.serial.String(), "tinyvm boot 1\r\n"); n != 1 {
				t.Errorf("tinyvm boot 1 printed %d times, want once before the reboot", n)
			}
		})
	})
}
