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

// The AAVMF probe tests boot universal disks on QEMU's virt machine
// under TCG; every boot costs seconds, so each test boots few times.

// arm64ProbeDisk builds the universal disk as pkg/build composes it: the
// BIOS program (Partitioned, with the probes) in the MBR, its second
// stage and the boot counter in the gap before the ESP, and both EFI
// applications on the ESP.
func arm64ProbeDisk(t *testing.T, o sector.Options) disk.Disk {
	t.Helper()
	o.Layout = sector.Partitioned
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	var opts []universal.Option
	for _, r := range s.Reserved() {
		opts = append(opts, universal.WithReserved(r.LBA, r.Data))
	}
	var files []fat.File
	for _, arch := range efi.Arches {
		app, err := efi.Build(o, arch)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fat.File{Path: arch.BootPath(), Data: app})
	}
	d, err := universal.New(s.Code(), files, 1<<20, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// arm64WriteRaw writes d to a raw file.
func arm64WriteRaw(t *testing.T, d disk.Disk) string {
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

// arm64ProbeFile writes arm64ProbeDisk as a raw file.
func arm64ProbeFile(t *testing.T, o sector.Options) string {
	t.Helper()
	return arm64WriteRaw(t, arm64ProbeDisk(t, o))
}

// arm64VM is one qemu-system-aarch64 on virt with AAVMF, its serial
// captured and QMP on a socket: the probe tests need several disks, a
// serial socket and migration, which qemu.Options does not describe.
type arm64VM struct {
	t       *testing.T
	cmd     *exec.Cmd
	serial  *qemu.Capture
	qmpPath string
	done    chan struct{}
	err     error
	conn    net.Conn // the serial socket, when asked for
}

// arm64Options are the parts of a probe boot's command line.
type arm64Options struct {
	drives   []string // -drive and -device pairs, already written
	incoming string   // -incoming URI
	socket   bool     // serial on a unix socket instead of stdio
	x86      bool     // qemu-system-x86_64 with SeaBIOS on q35 instead
}

// arm64Start starts QEMU with its own copy of the firmware's variables,
// as migration needs; Cleanup kills it.
func arm64Start(t *testing.T, o arm64Options) *arm64VM {
	t.Helper()
	dir := t.TempDir()
	v := &arm64VM{t: t, serial: qemu.NewCapture(), qmpPath: filepath.Join(dir, "qmp.sock"), done: make(chan struct{})}
	var bin string
	var args []string
	if o.x86 {
		bin = tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
		args = []string{"-machine", "q35", "-m", "64"}
	} else {
		bin = tooltest.Require(t, qemu.BinaryARM, tooltest.QemuSystemARM)
		code := tooltest.RequireFile(t, qemu.AAVMFCode, tooltest.AAVMF)
		vars, err := os.ReadFile(tooltest.RequireFile(t, qemu.AAVMFVars, tooltest.AAVMF))
		if err != nil {
			t.Fatal(err)
		}
		own := filepath.Join(dir, "vars.fd")
		if err := os.WriteFile(own, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		args = []string{"-machine", "virt", "-cpu", "cortex-a57", "-m", "128",
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + code,
			"-drive", "if=pflash,format=raw,unit=1,file=" + own}
	}
	args = append(args, "-accel", "tcg", "-display", "none", "-monitor", "none", "-no-reboot",
		"-qmp", "unix:"+v.qmpPath+",server=on,wait=off")
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
	v.cmd = exec.CommandContext(ctx, bin, args...)
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
func (v *arm64VM) waitFor(re *regexp.Regexp, why string) []string {
	v.t.Helper()
	deadline := time.Now().Add(2 * bootTimeout)
	for {
		out := v.serial.String()
		if m := re.FindAllStringSubmatch(out, -1); m != nil {
			return m[len(m)-1]
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("%s: no %v on serial within %v; got %q", why, re, 2*bootTimeout, tail(out))
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
func (v *arm64VM) exits(why string) {
	v.t.Helper()
	select {
	case <-v.done:
		if v.err != nil {
			v.t.Fatalf("%s: qemu failed: %v", why, v.err)
		}
	case <-time.After(bootTimeout):
		v.t.Fatalf("%s: the guest did not power off within %v; serial %q", why, bootTimeout, tail(v.serial.String()))
	}
}

// alive fails if QEMU ends within d.
func (v *arm64VM) alive(d time.Duration, why string) {
	v.t.Helper()
	select {
	case <-v.done:
		v.t.Fatalf("%s: the guest stopped (%v), want it running; serial %q", why, v.err, tail(v.serial.String()))
	case <-time.After(d):
	}
}

// qmp runs QMP commands in one session and returns the last reply.
func (v *arm64VM) qmp(cmds ...map[string]any) json.RawMessage {
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

// status is the run state QMP query-status reports.
func (v *arm64VM) status() string {
	v.t.Helper()
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(v.qmp(map[string]any{"execute": "query-status"}), &st); err != nil {
		v.t.Fatal(err)
	}
	return st.Status
}

// arm64Drive attaches path as a virtio disk, with bootindex when index
// is not negative.
func arm64Drive(id, path, format string, index int, extra string) []string {
	dev := "virtio-blk-pci,drive=" + id
	if index >= 0 {
		dev += ",bootindex=" + strconv.Itoa(index)
	}
	return []string{"-drive", "file=" + path + ",format=" + format + ",if=none,id=" + id + extra, "-device", dev}
}

// arm64CD attaches an ISO as a SCSI CD-ROM, virt having no IDE.
func arm64CD(id, path string) []string {
	return []string{"-drive", "file=" + path + ",format=raw,if=none,id=" + id + ",media=cdrom,readonly=on",
		"-device", "virtio-scsi-pci,id=scsi" + id, "-device", "scsi-cd,drive=" + id + ",bus=scsi" + id + ".0"}
}

var (
	arm64HeartbeatRE = regexp.MustCompile(`tinyvm heartbeat ([0-9]+)\r\n`)
	arm64BootRE      = regexp.MustCompile(`tinyvm boot ([0-9]+)\r\n`)
	arm64DisksRE     = regexp.MustCompile(`tinyvm disks ([0-9]+)\r\n`)
	arm64VolumeRE    = regexp.MustCompile(`tinyvm volume ([ -~]+)\r\n`)
	arm64IDRE        = regexp.MustCompile(`tinyvm id ([0-9a-f]{8})\r\n`)
)

func arm64Atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// arm64LastHeartbeat is the highest heartbeat on serial so far, 0 if none.
func arm64LastHeartbeat(t *testing.T, v *arm64VM) int {
	m := arm64HeartbeatRE.FindAllStringSubmatch(v.serial.String(), -1)
	if m == nil {
		return 0
	}
	return arm64Atoi(t, m[len(m)-1][1])
}

// arm64ISO makes an ISO 9660 image labelled label with xorriso, as a
// NoCloud seed or a config drive is made.
func arm64ISO(t *testing.T, label string) string {
	t.Helper()
	xorriso := tooltest.Require(t, "xorriso", tooltest.Xorriso)
	dir := t.TempDir()
	seed := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seed, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seed, "meta-data"), []byte("instance-id: tinyvm\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, label+".iso")
	if out, err := exec.Command(xorriso, "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", path, seed).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	return path
}

// arm64Blank writes a zero-filled raw disk of 1 MiB.
func arm64Blank(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDisksARM64 attaches 1, 2 and 3 more virtio disks and labelled ISOs
// (a cidata CD, a config-2 CD and a config-2 virtio disk, none with a
// bootindex): the count is the virtio disks, CDs excluded, and each
// label prints once. The first boot also checks the boot lines' order.
func TestDisksARM64(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true, BootCount: true, ID: true}}
	path := arm64ProbeFile(t, o)
	cidata, config2 := arm64ISO(t, "cidata"), arm64ISO(t, "config-2")
	for _, c := range []struct {
		name  string
		extra int      // blank virtio disks
		more  []string // the ISO's drive
		disks int
		label string
	}{
		{"1-disk-cidata-cd", 1, arm64CD("cd", cidata), 2, "cidata"},
		{"2-disks-config-2-cd", 2, arm64CD("cd", config2), 3, "config-2"},
		{"3-disks-config-2-disk", 2, arm64Drive("iso", config2, "raw", -1, ",readonly=on"), 4, "config-2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			drives := arm64Drive("d0", path, "raw", 0, "")
			for i := range c.extra {
				drives = append(drives, arm64Drive(fmt.Sprintf("x%d", i), arm64Blank(t), "raw", -1, "")...)
			}
			v := arm64Start(t, arm64Options{drives: append(drives, c.more...)})
			v.waitFor(arm64IDRE, "id")
			v.exits("--then poweroff")
			out := v.serial.String()
			if m := arm64DisksRE.FindStringSubmatch(out); m == nil || arm64Atoi(t, m[1]) != c.disks {
				t.Errorf("disks line %q, want tinyvm disks %d", m, c.disks)
			}
			if vols := arm64VolumeRE.FindAllStringSubmatch(out, -1); len(vols) != 1 || vols[0][1] != c.label {
				t.Errorf("volume lines %q, want one for %s; serial %q", vols, c.label, tail(out))
			}
			if c.extra == 1 {
				// The BIOS program's order: marker, id, boot, disks, volumes.
				want := marker + "tinyvm id " + o.ID() + "\r\ntinyvm boot 1\r\ntinyvm disks 2\r\ntinyvm volume cidata\r\n"
				if !strings.Contains(out, want) {
					t.Errorf("serial does not hold %q: %q", want, tail(out))
				}
			}
		})
	}
}

// arm64Heartbeats stamps each heartbeat number when it first appears.
type arm64Heartbeats struct {
	mu sync.Mutex
	at map[int]time.Time
}

func (h *arm64Heartbeats) watch(v *arm64VM, stop <-chan struct{}) {
	for {
		now := time.Now()
		for _, m := range arm64HeartbeatRE.FindAllStringSubmatch(v.serial.String(), -1) {
			n, _ := strconv.Atoi(m[1])
			h.mu.Lock()
			if _, ok := h.at[n]; !ok {
				h.at[n] = now
			}
			h.mu.Unlock()
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

// TestHeartbeatStopContARM64 pauses the guest over QMP: no heartbeat
// while stopped, the next number after cont, and the pause visible as
// the gap between the two lines.
func TestHeartbeatStopContARM64(t *testing.T) {
	o := sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}}
	v := arm64Start(t, arm64Options{drives: arm64Drive("d0", arm64ProbeFile(t, o), "raw", 0, "")})
	v.waitFor(regexp.MustCompile(`tinyvm heartbeat 3\r\n`), "heartbeat before stop")
	h := &arm64Heartbeats{at: map[int]time.Time{}}
	stop := make(chan struct{})
	go h.watch(v, stop)
	v.qmp(map[string]any{"execute": "stop"})
	before := arm64LastHeartbeat(t, v)
	const pause = 4 * time.Second
	time.Sleep(pause)
	last := arm64LastHeartbeat(t, v)
	if last > before+1 { // one line may have been on its way
		t.Errorf("heartbeats went on while stopped: %d, then %d", before, last)
	}
	v.qmp(map[string]any{"execute": "cont"})
	v.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+2)), "heartbeats after cont")
	time.Sleep(100 * time.Millisecond) // let the watcher stamp it
	close(stop)
	h.mu.Lock()
	defer h.mu.Unlock()
	gap, next := h.at[last+1].Sub(h.at[last]), h.at[last+2].Sub(h.at[last+1])
	t.Logf("heartbeat %d, then %d after cont: gap %v, then %v to %d", last, last+1, gap, next, last+2)
	if gap < pause-200*time.Millisecond {
		t.Errorf("gap between heartbeat %d and %d is %v, want the %v pause in it", last, last+1, gap, pause)
	}
	if next >= gap {
		t.Errorf("the interval after the gap (%v) is no shorter than the gap (%v)", next, gap)
	}
	// Every number once, in order, each a line of its own after the
	// marker: nothing from the firmware's terminal between them.
	want := marker
	for n := 1; n <= last+2; n++ {
		want += fmt.Sprintf("tinyvm heartbeat %d\r\n", n)
	}
	if !strings.Contains(v.serial.String(), want) {
		t.Errorf("serial does not hold %q: %q", want, tail(v.serial.String()))
	}
}

// arm64FreePort returns a loopback TCP port that was free a moment ago.
func arm64FreePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestHeartbeatMigrationARM64 live-migrates the guest between two QEMUs
// on loopback, each with the same AAVMF code and its own variables
// file: the destination's heartbeats continue the source's count.
func TestHeartbeatMigrationARM64(t *testing.T) {
	path := arm64ProbeFile(t, sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}})
	src := arm64Start(t, arm64Options{drives: arm64Drive("d0", path, "raw", 0, "")})
	src.waitFor(regexp.MustCompile(`tinyvm heartbeat 2\r\n`), "source heartbeat")
	port := arm64FreePort(t)
	// The destination opens the same image, as with shared storage: the
	// source stops writing before the switch.
	dst := arm64Start(t, arm64Options{drives: arm64Drive("d0", path, "raw", 0, ""), incoming: fmt.Sprintf("tcp:127.0.0.1:%d", port)})
	for deadline := time.Now().Add(bootTimeout); dst.status() != "inmigrate"; {
		if time.Now().After(deadline) {
			t.Fatalf("the destination is not waiting for the migration")
		}
		time.Sleep(100 * time.Millisecond)
	}
	src.qmp(map[string]any{"execute": "migrate", "arguments": map[string]any{"uri": fmt.Sprintf("tcp:127.0.0.1:%d", port)}})
	for deadline := time.Now().Add(2 * bootTimeout); ; {
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
	last := arm64LastHeartbeat(t, src)
	time.Sleep(time.Second) // the source stays paused after migrating
	if again := arm64LastHeartbeat(t, src); again != last {
		t.Errorf("the source printed heartbeat %d after the migration completed at %d", again, last)
	}
	dst.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+1)), "destination heartbeat")
	if first := arm64HeartbeatRE.FindStringSubmatch(dst.serial.String()); arm64Atoi(t, first[1]) != last+1 {
		t.Errorf("the destination's first heartbeat is %s, want %d, the one after the source's last", first[1], last+1)
	}
	if strings.Contains(dst.serial.String(), marker) {
		t.Errorf("the destination booted afresh (printed the marker): %q", tail(dst.serial.String()))
	}
	t.Logf("source stopped at heartbeat %d, the destination went on with %d", last, last+1)
	dst.qmp(map[string]any{"execute": "system_powerdown"})
	dst.exits("power button on the destination")
}

// arm64WriteQcow2 writes d as a qcow2 file with pkg/formats/qcow2.
func arm64WriteQcow2(t *testing.T, d disk.Disk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := qcow2.Write(f, d, qcow2.Options{}); err != nil {
		t.Fatal(err)
	}
	return path
}

// arm64BootCount boots path until it powers off and returns its count,
// on AAVMF or, with x86, on SeaBIOS.
func arm64BootCount(t *testing.T, path, format string, x86 bool) int {
	t.Helper()
	v := arm64Start(t, arm64Options{x86: x86, drives: arm64Drive("d0", path, format, 0, "")})
	m := v.waitFor(arm64BootRE, "bootcount")
	v.exits("--then poweroff")
	return arm64Atoi(t, m[1])
}

// arm64Img runs qemu-img.
func arm64Img(t *testing.T, args ...string) {
	t.Helper()
	img := tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	if out, err := exec.Command(img, args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// arm64Offline reads the counter from a raw file, as inspect does.
func arm64Offline(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path)
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

// TestBootCountARM64 counts boots through BlockIo: a raw disk booted on
// SeaBIOS and then on AAVMF counts 1 then 2 in the one sector both
// programs use; a qcow2 counts 1, 2, a qemu-img overlay made then goes on
// from 2, and reverting to a snapshot taken after boot 1 counts 2 again.
func TestBootCountARM64(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	d := arm64ProbeDisk(t, o)
	t.Run("raw-bios-then-uefi", func(t *testing.T) {
		path := arm64WriteRaw(t, d)
		if n := arm64Offline(t, path); n != 0 {
			t.Fatalf("a fresh disk counts %d, want 0", n)
		}
		if got := arm64BootCount(t, path, "raw", true); got != 1 {
			t.Fatalf("SeaBIOS boot: tinyvm boot %d, want 1", got)
		}
		if got := arm64BootCount(t, path, "raw", false); got != 2 {
			t.Fatalf("AAVMF boot after the SeaBIOS one: tinyvm boot %d, want 2", got)
		}
		if n := arm64Offline(t, path); n != 2 {
			t.Errorf("after two boots the file counts %d, want 2", n)
		}
	})
	t.Run("qcow2", func(t *testing.T) {
		path := arm64WriteQcow2(t, d)
		if got := arm64BootCount(t, path, "qcow2", false); got != 1 {
			t.Fatalf("first boot: %d, want 1", got)
		}
		arm64Img(t, "snapshot", "-c", "after1", path)
		if got := arm64BootCount(t, path, "qcow2", false); got != 2 {
			t.Fatalf("second boot: %d, want 2", got)
		}
		clone := filepath.Join(t.TempDir(), "clone.qcow2")
		arm64Img(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", path, clone)
		if got := arm64BootCount(t, clone, "qcow2", false); got != 3 {
			t.Errorf("the clone's first boot: %d, want 3", got)
		}
		arm64Img(t, "snapshot", "-a", "after1", path)
		if got := arm64BootCount(t, path, "qcow2", false); got != 2 {
			t.Errorf("after reverting to the snapshot taken after boot 1: %d, want 2", got)
		}
	})
}

// TestBootCountFailsARM64 boots disks whose counter cannot be used: a
// read-only drive and a wiped counter sector print the error line and
// still power off.
func TestBootCountFailsARM64(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	wiped := arm64ProbeFile(t, o)
	f, err := os.OpenFile(wiped, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, disk.SectorSize), sector.BootCountLBA*disk.SectorSize); err != nil {
		t.Fatal(err)
	}
	f.Close()
	for name, drives := range map[string][]string{
		"read-only": arm64Drive("d0", arm64ProbeFile(t, o), "raw", 0, ",readonly=on"),
		"wiped":     arm64Drive("d0", wiped, "raw", 0, ""),
	} {
		t.Run(name, func(t *testing.T) {
			v := arm64Start(t, arm64Options{drives: drives})
			v.waitFor(regexp.MustCompile(`tinyvm error bootcount\r\n`), name)
			v.exits("--then poweroff")
			if arm64BootRE.MatchString(v.serial.String()) {
				t.Errorf("a boot line besides the error: %q", tail(v.serial.String()))
			}
		})
	}
}

// TestEchoARM64 talks to the guest over a serial socket: what is sent
// comes back, CR as CR LF, and only the line "poweroff", ended by CR or
// LF, powers off.
func TestEchoARM64(t *testing.T) {
	o := sector.Options{Probes: sector.Probes{Echo: true}}
	v := arm64Start(t, arm64Options{socket: true, drives: arm64Drive("d0", arm64ProbeFile(t, o), "raw", 0, "")})
	v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)), "marker")
	if _, err := v.conn.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)+`hello\r\n`), "echo")
	for _, line := range []string{"poweroffx\r", "xpoweroff\r", "power\r"} {
		if _, err := v.conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	v.waitFor(regexp.MustCompile(`\r\npower\r\n`), "echo of the lines that do not match")
	v.alive(time.Second, "lines that are not exactly poweroff")
	// An LF ends a line too, as on BIOS: "x" is a line of its own, so
	// the next one is exactly poweroff.
	if _, err := v.conn.Write([]byte("x\npoweroff\r")); err != nil {
		t.Fatal(err)
	}
	v.exits("the line poweroff")
	if !strings.Contains(v.serial.String(), "\r\nx\npoweroff\r\n") {
		t.Errorf("poweroff was not echoed: %q", tail(v.serial.String()))
	}
}

// TestIDBootOrderARM64 boots two disks in both boot orders: the id
// printed is that of the disk with bootindex 0.
func TestIDBootOrderARM64(t *testing.T) {
	a := sector.Options{Then: sector.PowerOff, Serial: new("disk A"), Probes: sector.Probes{ID: true}}
	b := sector.Options{Then: sector.PowerOff, Serial: new("disk B"), Probes: sector.Probes{ID: true}}
	if a.ID() == b.ID() {
		t.Fatalf("two option sets share id %s", a.ID())
	}
	pa, pb := arm64ProbeFile(t, a), arm64ProbeFile(t, b)
	for _, c := range []struct{ first, second, want string }{{pa, pb, a.ID()}, {pb, pa, b.ID()}} {
		drives := append(arm64Drive("d1", c.second, "raw", 1, ""), arm64Drive("d0", c.first, "raw", 0, "")...)
		v := arm64Start(t, arm64Options{drives: drives})
		m := v.waitFor(arm64IDRE, "id")
		v.exits("--then poweroff")
		if m[1] != c.want {
			t.Errorf("booted id %s, want %s (the disk with bootindex 0)", m[1], c.want)
		}
	}
}

// arm64AllProbes turns on every probe.
var arm64AllProbes = sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}

// TestProbesKeepBehaviourARM64 boots with every probe on: waiting stays
// idle and the power button powers off; the timeout still ends the wait;
// --then halt and reboot still do with the boot-time probes.
func TestProbesKeepBehaviourARM64(t *testing.T) {
	t.Run("idle-powerbutton", func(t *testing.T) {
		v := arm64Start(t, arm64Options{drives: arm64Drive("d0", arm64ProbeFile(t, sector.Options{Probes: arm64AllProbes}), "raw", 0, "")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		idletest.Check(t, v.cmd.Process.Pid, 4*time.Second, "idle AAVMF guest with every probe on")
		v.qmp(map[string]any{"execute": "system_powerdown"})
		v.exits("system_powerdown")
	})
	t.Run("powerbutton-acpi-off", func(t *testing.T) {
		// Without ACPI the button is the PL061's line 3.
		v := arm64Start(t, arm64Options{drives: append(arm64Drive("d0", arm64ProbeFile(t, sector.Options{Probes: arm64AllProbes}), "raw", 0, ""),
			"-machine", "virt,acpi=off")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		if got := string(v.qmp(map[string]any{"execute": "qom-get", "arguments": map[string]any{"path": "/machine", "property": "acpi"}})); got != `"off"` {
			t.Fatalf("the machine's acpi property is %s, want off", got)
		}
		v.qmp(map[string]any{"execute": "system_powerdown"})
		v.exits("system_powerdown on the PL061")
	})
	t.Run("timeout", func(t *testing.T) {
		o := sector.Options{Timeout: 3 * time.Second, Probes: arm64AllProbes}
		v := arm64Start(t, arm64Options{drives: arm64Drive("d0", arm64ProbeFile(t, o), "raw", 0, "")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		v.exits("--timeout 3s")
		out := v.serial.String()
		if n := len(arm64HeartbeatRE.FindAllString(out, -1)); n != 2 {
			// The timeout's tick 30 comes before heartbeat 3, as on BIOS.
			t.Errorf("%d heartbeats in a 3s timeout with a 1s heartbeat, want 2: %q", n, tail(out))
		}
		for _, re := range []*regexp.Regexp{arm64DisksRE, arm64BootRE, arm64IDRE} {
			if !re.MatchString(out) {
				t.Errorf("no %v: %q", re, tail(out))
			}
		}
	})
	t.Run("serial-key-without-echo", func(t *testing.T) {
		p := arm64AllProbes
		p.Echo = false
		v := arm64Start(t, arm64Options{socket: true, drives: arm64Drive("d0", arm64ProbeFile(t, sector.Options{Probes: p}), "raw", 0, "")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		if _, err := v.conn.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		v.exits("a key on the serial console without echo")
	})
	t.Run("usb-keyboard-with-echo", func(t *testing.T) {
		// UEFI's ConIn merges the keyboard with the serial terminal: with
		// echo a keyboard key is echoed too and no longer powers off.
		drives := append(arm64Drive("d0", arm64ProbeFile(t, sector.Options{Probes: arm64AllProbes}), "raw", 0, ""),
			"-device", "qemu-xhci,id=usb", "-device", "usb-kbd,bus=usb.0")
		v := arm64Start(t, arm64Options{drives: drives})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		v.qmp(map[string]any{"execute": "send-key", "arguments": map[string]any{"keys": []map[string]string{{"type": "qcode", "data": "q"}}}})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat [0-9]+\r\nq`), "the key's echo")
		v.alive(time.Second, "a keyboard key with echo")
		v.qmp(map[string]any{"execute": "system_powerdown"})
		v.exits("system_powerdown")
	})
	for _, then := range []sector.Then{sector.Halt, sector.Reboot} {
		t.Run(string(then), func(t *testing.T) {
			p := arm64AllProbes
			p.Heartbeat, p.Echo = 0, false
			v := arm64Start(t, arm64Options{drives: arm64Drive("d0", arm64ProbeFile(t, sector.Options{Then: then, Probes: p}), "raw", 0, "")})
			v.waitFor(arm64IDRE, "id line")
			if then == sector.Reboot {
				v.exits("--then reboot under -no-reboot")
				return
			}
			v.qmp(map[string]any{"execute": "system_powerdown"})
			v.alive(2*time.Second, "--then halt ignores the power button")
		})
	}
}
