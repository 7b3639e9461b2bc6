package sector

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

func str(s string) *string { return &s }

func TestDefaultStructure(t *testing.T) {
	s, err := Build(Options{})
	if err != nil {
		t.Fatal(err)
	}
	b := s.Bytes()
	if len(b) != Size {
		t.Fatalf("sector is %d bytes, want 512", len(b))
	}
	if b[510] != 0x55 || b[511] != 0xAA {
		t.Errorf("signature is % x, want 55 aa", b[510:])
	}
	for _, want := range []string{"Hello World!\r\n", "tinyvm-oci", "Press a key or the power button to power off."} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("sector lacks %q", want)
		}
	}
	if s.Used()+s.Free() != Budget || s.Free() <= 0 {
		t.Errorf("used %d + free %d, want a positive free share of %d", s.Used(), s.Free(), Budget)
	}
	// Everything after the program is zero up to the signature.
	if !bytes.Equal(b[s.Used():510], make([]byte, 510-s.Used())) {
		t.Error("padding between program and signature is not zero")
	}
}

// TestPartitioned checks the 440-byte layout: the same program, with the
// disk signature and partition table (440-509) left zero for the
// partitioner and the boot signature in place.
func TestPartitioned(t *testing.T) {
	for _, o := range []Options{{}, {Then: PowerOff}, {Then: Halt}, {Then: Reboot}, {Timeout: MaxTimeout}} {
		bare, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		o.Layout = Partitioned
		s, err := Build(o)
		if err != nil {
			t.Fatalf("%+v: %v", o, err)
		}
		b := s.Bytes()
		if s.Layout() != Partitioned || s.Used()+s.Free() != PartitionedBudget || s.Free() < 0 {
			t.Errorf("%+v: layout %v, used %d + free %d, want %d", o, s.Layout(), s.Used(), s.Free(), PartitionedBudget)
		}
		if !bytes.Equal(b, bare.Bytes()) {
			t.Errorf("%+v: the program differs between the layouts", o)
		}
		if !allZero(b[s.Used():510]) || b[510] != 0x55 || b[511] != 0xAA {
			t.Errorf("%+v: bytes %d-509 not zero or no boot signature", o, s.Used())
		}
		if c := s.Code(); len(c) != 440 || !bytes.Equal(c, b[:440]) {
			t.Errorf("%+v: Code is %d bytes, want the first 440", o, len(c))
		}
	}
	if _, err := Build(Options{Layout: 7}); !errors.Is(err, ErrBadLayout) {
		t.Errorf("layout 7: got %v, want ErrBadLayout", err)
	}
	// A text that fits the bare sector but not the MBR's boot code counts
	// the bytes over the smaller budget.
	msg := strings.Repeat("m", 160)
	if _, err := Build(Options{Message: msg}); err != nil {
		t.Fatalf("bare sector with a 160-byte message: %v", err)
	}
	_, err := Build(Options{Layout: Partitioned, Message: msg})
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "in 440 bytes") {
		t.Errorf("partitioned, 160-byte message: got %v", err)
	}
}

// allZero reports whether every byte of b is zero.
func allZero(b []byte) bool { return bytes.Count(b, []byte{0}) == len(b) }

// TestProgramDecodes walks the code of every variant with x86asm, from the
// first byte to the string data, so no stray or mis-encoded byte hides in
// the program.
func TestProgramDecodes(t *testing.T) {
	for _, o := range []Options{
		{}, {Then: PowerOff}, {Then: Halt}, {Then: Reboot}, {Timeout: 5 * time.Second}, {Serial: str("")},
	} {
		s, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		b := s.Bytes()
		end := bytes.IndexByte(b, 0xC9) // the banner's first byte starts the data
		if end < 0 {
			t.Fatalf("%+v: banner not found", o)
		}
		for pc := 0; pc < end; {
			inst, err := x86asm.Decode(b[pc:end], 16)
			if err != nil {
				t.Fatalf("%+v: byte %d (% x): %v", o, pc, b[pc:min(pc+4, end)], err)
			}
			pc += inst.Len
			if pc > end {
				t.Fatalf("%+v: instruction runs into the data", o)
			}
		}
	}
}

func TestOptionsSwitchParts(t *testing.T) {
	build := func(o Options) []byte {
		t.Helper()
		s, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		return s.Bytes()
	}
	if b := build(Options{Serial: str("")}); bytes.Contains(b, []byte{0xCD, 0x14}) {
		t.Error("empty serial text still calls int 14h")
	}
	if b := build(Options{}); !bytes.Contains(b, []byte{0xCD, 0x14}) || !bytes.Contains(b, []byte{0xCD, 0x11}) {
		t.Error("default program does not call int 11h and int 14h")
	}
	if b := build(Options{Serial: str("READY")}); !bytes.Contains(b, []byte("READY\r\n\x00")) {
		t.Error("custom serial text missing")
	}
	if b := build(Options{Message: "hi there"}); !bytes.Contains(b, []byte("hi there\r\n\x00")) {
		t.Error("custom message missing")
	}
	// The timeout reads the BIOS tick counter: mov ax, [0x046C].
	if b := build(Options{Timeout: time.Second}); !bytes.Contains(b, []byte{0xA1, 0x6C, 0x04}) {
		t.Error("timeout does not read the tick counter")
	}
	if b := build(Options{}); bytes.Contains(b, []byte{0xA1, 0x6C, 0x04}) {
		t.Error("no timeout, yet the tick counter is read")
	}
	// 18.2 ticks per second, rounded up.
	if got := (Options{Timeout: time.Second}).ticks(); got != 19 {
		t.Errorf("1s = %d ticks, want 19", got)
	}
	if got := (Options{Timeout: MaxTimeout}).ticks(); got != 65535 {
		t.Errorf("MaxTimeout = %d ticks, want 65535", got)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
		text string
	}{
		{"too long", Options{Message: strings.Repeat("x", 400)}, ErrTooBig, "bytes over the budget"},
		{"serial too long", Options{Serial: str(strings.Repeat("y", 300))}, ErrTooBig, "bytes over the budget"},
		{"non-ASCII message", Options{Message: "héllo"}, ErrNotASCII, "position 1"},
		{"control character", Options{Serial: str("a\nb")}, ErrNotASCII, "0x0A"},
		{"unknown then", Options{Then: "sleep"}, ErrBadThen, "wait, poweroff, halt or reboot"},
		{"timeout with poweroff", Options{Then: PowerOff, Timeout: time.Second}, ErrBadTimeout, "only applies to --then wait"},
		{"negative timeout", Options{Timeout: -time.Second}, ErrBadTimeout, "negative"},
		{"timeout too long", Options{Timeout: 2 * time.Hour}, ErrBadTimeout, "longer than"},
	}
	for _, tt := range tests {
		_, err := Build(tt.o)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("%s: got %v, want %v containing %q", tt.name, err, tt.want, tt.text)
		}
	}
	// The over-budget count is exact: one byte more than fits is 1 over,
	// in either layout.
	for _, l := range []Layout{Bare, Partitioned} {
		s, _ := Build(Options{Message: "x", Layout: l})
		fits := strings.Repeat("x", 1+s.Free())
		if _, err := Build(Options{Message: fits, Layout: l}); err != nil {
			t.Fatalf("layout %d: message that exactly fits: %v", l, err)
		}
		if _, err := Build(Options{Message: fits + "x", Layout: l}); err == nil || !strings.Contains(err.Error(), ": 1 bytes over") {
			t.Errorf("layout %d: one byte too many: got %v", l, err)
		}
	}
}

func TestLoad(t *testing.T) {
	good := make([]byte, 512)
	good[510], good[511] = 0x55, 0xAA
	s, err := Load(good)
	if err != nil || !s.Custom() || !bytes.Equal(s.Bytes(), good) {
		t.Fatalf("Load(good) = %v, %v", s, err)
	}
	if _, err := Load(good[:511]); !errors.Is(err, ErrSize) || !strings.Contains(err.Error(), "got 511") {
		t.Errorf("short sector: %v", err)
	}
	if _, err := Load(append(good, 0)); !errors.Is(err, ErrSize) {
		t.Errorf("long sector: %v", err)
	}
	bad := bytes.Clone(good)
	bad[511] = 0
	if _, err := Load(bad); !errors.Is(err, ErrNoSignature) {
		t.Errorf("no signature: %v", err)
	}
}

func TestDeterministic(t *testing.T) {
	a, _ := Build(Options{Timeout: 3 * time.Second})
	b, _ := Build(Options{Timeout: 3 * time.Second})
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("two builds differ")
	}
}

func BenchmarkBuild(b *testing.B) {
	for b.Loop() {
		if _, err := Build(Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
