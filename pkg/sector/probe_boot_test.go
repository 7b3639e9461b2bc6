package sector_test

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
)

// probeDisk builds the universal disk with the program's second stage
// and boot counter in the gap before the ESP, as the build will.
func probeDisk(t *testing.T, o sector.Options) disk.Disk {
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
	files := []fat.File{{Path: "EFI/BOOT/README.TXT", Data: []byte("BIOS boots the MBR\r\n")}}
	d, err := universal.New(s.Code(), files, 1<<20, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// probeFile writes probeDisk as a raw file.
func probeFile(t *testing.T, o sector.Options) string {
	t.Helper()
	return writeRaw(t, probeDisk(t, o))
}

// vm is one QEMU with its serial captured and QMP on a socket: the probe
// tests need several disks, a serial socket and migration, which
// qemu.Options does not describe.
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
	machine  string   // pc (default) or q35
	drives   []string // -drive and -device pairs, already written
	incoming string   // -incoming URI
	socket   bool     // serial on a unix socket instead of stdio
}

// startVM starts QEMU; Cleanup kills it.
func startVM(t *testing.T, o vmOptions) *vm {
	t.Helper()
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	dir := t.TempDir()
	machine := o.machine
	if machine == "" {
		machine = "pc"
	}
	v := &vm{t: t, serial: qemu.NewCapture(), qmpPath: filepath.Join(dir, "qmp.sock"), done: make(chan struct{})}
	args := []string{"-machine", machine, "-accel", "tcg", "-display", "none", "-monitor", "none", "-m", "64", "-no-reboot",
		"-qmp", "unix:" + v.qmpPath + ",server=on,wait=off"}
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
	v.cmd = exec.CommandContext(ctx, qemu.Binary, args...)
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
		for i := 0; i < 200; i++ {
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

// waitFor waits for the serial output to match re, and returns the
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
			v.t.Fatalf("%s: no %v on serial within %v; got %q", why, re, 3*bootTimeout, out)
		}
		select {
		case <-v.done:
			if m := re.FindAllStringSubmatch(v.serial.String(), -1); m != nil {
				return m[len(m)-1]
			}
			v.t.Fatalf("%s: qemu ended (%v) without %v; got %q", why, v.err, re, v.serial.String())
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
		v.t.Fatalf("%s: the guest did not power off within %v; serial %q", why, 3*bootTimeout, v.serial.String())
	}
}

// qmp runs QMP commands in one session and returns the last reply.
func (v *vm) qmp(cmds ...map[string]any) json.RawMessage {
	v.t.Helper()
	var conn net.Conn
	var err error
	for i := 0; i < 200; i++ {
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

// bootDrive attaches path as the boot disk on the machine's usual bus.
func bootDrive(path, format string) []string {
	return []string{"-drive", "file=" + path + ",format=" + format + ",if=none,id=d0",
		"-device", "virtio-blk-pci,drive=d0,bootindex=0"}
}

var (
	heartbeatRE = regexp.MustCompile(`tinyvm heartbeat ([0-9]+)\r\n`)
	bootRE      = regexp.MustCompile(`tinyvm boot ([0-9]+)\r\n`)
	disksRE     = regexp.MustCompile(`tinyvm disks ([0-9]+)\r\n`)
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

// lineTimes records when each heartbeat first appears on serial.
type lineTimes struct {
	mu sync.Mutex
	at map[int]time.Time
}

// watchHeartbeats polls v's serial and stamps each new heartbeat number.
func watchHeartbeats(v *vm, lt *lineTimes, stop <-chan struct{}) {
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

// TestHeartbeatStopCont pauses the guest over QMP: the next heartbeat
// after cont is the next number, and the time between the two lines
// shows the pause.
func TestHeartbeatStopCont(t *testing.T) {
	v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}}), "raw")})
	v.waitFor(regexp.MustCompile(`tinyvm heartbeat 3\r\n`), "heartbeat before stop")
	lt := &lineTimes{at: map[int]time.Time{}}
	stop := make(chan struct{})
	go watchHeartbeats(v, lt, stop)
	v.qmp(map[string]any{"execute": "stop"})
	paused := time.Now()
	before := atoi(t, heartbeatRE.FindAllStringSubmatch(v.serial.String(), -1)[len(heartbeatRE.FindAllStringSubmatch(v.serial.String(), -1))-1][1])
	const pause = 4 * time.Second
	time.Sleep(pause)
	during := heartbeatRE.FindAllStringSubmatch(v.serial.String(), -1)
	if got := atoi(t, during[len(during)-1][1]); got > before+1 {
		// One line may have been on its way when stop landed.
		t.Errorf("heartbeats went on while stopped: %d, then %d", before, got)
	}
	last := atoi(t, during[len(during)-1][1])
	v.qmp(map[string]any{"execute": "cont"})
	m := v.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat (%d)\r\n`, last+1)), "heartbeat after cont")
	if atoi(t, m[1]) != last+1 {
		t.Fatalf("after cont: heartbeat %s, want %d", m[1], last+1)
	}
	v.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat %d\r\n`, last+2)), "the heartbeat after that")
	time.Sleep(100 * time.Millisecond) // let the watcher stamp it
	close(stop)
	lt.mu.Lock()
	defer lt.mu.Unlock()
	gap, next := lt.at[last+1].Sub(lt.at[last]), lt.at[last+2].Sub(lt.at[last+1])
	t.Logf("heartbeat %d at +%v before the stop, %d after cont: gap %v, then %v to %d", last, lt.at[last].Sub(paused), last+1, gap, next, last+2)
	// The watcher stamps a line within its 20 ms poll, so the pause shows
	// whole but for that slack; the next interval is an ordinary one.
	if gap < pause-200*time.Millisecond {
		t.Errorf("gap between heartbeat %d and %d is %v, want the %v pause in it", last, last+1, gap, pause)
	}
	if next >= gap {
		t.Errorf("the gap after the pause (%v) is no longer than an ordinary one (%v)", gap, next)
	}
	if out := v.serial.String(); strings.Count(out, fmt.Sprintf("tinyvm heartbeat %d\r\n", last+1)) != 1 {
		t.Errorf("heartbeat %d printed more than once: %q", last+1, out)
	}
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

// TestHeartbeatMigration live-migrates the guest between two QEMUs on
// loopback: the destination's first heartbeat continues the source's
// count.
func TestHeartbeatMigration(t *testing.T) {
	path := probeFile(t, sector.Options{Probes: sector.Probes{Heartbeat: 500 * time.Millisecond}})
	src := startVM(t, vmOptions{drives: bootDrive(path, "raw")})
	src.waitFor(regexp.MustCompile(`tinyvm heartbeat 2\r\n`), "source heartbeat")
	port := freePort(t)
	// The destination opens the same image: the source stops writing
	// before the switch, as with shared storage.
	dst := startVM(t, vmOptions{drives: bootDrive(path, "raw"), incoming: fmt.Sprintf("tcp:127.0.0.1:%d", port)})
	// Wait until the destination listens: its run state is inmigrate.
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
	deadline := time.Now().Add(3 * bootTimeout)
	for {
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
	srcLines := heartbeatRE.FindAllStringSubmatch(src.serial.String(), -1)
	last := atoi(t, srcLines[len(srcLines)-1][1])
	time.Sleep(time.Second) // the source is paused after migration
	if again := heartbeatRE.FindAllStringSubmatch(src.serial.String(), -1); len(again) != len(srcLines) {
		t.Errorf("the source printed heartbeats after the migration completed")
	}
	m := dst.waitFor(regexp.MustCompile(fmt.Sprintf(`tinyvm heartbeat (%d)\r\n`, last+1)), "destination heartbeat")
	first := heartbeatRE.FindStringSubmatch(dst.serial.String())
	if first[1] != m[1] {
		t.Errorf("the destination's first heartbeat is %s, want %d, the one after the source's last", first[1], last+1)
	}
	if strings.Contains(dst.serial.String(), marker) {
		t.Errorf("the destination booted afresh (printed the marker): %q", dst.serial.String())
	}
	t.Logf("source stopped at heartbeat %d, destination went on with %s", last, m[1])
	dst.qmp(map[string]any{"execute": "system_powerdown"})
	dst.exits("power button on the destination")
}

// writeQcow2 writes d as a qcow2 file with pkg/formats/qcow2.
func writeQcow2(t *testing.T, d disk.Disk, compress bool) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.qcow2")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := qcow2.Write(f, d, qcow2.Options{Compress: compress}); err != nil {
		t.Fatal(err)
	}
	return path
}

// bootOnce boots path until it powers off and returns its boot count.
func bootOnce(t *testing.T, path, format string) int {
	t.Helper()
	v := startVM(t, vmOptions{machine: "q35", drives: bootDrive(path, format)})
	m := v.waitFor(bootRE, "bootcount")
	v.exits("--then poweroff")
	return atoi(t, m[1])
}

// imgTool runs qemu-img.
func imgTool(t *testing.T, args ...string) {
	t.Helper()
	tooltest.Require(t, "qemu-img", tooltest.QemuUtils)
	if out, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// offlineCount reads the counter from a raw file, as inspect will.
func offlineCount(t *testing.T, path string) uint32 {
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

// TestBootCount boots the same disk repeatedly: the guest's own int 13h
// writes count 1, 2, ...; qemu-img snapshots and overlays give back the
// count they were taken at, and the raw file's counter reads offline.
func TestBootCount(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	d := probeDisk(t, o)
	t.Run("raw", func(t *testing.T) {
		path := writeRaw(t, d)
		if n := offlineCount(t, path); n != 0 {
			t.Fatalf("a fresh disk counts %d, want 0", n)
		}
		for want := 1; want <= 3; want++ {
			if got := bootOnce(t, path, "raw"); got != want {
				t.Fatalf("boot %d printed tinyvm boot %d", want, got)
			}
		}
		if n := offlineCount(t, path); n != 3 {
			t.Errorf("after three boots the file counts %d, want 3", n)
		}
	})
	t.Run("ephemeral", func(t *testing.T) {
		// A containerDisk's writes go to a throw-away overlay, as QEMU's
		// snapshot=on does: every boot counts 1.
		path := writeQcow2(t, d, false)
		for range 2 {
			v := startVM(t, vmOptions{drives: []string{"-drive", "file=" + path + ",format=qcow2,if=none,id=d0,snapshot=on",
				"-device", "virtio-blk-pci,drive=d0,bootindex=0"}})
			m := v.waitFor(bootRE, "bootcount")
			v.exits("--then poweroff")
			if m[1] != "1" {
				t.Errorf("an ephemeral boot counts %s, want 1", m[1])
			}
		}
	})
	for name, compress := range map[string]bool{"qcow2": false, "qcow2-compressed": true} {
		t.Run(name, func(t *testing.T) {
			path := writeQcow2(t, d, compress)
			if got := bootOnce(t, path, "qcow2"); got != 1 {
				t.Fatalf("first boot: %d, want 1", got)
			}
			imgTool(t, "snapshot", "-c", "after1", path)
			if got := bootOnce(t, path, "qcow2"); got != 2 {
				t.Fatalf("second boot: %d, want 2", got)
			}
			// A clone made now (an overlay on the disk as it is) goes
			// on from 2; the base does not see the clone's boots.
			clone := filepath.Join(t.TempDir(), "clone.qcow2")
			imgTool(t, "create", "-f", "qcow2", "-F", "qcow2", "-b", path, clone)
			if got := bootOnce(t, clone, "qcow2"); got != 3 {
				t.Errorf("clone's first boot: %d, want 3", got)
			}
			if got := bootOnce(t, clone, "qcow2"); got != 4 {
				t.Errorf("clone's second boot: %d, want 4", got)
			}
			imgTool(t, "snapshot", "-a", "after1", path)
			if got := bootOnce(t, path, "qcow2"); got != 2 {
				t.Errorf("after reverting to the snapshot taken after boot 1: %d, want 2", got)
			}
		})
	}
}

// blankDisk writes a zero-filled raw disk of 1 MiB.
func blankDisk(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(path, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// labelledISO makes an ISO 9660 image with volume label label, the way
// cloud-init's NoCloud seed is made, with xorriso.
func labelledISO(t *testing.T, label string) string {
	t.Helper()
	tooltest.Require(t, "xorriso", tooltest.Xorriso)
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
	if out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", label, "-J", "-r", "-o", path, seed).CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v: %s", err, out)
	}
	return path
}

// extraDisk attaches path as another virtio disk, without a boot index.
func extraDisk(i int, path, format string) []string {
	id := fmt.Sprintf("x%d", i)
	return []string{"-drive", "file=" + path + ",format=" + format + ",if=none,id=" + id, "-device", "virtio-blk-pci,drive=" + id}
}

// TestDisks attaches 0, 1 and 2 more virtio disks to the boot disk and
// sees the BIOS's count, then a cidata ISO as a CD and as a disk and
// sees its label.
func TestDisks(t *testing.T) {
	path := probeFile(t, sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}})
	volRE := regexp.MustCompile(`tinyvm volume ([ -~]+)\r\n`)
	for extra := 0; extra <= 2; extra++ {
		t.Run(fmt.Sprintf("%d-disks", extra+1), func(t *testing.T) {
			drives := bootDrive(path, "raw")
			for i := range extra {
				drives = append(drives, extraDisk(i, blankDisk(t), "raw")...)
			}
			v := startVM(t, vmOptions{machine: "q35", drives: drives})
			m := v.waitFor(disksRE, "disks")
			v.exits("--then poweroff")
			if got := atoi(t, m[1]); got != extra+1 {
				t.Errorf("tinyvm disks %d, want %d", got, extra+1)
			}
			if volRE.MatchString(v.serial.String()) {
				t.Errorf("a volume line without any ISO: %q", v.serial.String())
			}
		})
	}
	iso, drive := labelledISO(t, "cidata"), labelledISO(t, "config-2")
	for _, c := range []struct {
		name, machine string
		drives        []string
		disks         int
		label         string
	}{
		{"cidata-cd-pc", "pc", []string{"-drive", "file=" + iso + ",format=raw,if=none,id=cd,media=cdrom,readonly=on", "-device", "ide-cd,drive=cd,bus=ide.1"}, 1, "cidata"},
		{"cidata-cd-q35", "q35", []string{"-drive", "file=" + iso + ",format=raw,if=none,id=cd,media=cdrom,readonly=on", "-device", "ide-cd,drive=cd,bus=ide.2"}, 1, "cidata"},
		{"cidata-disk", "q35", extraDisk(0, iso, "raw"), 2, "cidata"},       // KubeVirt's cloudInitNoCloud
		{"config-2-disk", "q35", extraDisk(0, drive, "raw"), 2, "config-2"}, // an OpenStack config drive
	} {
		t.Run(c.name, func(t *testing.T) {
			v := startVM(t, vmOptions{machine: c.machine, drives: append(bootDrive(path, "raw"), c.drives...)})
			m := v.waitFor(disksRE, "disks")
			v.exits("--then poweroff")
			if got := atoi(t, m[1]); got != c.disks {
				t.Errorf("tinyvm disks %d, want %d", got, c.disks)
			}
			vols := volRE.FindAllStringSubmatch(v.serial.String(), -1)
			if len(vols) != 1 || vols[0][1] != c.label {
				t.Errorf("volume lines %q, want one for %s; serial %q", vols, c.label, v.serial.String())
			}
		})
	}
}

// TestEcho talks to the guest over a serial socket: what is sent comes
// back, and the line "poweroff" powers it off.
func TestEcho(t *testing.T) {
	v := startVM(t, vmOptions{socket: true, drives: bootDrive(probeFile(t, sector.Options{Probes: sector.Probes{Echo: true}}), "raw")})
	v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)), "marker")
	if _, err := v.conn.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	v.waitFor(regexp.MustCompile(regexp.QuoteMeta(marker)+`hello\r\n`), "echo")
	// Not a power-off: a longer word, and the word inside a line.
	for _, line := range []string{"poweroffx\r", "xpoweroff\r", "power\r"} {
		if _, err := v.conn.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	v.waitFor(regexp.MustCompile(`power\r\n`), "echo of the non-matching lines")
	stillAlive(t, v, time.Second, "lines that are not exactly poweroff")
	if _, err := v.conn.Write([]byte("poweroff\r")); err != nil {
		t.Fatal(err)
	}
	v.exits("the line poweroff")
	if !strings.Contains(v.serial.String(), "poweroff\r\n") {
		t.Errorf("poweroff was not echoed: %q", v.serial.String())
	}
}

// stillAlive fails if QEMU ends within d.
func stillAlive(t *testing.T, v *vm, d time.Duration, why string) {
	t.Helper()
	select {
	case <-v.done:
		t.Fatalf("%s: the guest stopped (%v), want it running; serial %q", why, v.err, v.serial.String())
	case <-time.After(d):
	}
}

// TestID boots two disks, in both boot orders: the id printed is the
// one of the disk with bootindex 0.
func TestIDBootOrder(t *testing.T) {
	a := sector.Options{Then: sector.PowerOff, Serial: new("disk A"), Probes: sector.Probes{ID: true}}
	b := sector.Options{Then: sector.PowerOff, Serial: new("disk B"), Probes: sector.Probes{ID: true}}
	if a.ID() == b.ID() {
		t.Fatalf("two option sets share id %s", a.ID())
	}
	pa, pb := probeFile(t, a), probeFile(t, b)
	for _, c := range []struct {
		first, second string
		want          string
	}{{pa, pb, a.ID()}, {pb, pa, b.ID()}} {
		drives := []string{
			"-drive", "file=" + c.second + ",format=raw,if=none,id=d1", "-device", "virtio-blk-pci,drive=d1,bootindex=1",
			"-drive", "file=" + c.first + ",format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=0",
		}
		v := startVM(t, vmOptions{machine: "q35", drives: drives})
		m := v.waitFor(idRE, "id")
		v.exits("--then poweroff")
		if m[1] != c.want {
			t.Errorf("booted id %s, want %s (the disk with bootindex 0)", m[1], c.want)
		}
	}
}

// allProbes turns on every probe.
var allProbes = sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}

// TestProbesKeepBehaviour boots with every probe on: the power button, a
// key press and the timeout still power off, and waiting stays idle.
func TestProbesKeepBehaviour(t *testing.T) {
	for _, machine := range []string{"pc", "q35"} {
		t.Run("powerbutton-"+machine, func(t *testing.T) {
			v := startVM(t, vmOptions{machine: machine, drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
			v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
			v.qmp(map[string]any{"execute": "system_powerdown"})
			v.exits("system_powerdown")
		})
	}
	t.Run("key", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
		v.waitFor(bootRE, "boot line")
		stillAlive(t, v, 500*time.Millisecond, "waiting")
		v.qmp(map[string]any{"execute": "send-key", "arguments": map[string]any{"keys": []map[string]string{{"type": "qcode", "data": "a"}}}})
		v.exits("key press")
	})
	t.Run("timeout", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Timeout: 3 * time.Second, Probes: allProbes}), "raw")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		v.exits("--timeout 3s")
		if n := len(heartbeatRE.FindAllString(v.serial.String(), -1)); n < 2 || n > 4 {
			t.Errorf("%d heartbeats in a 3s timeout, want about 3: %q", n, v.serial.String())
		}
		// Every probe line the guest printed has the golden's format:
		// id, boot, disks and at least two heartbeats.
		if n := sector.CheckLines(t, v.serial.String()); n < 5 {
			t.Errorf("%d probe lines, want at least 5: %q", n, v.serial.String())
		}
	})
	t.Run("idle", func(t *testing.T) {
		v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw")})
		v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
		idletest.Check(t, v.cmd.Process.Pid, 4*time.Second, "idle guest with every probe on")
	})
	for _, then := range []sector.Then{sector.Halt, sector.Reboot} {
		t.Run(string(then), func(t *testing.T) {
			p := allProbes
			p.Heartbeat, p.Echo = 0, false
			v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, sector.Options{Then: then, Probes: p}), "raw")})
			v.waitFor(disksRE, "disks line")
			if then == sector.Reboot {
				v.exits("--then reboot under -no-reboot")
				return
			}
			v.qmp(map[string]any{"execute": "system_powerdown"})
			stillAlive(t, v, 2*time.Second, "--then halt ignores the power button")
		})
	}
}

// TestProbesWithoutMarker: --serial "" drops the marker, not the
// probes' lines.
func TestProbesWithoutMarker(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Serial: new(""), Probes: sector.Probes{ID: true, BootCount: true}}
	v := startVM(t, vmOptions{drives: bootDrive(probeFile(t, o), "raw")})
	v.waitFor(bootRE, "boot line")
	v.exits("--then poweroff")
	if out := v.serial.String(); strings.Contains(out, marker) || !strings.Contains(out, "tinyvm id "+o.ID()+"\r\n") {
		t.Errorf("serial %q: want the id line and no marker", out)
	}
}

// TestProbesBareDisk boots the two-stage program from a disk without a
// partition table: the second stage at LBA 1, the counter at LBA 63.
func TestProbesBareDisk(t *testing.T) {
	s, err := sector.Build(sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true, ID: true, Disks: true}})
	if err != nil {
		t.Fatal(err)
	}
	chunks := []disk.Chunk{{Off: 0, Data: s.Bytes()}}
	for _, r := range s.Reserved() {
		chunks = append(chunks, disk.Chunk{Off: r.LBA * disk.SectorSize, Data: r.Data})
	}
	d, err := disk.NewSparse(1<<20, chunks...)
	if err != nil {
		t.Fatal(err)
	}
	path := writeRaw(t, d)
	for _, c := range []struct{ machine, bus string }{{"pc", "ide"}, {"q35", "virtio"}} {
		t.Run(c.machine+"-"+c.bus, func(t *testing.T) {
			p, serial := start(t, path, c.machine, c.bus)
			exits(t, p, bootTimeout, "--then poweroff")
			for _, re := range []*regexp.Regexp{idRE, bootRE, disksRE} {
				if !re.MatchString(serial.String()) {
					t.Errorf("no %v: %q", re, serial.String())
				}
			}
		})
	}
	if n := offlineCount(t, path); n != 2 {
		t.Errorf("after two boots the counter is %d, want 2", n)
	}
}

// TestProbeFailures boots disks whose second stage or counter cannot be
// used: each prints its error line instead.
func TestProbeFailures(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}}
	t.Run("stage2", func(t *testing.T) {
		path := probeFile(t, o)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Another build's stage: the signature's id half differs.
		if _, err := f.WriteAt([]byte{'T', 'V', 0, 0}, 34*disk.SectorSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
		v := startVM(t, vmOptions{drives: bootDrive(path, "raw")})
		v.waitFor(regexp.MustCompile(`tinyvm error stage2\r\n`), "bad stage 2")
		if strings.Contains(v.serial.String(), marker) {
			t.Errorf("ran a foreign second stage: %q", v.serial.String())
		}
		stillAlive(t, v, time.Second, "after the stage 2 error")
	})
	t.Run("stage2-missing", func(t *testing.T) {
		// The loader alone on a 512-byte disk (which SeaBIOS boots from
		// pc's IDE): there is no stage after it to read.
		s, err := sector.Build(o)
		if err != nil {
			t.Fatal(err)
		}
		d, err := disk.New(s.Bytes(), 512)
		if err != nil {
			t.Fatal(err)
		}
		drives := []string{"-drive", "file=" + writeRaw(t, d) + ",format=raw,if=none,id=d0", "-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0"}
		v := startVM(t, vmOptions{drives: drives})
		v.waitFor(regexp.MustCompile(`tinyvm error stage2\r\n`), "no stage 2 on the disk")
		stillAlive(t, v, time.Second, "after the stage 2 error")
	})
	t.Run("counter", func(t *testing.T) {
		path := probeFile(t, o)
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(make([]byte, disk.SectorSize), sector.BootCountLBA*disk.SectorSize); err != nil {
			t.Fatal(err)
		}
		f.Close()
		v := startVM(t, vmOptions{drives: bootDrive(path, "raw")})
		v.waitFor(regexp.MustCompile(`tinyvm error bootcount\r\n`), "no counter sector")
		v.exits("--then poweroff")
	})
	t.Run("read-only", func(t *testing.T) {
		path := probeFile(t, o)
		drives := []string{"-drive", "file=" + path + ",format=raw,if=none,id=d0,readonly=on", "-device", "virtio-blk-pci,drive=d0,bootindex=0"}
		v := startVM(t, vmOptions{drives: drives})
		v.waitFor(regexp.MustCompile(`tinyvm error bootcount\r\n`), "read-only disk")
		v.exits("--then poweroff")
	})
}

// TestSerialConsole boots with SeaBIOS's serial console on (QEMU's
// -machine graphics=off, which KubeVirt's bios.useSerial turns on): COM1
// input arrives as key presses, yet is echoed rather than powering off,
// and every probe line starts a line of its own after the copied screen.
func TestSerialConsole(t *testing.T) {
	drives := append(bootDrive(probeFile(t, sector.Options{Probes: allProbes}), "raw"), "-cdrom", labelledISO(t, "cidata"))
	v := startVM(t, vmOptions{socket: true, machine: "pc,graphics=off", drives: drives})
	v.waitFor(regexp.MustCompile(`tinyvm heartbeat 1\r\n`), "heartbeat")
	if _, err := v.conn.Write([]byte("hello\r")); err != nil {
		t.Fatal(err)
	}
	v.waitFor(regexp.MustCompile(`\r\nhello\r\n`), "echo through the serial console")
	stillAlive(t, v, time.Second, "input through the serial console")
	if _, err := v.conn.Write([]byte("poweroff\r")); err != nil {
		t.Fatal(err)
	}
	v.exits("the line poweroff")
	out := v.serial.String()
	if n := sector.CheckLines(t, out); n < 5 {
		t.Errorf("%d probe lines, want at least 5", n)
	}
	if strings.Count(out, "tinyvm ") != strings.Count(out, "\r\ntinyvm ") {
		t.Errorf("a probe line does not start a line: %q", out)
	}
	if !strings.Contains(out, "\r\ntinyvm volume cidata\r\n") {
		t.Errorf("no cidata line: %q", out)
	}
}

// TestProbesFromCD boots the program from an El Torito no-emulation CD
// made by xorriso from BootImage: the loader finds the second stage among
// the sectors the firmware loaded, in both layouts.
func TestProbesFromCD(t *testing.T) {
	tooltest.Require(t, "xorriso", tooltest.Xorriso)
	for _, l := range []sector.Layout{sector.Bare, sector.Partitioned} {
		t.Run(fmt.Sprintf("layout-%d", l), func(t *testing.T) {
			o := sector.Options{Layout: l, Then: sector.PowerOff, Probes: sector.Probes{ID: true, Disks: true}}
			s, err := sector.Build(o)
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			if err := os.MkdirAll(root, 0o755); err != nil {
				t.Fatal(err)
			}
			img := s.BootImage()
			if err := os.WriteFile(filepath.Join(root, "boot.img"), img, 0o644); err != nil {
				t.Fatal(err)
			}
			iso := filepath.Join(dir, "probes.iso")
			out, err := exec.Command("xorriso", "-as", "mkisofs", "-quiet", "-V", "TINYVM_CD", "-b", "boot.img", "-no-emul-boot",
				"-boot-load-size", strconv.Itoa(len(img)/disk.SectorSize), "-o", iso, root).CombinedOutput()
			if err != nil {
				t.Fatalf("xorriso: %v: %s", err, out)
			}
			for _, machine := range []string{"pc", "q35"} {
				bus := "ide.1"
				if machine == "q35" {
					bus = "ide.2"
				}
				v := startVM(t, vmOptions{machine: machine, drives: []string{"-drive", "file=" + iso + ",format=raw,if=none,id=cd,media=cdrom,readonly=on",
					"-device", "ide-cd,drive=cd,bus=" + bus + ",bootindex=0"}})
				m := v.waitFor(idRE, machine+" CD boot")
				v.exits("--then poweroff")
				if m[1] != o.ID() {
					t.Errorf("%s: id %s, want %s", machine, m[1], o.ID())
				}
				if !strings.Contains(v.serial.String(), "tinyvm volume TINYVM_CD\r\n") {
					t.Errorf("%s: the CD's own label is missing: %q", machine, v.serial.String())
				}
			}
		})
	}
}
