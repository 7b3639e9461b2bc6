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

// TestProbeLinesARM64 boots once with the boot-time probes and a
// cidata CD: the lines come in the common order, after the marker.
func TestProbeLinesARM64(t *testing.T) {
	o := sector.Options{Then: sector.PowerOff, Probes: sector.Probes{Disks: true, BootCount: true, ID: true}}
	drives := append(arm64Drive("d0", arm64ProbeFile(t, o), "raw", 0, ""), arm64CD("cd", arm64ISO(t, "cidata"))...)
	v := arm64Start(t, arm64Options{drives: drives})
	v.waitFor(arm64IDRE, "id")
	v.exits("--then poweroff")
	out := v.serial.String()
	want := marker + "tinyvm disks 1\r\ntinyvm volume cidata\r\ntinyvm boot 1\r\ntinyvm id " + o.ID() + "\r\n"
	if !strings.Contains(out, want) {
		t.Errorf("serial does not hold %q: %q", want, tail(out))
	}
	if n := strings.Count(out, "tinyvm "); n != 4 {
		t.Errorf("%d probe lines, want 4: %q", n, tail(out))
	}
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

var _ = sync.Mutex{}
var _ = idletest.Check
var _ = qcow2.Write
