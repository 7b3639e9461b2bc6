package efi

import (
	"bytes"
	"debug/pe"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/arch/arm64/arm64asm"
	"golang.org/x/arch/x86/x86asm"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	pew "github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
)

func str(s string) *string { return &s }

// variants are option sets that switch on every part of the programs.
var variants = []sector.Options{
	{},
	{Timeout: 30 * time.Second},
	{Then: sector.PowerOff},
	{Then: sector.Halt},
	{Then: sector.Reboot},
	{Then: sector.PowerOff, Serial: str(""), Message: "custom"},
}

// code returns the section of a built application and the offset where
// its text starts (the text is the last thing in the section).
func code(t *testing.T, o sector.Options, arch Arch) ([]byte, int) {
	t.Helper()
	b, err := Build(o, arch)
	if err != nil {
		t.Fatal(err)
	}
	f, err := pe.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("debug/pe: %v", err)
	}
	sec := f.Sections[0]
	data, err := sec.Data()
	if err != nil {
		t.Fatal(err)
	}
	data = data[:sec.VirtualSize]
	txt := text(o.Defaults())
	if !bytes.HasSuffix(data, txt) {
		t.Fatalf("%s: the section does not end with the text", arch)
	}
	return data, len(data) - len(txt)
}

// probeVariants switch on every probe, alone and together, with each
// --then the probes allow.
var probeVariants = []sector.Options{
	{Probes: sector.Probes{Heartbeat: time.Second}},
	{Probes: sector.Probes{Echo: true}},
	{Probes: sector.Probes{Heartbeat: 100 * time.Millisecond, Echo: true}},
	{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}},
	{Then: sector.Halt, Probes: sector.Probes{BootCount: true}},
	{Then: sector.Reboot, Probes: sector.Probes{ID: true}},
	{Timeout: 30 * time.Second, Probes: sector.Probes{Heartbeat: 500 * time.Millisecond, Echo: true, Disks: true, BootCount: true, ID: true}},
}

// TestDisassembleAMD64 decodes the whole x86-64 program with x86asm: every
// byte before the data is an instruction, jumps stay in the code, one lea
// loads the text and every other RIP-relative lea the probes' data.
func TestDisassembleAMD64(t *testing.T) {
	for _, o := range append(append([]sector.Options(nil), variants...), probeVariants...) {
		data, textAt := code(t, o, AMD64)
		_, dataAt, err := amd64Code(o.Defaults())
		if err != nil {
			t.Fatal(err)
		}
		if o.Probes.Any() == (dataAt == textAt) {
			t.Errorf("%+v: data at %d, text at %d", o, dataAt, textAt)
		}
		var leas, dataLeas, crlfLeas int
		for pc := 0; pc < dataAt; {
			inst, err := x86asm.Decode(data[pc:dataAt], 64)
			if err != nil {
				t.Fatalf("%+v: offset %d: %v", o, pc, err)
			}
			next := pc + inst.Len
			if m, ok := inst.Args[1].(x86asm.Mem); ok && inst.Op == x86asm.LEA && m.Base == x86asm.RIP {
				switch got := next + int(m.Disp); {
				case got == textAt:
					leas++
				case got >= dataAt && got < textAt:
					dataLeas++
					if s, ok := arm64UTF16z(data[got:textAt]); ok && s == "\r\n" {
						crlfLeas++
					}
				default:
					t.Errorf("%+v: lea loads %d, outside the data at %d..%d", o, got, dataAt, textAt)
				}
			}
			if m, ok := inst.Args[0].(x86asm.Mem); ok && m.Base == x86asm.RIP {
				t.Errorf("%+v: %v at %d writes through RIP, into the read-only image", o, inst, pc)
			}
			if rel, ok := inst.Args[0].(x86asm.Rel); ok {
				if target := next + int(rel); target < 0 || target >= dataAt {
					t.Errorf("%+v: %v at %d jumps to %d, outside the code", o, inst, pc, target)
				}
			}
			pc = next
		}
		if leas != 1 {
			t.Errorf("%+v: %d RIP-relative lea of the text, want 1", o, leas)
		}
		if o.Probes.Any() && dataLeas == 0 {
			t.Errorf("%+v: no lea of the probes' data", o)
		}
		// Only a heartbeat that can land in a typed line ends it first.
		want := 0
		if o.Probes.Heartbeat != 0 && o.Probes.Echo {
			want = 1
		}
		if crlfLeas != want {
			t.Errorf("%+v: %d lea of a CR LF string, want %d", o, crlfLeas, want)
		}
	}
}

// TestDisassembleARM64 decodes the whole A64 program with arm64asm.
func TestDisassembleARM64(t *testing.T) {
	for _, o := range variants {
		data, textAt := code(t, o, ARM64)
		if textAt%4 != 0 {
			t.Fatalf("text at %d is not after whole instructions", textAt)
		}
		var adrs int
		for pc := 0; pc < textAt; pc += 4 {
			inst, err := arm64asm.Decode(data[pc:])
			if err != nil {
				t.Fatalf("%+v: offset %d: %v", o, pc, err)
			}
			for _, arg := range inst.Args {
				rel, ok := arg.(arm64asm.PCRel)
				if !ok {
					continue
				}
				target := pc + int(rel)
				if inst.Op == arm64asm.ADR {
					adrs++
					if target != textAt {
						t.Errorf("%+v: adr loads %d, want the text at %d", o, target, textAt)
					}
				} else if target < 0 || target >= textAt {
					t.Errorf("%+v: %v at %d branches to %d, outside the code", o, inst, pc, target)
				}
			}
		}
		if adrs != 1 {
			t.Errorf("%+v: %d adr, want 1", o, adrs)
		}
	}
}

func TestText(t *testing.T) {
	u := text(sector.Options{Then: sector.PowerOff}.Defaults())
	if len(u)%2 != 0 || u[len(u)-2] != 0 || u[len(u)-1] != 0 {
		t.Fatalf("text is not NUL-terminated UCS-2")
	}
	w := make([]uint16, len(u)/2-1)
	for i := range w {
		w[i] = uint16(u[2*i]) | uint16(u[2*i+1])<<8
	}
	got := string(utf16.Decode(w))
	want := "╔" + strings.Repeat("═", 30) + "╗\r\n║ tinyvm-oci : the 512-byte VM ║\r\n╚" +
		strings.Repeat("═", 30) + "╝\r\nPowering off.\r\nHello World!\r\n"
	if got != want {
		t.Errorf("text is\n%q, want\n%q", got, want)
	}
	if got := text(sector.Options{Serial: str("")}.Defaults()); bytes.Contains(got, []byte{'H', 0, 'e', 0, 'l', 0}) {
		t.Errorf("--serial \"\" still prints a marker")
	}
}

func TestBuild(t *testing.T) {
	for _, arch := range Arches {
		for _, o := range variants {
			a, err := Build(o, arch)
			if err != nil {
				t.Fatalf("%s %+v: %v", arch, o, err)
			}
			b, _ := Build(o, arch)
			if !bytes.Equal(a, b) {
				t.Errorf("%s %+v: two builds differ", arch, o)
			}
			f, err := pe.NewFile(bytes.NewReader(a))
			if err != nil {
				t.Fatal(err)
			}
			want := map[Arch]uint16{AMD64: uint16(pew.AMD64), ARM64: uint16(pew.ARM64)}[arch]
			if f.Machine != want {
				t.Errorf("%s: machine 0x%X, want 0x%X", arch, f.Machine, want)
			}
		}
		b, _ := Build(sector.Options{}, arch)
		t.Logf("%s: %d bytes for the default options (%s)", arch, len(b), arch.BootPath())
		all := sector.Options{Probes: sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}}
		b, _ = Build(all, arch)
		t.Logf("%s: %d bytes with every probe", arch, len(b))
	}
}

// TestProbeSizeFits checks MaxProbeSize against the ESP: two applications
// of that size fit the smallest ESP, and the largest probe build within
// the limit still builds.
func TestProbeSizeFits(t *testing.T) {
	files := []fat.File{{Path: AMD64.BootPath(), Data: make([]byte, MaxProbeSize)}, {Path: ARM64.BootPath(), Data: make([]byte, MaxProbeSize)}}
	esp, err := universal.ESP(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(esp) != 32*1024 {
		t.Errorf("two %d-byte applications make a %d-byte ESP, want the smallest, 32 KiB", MaxProbeSize, len(esp))
	}
	o := sector.Options{Probes: sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}}
	base, err := Build(o, AMD64)
	if err != nil {
		t.Fatal(err)
	}
	// Each message byte is a CHAR16; the PE file grows in 512-byte steps.
	o.Message = strings.Repeat("x", (MaxProbeSize-len(base))/2-256)
	if _, err := Build(o, AMD64); err != nil {
		t.Errorf("a message that fits: %v", err)
	}
}

func TestBuildErrors(t *testing.T) {
	for _, c := range []struct {
		o    sector.Options
		arch Arch
		want error
	}{
		{sector.Options{}, "riscv64", ErrBadArch},
		{sector.Options{}, "", ErrBadArch},
		{sector.Options{Then: "sleep"}, AMD64, sector.ErrBadThen},
		{sector.Options{Message: "caf\xc3\xa9"}, ARM64, sector.ErrNotASCII},
		{sector.Options{Serial: str("a\nb")}, AMD64, sector.ErrNotASCII},
		{sector.Options{Then: sector.Halt, Timeout: time.Second}, ARM64, sector.ErrBadTimeout},
		{sector.Options{Timeout: -time.Second}, AMD64, sector.ErrBadTimeout},
		{sector.Options{Timeout: 2 * time.Hour}, AMD64, sector.ErrBadTimeout},
		{sector.Options{Message: strings.Repeat("x", MaxProbeSize/2), Probes: sector.Probes{ID: true}}, AMD64, ErrTooBig},
		{sector.Options{Message: strings.Repeat("x", MaxProbeSize/2), Probes: sector.Probes{ID: true}}, ARM64, ErrTooBig},
	} {
		_, err := Build(c.o, c.arch)
		if !errors.Is(err, c.want) {
			t.Errorf("%s %+v: got %v, want %v", c.arch, c.o, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("error spans lines: %q", err)
		}
	}
}

func TestTicks(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint32
	}{{0, 0}, {time.Millisecond, 1}, {Tick, 1}, {Tick + 1, 2}, {30 * time.Second, 300}, {sector.MaxTimeout, 35996}} {
		if got := ticks(sector.Options{Timeout: c.d}); got != c.want {
			t.Errorf("ticks(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	if tick100ns != 1_000_000 {
		t.Errorf("tick is %d × 100 ns, want 1000000", tick100ns)
	}
}

func TestBootPath(t *testing.T) {
	if AMD64.BootPath() != "EFI/BOOT/BOOTX64.EFI" || ARM64.BootPath() != "EFI/BOOT/BOOTAA64.EFI" || Arch("x").BootPath() != "" {
		t.Errorf("boot paths: %q %q", AMD64.BootPath(), ARM64.BootPath())
	}
}

func TestHeartbeatTicks(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want uint32
	}{{sector.MinHeartbeat, 1}, {150 * time.Millisecond, 2}, {time.Second, 10}, {sector.MaxHeartbeat, 35400}} {
		if got := heartbeatTicks(sector.Probes{Heartbeat: c.d}); got != c.want {
			t.Errorf("heartbeatTicks(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	if got := le64("poweroff"); got != 0x66666f7265776f70 {
		t.Errorf("le64(poweroff) = %#x", got)
	}
}
