package universal_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/disktest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/raw"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// fill returns n bytes that differ from offset to offset.
func fill(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13) ^ seed
	}
	return b
}

// espFiles stand in for the EFI applications: files of their size.
func espFiles() []fat.File {
	return []fat.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: fill(364, 1)},
		{Path: "EFI/BOOT/BOOTAA64.EFI", Data: fill(384, 2)},
	}
}

func bootCode(t *testing.T) []byte {
	t.Helper()
	s, err := sector.Build(sector.Options{Layout: sector.Partitioned})
	if err != nil {
		t.Fatal(err)
	}
	return s.Code()
}

// writeRaw writes d as a raw image, sparse where it is zero.
func writeRaw(t *testing.T, d disk.Disk) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := raw.Write(f, d); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDisk checks the default 1 MiB disk with sgdisk, sfdisk, fsck.fat
// and mtools, and its byte map.
func TestDisk(t *testing.T) {
	code := bootCode(t)
	d, err := universal.New(code, espFiles(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	// The protective MBR: the program, a zero disk signature, the 0xEE
	// record, the boot signature.
	mbr := make([]byte, 512)
	if _, err := d.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mbr[:440], code) || !disk.IsZero(mbr[440:446]) || mbr[446+4] != 0xEE || mbr[510] != 0x55 || mbr[511] != 0xAA {
		t.Errorf("protective MBR: % x ... % x", mbr[436:452], mbr[508:])
	}
	if want := []disk.Extent{{Off: 0, Len: 34 * 512}, {Off: 64 * 512, Len: 32 << 10}, {Off: 1<<20 - 33*512, Len: 33 * 512}}; !reflect.DeepEqual(d.Extents(), want) {
		t.Errorf("Extents = %v, want %v", d.Extents(), want)
	}

	path := writeRaw(t, d)
	j := disktest.VerifyGPT(t, path)
	if len(j.Partitions) != 1 {
		t.Fatalf("sfdisk reads %d partitions, want 1", len(j.Partitions))
	}
	if p := j.Partitions[0]; p.Start != universal.ESPFirstLBA || p.Size != 64 || p.Type != gpt.ESP.String() || p.Name != universal.ESPName {
		t.Errorf("sfdisk reads the ESP as %+v", p)
	}

	// The ESP where sfdisk says it is: fsck.fat on a copy, mtools in place.
	off := int64(j.Partitions[0].Start) * 512
	esp := make([]byte, j.Partitions[0].Size*512)
	if _, err := d.ReadAt(esp, off); err != nil {
		t.Fatal(err)
	}
	espPath := filepath.Join(t.TempDir(), "esp.img")
	if err := os.WriteFile(espPath, esp, 0o644); err != nil {
		t.Fatal(err)
	}
	if used, total := disktest.Fsck(t, espPath); used != 4 || total != 60 {
		t.Errorf("fsck.fat counts %d/%d clusters, want 4/60 (EFI, BOOT, two files)", used, total)
	}
	var want []disktest.File
	for _, f := range espFiles() {
		want = append(want, disktest.File{Path: f.Path, Data: f.Data})
	}
	disktest.ReadBack(t, fmt.Sprintf("%s@@%d", path, off), want)
}

// TestESPSize: the ESP is the smallest volume for the files, in whole
// 64-sector steps, and the table stays clean as it grows.
func TestESPSize(t *testing.T) {
	for _, tt := range []struct {
		data    int // bytes of one file besides the two applications
		sectors uint64
	}{{0, 64}, {56 * 512, 64}, {56*512 + 1, 128}, {100 << 10, 256}} { // 60 clusters, 4 taken
		files := espFiles()
		if tt.data > 0 {
			files = append(files, fat.File{Path: "EFI/BOOT/EXTRA.BIN", Data: fill(tt.data, 3)})
		}
		d, err := universal.New(nil, files, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		e, err := universal.FindESP(d)
		if err != nil || e.Off != 64*512 || e.Len != int64(tt.sectors)*512 {
			t.Errorf("%d more bytes: ESP at %d, %d bytes, %v; want %d sectors", tt.data, e.Off, e.Len, err, tt.sectors)
			continue
		}
		if tt.data == 100<<10 {
			path := writeRaw(t, d)
			disktest.VerifyGPT(t, path)
			var want []disktest.File
			for _, f := range files {
				want = append(want, disktest.File{Path: f.Path, Data: f.Data})
			}
			disktest.ReadBack(t, fmt.Sprintf("%s@@%d", path, e.Off), want)
		}
	}
}

func TestFindESP(t *testing.T) {
	d, err := universal.New(bootCode(t), espFiles(), 1<<20, universal.WithTime(time.Unix(1700000000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := universal.FindESP(d)
	if err != nil || e != (disk.Extent{Off: 64 * 512, Len: 32 << 10}) {
		t.Fatalf("FindESP = %v, %v", e, err)
	}
	esp, err := universal.ESP(espFiles(), universal.WithTime(time.Unix(1700000000, 0)))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, e.Len)
	if _, err := disk.Section(d, e.Off, e.Len).ReadAt(got, 0); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	if !bytes.Equal(got, esp) {
		t.Error("the ESP found on the disk differs from ESP's bytes")
	}

	bare, _ := disk.New(bootCode(t), 1<<20) // --firmware bios: no GPT
	if _, err := universal.FindESP(bare); !errors.Is(err, universal.ErrNoESP) || !errors.Is(err, gpt.ErrNoTable) {
		t.Errorf("FindESP on a bare MBR disk: %v", err)
	}
	other := &gpt.Table{Partitions: []gpt.Partition{{Type: gpt.HashGUID([]byte("linux")), FirstLBA: 64, LastLBA: 127}}}
	head, tail, _ := other.Build(1<<20, nil)
	noESP, _ := disk.NewSparse(1<<20, disk.Chunk{Off: 0, Data: head}, disk.Chunk{Off: 1<<20 - int64(len(tail)), Data: tail})
	if _, err := universal.FindESP(noESP); !errors.Is(err, universal.ErrNoESP) || !strings.Contains(err.Error(), "none of type") {
		t.Errorf("FindESP without an ESP entry: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		code  int
		files []fat.File
		size  int64
		want  error
		text  string
	}{
		{440, nil, universal.MinSize - 512, universal.ErrSize, "at least 516096 bytes (504 KiB)"},
		{440, nil, 1000, disk.ErrSize, "multiple of 512"},
		{441, nil, 1 << 20, universal.ErrBootCode, "holds 440"},
		{440, []fat.File{{Path: "BIG", Data: make([]byte, 1000<<10)}}, 1 << 20, universal.ErrSize, "use at least"},
		{440, []fat.File{{Path: "EFI/BOOT/BOOTX64.EFI.OLD"}}, 1 << 20, fat.ErrName, "more than one '.'"},
	}
	for _, tt := range tests {
		_, err := universal.New(make([]byte, tt.code), tt.files, tt.size)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) || strings.Contains(fmt.Sprint(err), "\n") {
			t.Errorf("code %d, size %d: got %v, want %v containing %q", tt.code, tt.size, err, tt.want, tt.text)
		}
	}
	// The smallest disk is accepted.
	if _, err := universal.New(nil, espFiles(), universal.MinSize); err != nil {
		t.Errorf("MinSize: %v", err)
	}
}

// TestHuge: a 1 TiB disk is three small extents, and its backup table at
// the very end checks out.
func TestHuge(t *testing.T) {
	const size = 1 << 40
	d, err := universal.New(bootCode(t), espFiles(), size)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, e := range d.Extents() {
		n += e.Len
	}
	if want := int64(34*512 + 32<<10 + 33*512); n != want {
		t.Errorf("a 1 TiB disk holds %d bytes of extents, want %d, as a 1 MiB one", n, want)
	}
	j := disktest.VerifyGPT(t, writeRaw(t, d))
	if j.LastLBA != size/512-34 || len(j.Partitions) != 1 {
		t.Errorf("sfdisk reads last usable LBA %d and %d partitions", j.LastLBA, len(j.Partitions))
	}
}

func TestReproducible(t *testing.T) {
	sum := func(opts ...universal.Option) [32]byte {
		t.Helper()
		d, err := universal.New(bootCode(t), espFiles(), 1<<20, opts...)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, d.Size())
		if _, err := d.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	if sum() != sum() {
		t.Error("two builds differ")
	}
	if sum() == sum(universal.WithTime(fat.DefaultTime.Add(time.Hour))) {
		t.Error("another time gives the same disk")
	}
	a, _ := universal.New(bootCode(t), espFiles(), 1<<20)
	b, _ := universal.New(bootCode(t), espFiles(), 2<<20)
	ta, _ := gpt.Read(a, a.Size())
	tb, _ := gpt.Read(b, b.Size())
	if ta.DiskGUID == tb.DiskGUID || ta.Partitions[0].GUID == tb.Partitions[0].GUID {
		t.Error("disks of different sizes share GUIDs")
	}
}

// uefi is a UEFI firmware and the machine it runs on.
type uefi struct {
	name       string
	qemu, hint string   // the emulator and its Debian package
	code, vars string   // firmware and its variable store template
	fwHint     string   // the firmware's Debian package
	machine    []string // machine, CPU and memory
	buses      []string
}

// firmwares are Debian's OVMF (x86_64) and AAVMF (aarch64). Memory is
// above each one's floor: OVMF needs 48 MiB, AAVMF 128 MiB.
var firmwares = []uefi{
	{
		name: "ovmf", qemu: "qemu-system-x86_64", hint: tooltest.QemuSystem,
		code: "/usr/share/OVMF/OVMF_CODE_4M.fd", vars: "/usr/share/OVMF/OVMF_VARS_4M.fd", fwHint: "apt-get install ovmf",
		machine: []string{"-machine", "q35", "-m", "128"}, buses: []string{"virtio", "sata"},
	},
	{
		name: "aavmf", qemu: "qemu-system-aarch64", hint: "apt-get install qemu-system-arm",
		code: "/usr/share/AAVMF/AAVMF_CODE.fd", vars: "/usr/share/AAVMF/AAVMF_VARS.fd", fwHint: "apt-get install qemu-efi-aarch64",
		machine: []string{"-machine", "virt", "-cpu", "cortex-a57", "-m", "256"}, buses: []string{"virtio"},
	},
}

// TestUEFIReadsESP boots the disk on OVMF and AAVMF without an EFI
// application: the firmware finds no \EFI\BOOT\BOOT*.EFI, falls back to
// its built-in UEFI Shell, and the shell runs startup.nsh from the first
// file system it maps: our FAT in our GPT partition. The script prints a
// line and powers off, so QEMU exits 0.
func TestUEFIReadsESP(t *testing.T) {
	// The echoed command line reads "Shell> echo tinyvm-esp-ok": only the
	// shell's output starts a line with the marker. No BOOTX64.EFI: a
	// stand-in that is not a PE file would only add a load error.
	script := []byte("echo tinyvm-esp-ok\r\nreset -s\r\n")
	files := []fat.File{{Path: "startup.nsh", Data: script}}
	d, err := universal.New(bootCode(t), files, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := gpt.Read(d, d.Size())
	if err != nil {
		t.Fatal(err)
	}
	path := writeRaw(t, d)
	for _, fw := range firmwares {
		for _, bus := range fw.buses {
			t.Run(fw.name+"-"+bus, func(t *testing.T) {
				out := bootUEFI(t, fw, path, bus)
				if !strings.Contains(out, "\ntinyvm-esp-ok") {
					t.Fatalf("no tinyvm-esp-ok line from startup.nsh on serial:\n%s", out)
				}
				// The shell's mapping names our partition by its GUID,
				// start and length in sectors.
				hd := fmt.Sprintf("HD(1,GPT,%s,0x40,0x40)", tab.Partitions[0].GUID)
				if !strings.Contains(out, hd) {
					t.Errorf("the shell's mapping table lacks %s:\n%s", hd, out)
				}
			})
		}
	}
}

// bootUEFI boots path with the firmware and returns the serial output
// once QEMU has exited by itself with status 0.
func bootUEFI(t *testing.T, fw uefi, path, bus string) string {
	t.Helper()
	qemu := tooltest.Require(t, fw.qemu, fw.hint)
	for _, f := range []string{fw.code, fw.vars} {
		if _, err := os.Stat(f); err != nil {
			tooltest.Missing(t, f+" not found: "+fw.fwHint)
		}
	}
	vars := filepath.Join(t.TempDir(), "vars.fd")
	b, err := os.ReadFile(fw.vars) // writable state: a copy per boot
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vars, b, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append(slices.Clone(fw.machine),
		"-accel", "tcg", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-nic", "none", // no network boot attempts before the shell
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+fw.code,
		"-drive", "if=pflash,format=raw,unit=1,file="+vars,
		"-drive", "file="+path+",format=raw,if=none,id=d0",
	)
	switch bus {
	case "virtio":
		args = append(args, "-device", "virtio-blk-pci,drive=d0,bootindex=0")
	case "sata":
		args = append(args, "-device", "ide-hd,drive=d0,bus=ide.0,bootindex=0")
	}
	// Generous: UEFI under TCG on a loaded machine, plus the shell's
	// five-second startup.nsh countdown.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var serial bytes.Buffer
	cmd := exec.CommandContext(ctx, qemu, args...)
	cmd.Stdout, cmd.Stderr = &serial, &serial
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not power off within the timeout; serial:\n%s", fw.name, serial.String())
	}
	if err != nil {
		t.Fatalf("%s: %v\n%s", fw.qemu, err, serial.String())
	}
	return serial.String()
}

func BenchmarkNew1TiB(b *testing.B) {
	s, _ := sector.Build(sector.Options{Layout: sector.Partitioned})
	for b.Loop() {
		if _, err := universal.New(s.Code(), espFiles(), 1<<40); err != nil {
			b.Fatal(err)
		}
	}
}
