package efi

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf16"

	"golang.org/x/arch/arm64/arm64asm"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// arm64ProbeVariants switch on each probe alone, all of them, and the boot-time
// probes with each --then that allows them.
var arm64ProbeVariants = []sector.Options{
	{Probes: sector.Probes{Heartbeat: 100 * time.Millisecond}},
	{Probes: sector.Probes{Echo: true}},
	{Probes: sector.Probes{Heartbeat: 100 * time.Millisecond, Echo: true}},
	{Then: sector.PowerOff, Probes: sector.Probes{Disks: true}},
	{Then: sector.PowerOff, Probes: sector.Probes{BootCount: true}},
	{Then: sector.PowerOff, Probes: sector.Probes{ID: true}},
	{Timeout: 5 * time.Second, Probes: sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}},
	{Then: sector.Halt, Probes: sector.Probes{Disks: true, BootCount: true, ID: true}},
	{Then: sector.Reboot, Serial: str(""), Probes: sector.Probes{BootCount: true}},
}

// arm64UTF16z reads the NUL-terminated UCS-2 string at b, or ok false.
func arm64UTF16z(b []byte) (string, bool) {
	var w []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return string(utf16.Decode(w)), true
		}
		w = append(w, c)
	}
	return "", false
}

// TestDisassembleARM64Probes decodes every instruction of the probe
// builds with arm64asm: branches stay in the code, and every ADR loads
// an 8-byte-aligned GUID the probes pass to the firmware or one of the
// UCS-2 lines they print, which are the sector package's lines.
func TestDisassembleARM64Probes(t *testing.T) {
	guids := map[string][]byte{"BlockIo": guidBlockIo, "LoadedImage": guidLoadedImage, "DevicePath": guidDevicePath}
	for _, o := range arm64ProbeVariants {
		o = o.Defaults()
		code, dataAt, err := arm64Code(o)
		if err != nil {
			t.Fatal(err)
		}
		app, err := Build(o, ARM64)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(app, code) {
			t.Fatalf("%v: the PE file does not hold the program", o.Probes)
		}
		var strs []string
		var used []string
		for pc := 0; pc < dataAt; pc += 4 {
			inst, err := arm64asm.Decode(code[pc:])
			if err != nil {
				t.Fatalf("%v: offset %d: %v", o.Probes, pc, err)
			}
			for _, arg := range inst.Args {
				rel, ok := arg.(arm64asm.PCRel)
				if !ok {
					continue
				}
				target := pc + int(rel)
				if inst.Op != arm64asm.ADR {
					if target < 0 || target >= dataAt || target%4 != 0 {
						t.Errorf("%v: %v at %d branches to %d, outside the code", o.Probes, inst, pc, target)
					}
					continue
				}
				if target < dataAt || target >= len(code) {
					t.Errorf("%v: adr at %d loads %d, outside the data", o.Probes, pc, target)
					continue
				}
				found := false
				for name, g := range guids {
					if target+16 <= len(code) && bytes.Equal(code[target:target+16], g) {
						found = true
						used = append(used, name)
						if target%8 != 0 {
							t.Errorf("%v: GUID %s at %d is not 8-byte aligned", o.Probes, name, target)
						}
					}
				}
				if found {
					continue
				}
				s, ok := arm64UTF16z(code[target:])
				if !ok || target%2 != 0 {
					t.Errorf("%v: adr at %d loads %d, neither a GUID nor a UCS-2 string", o.Probes, pc, target)
				}
				strs = append(strs, s)
			}
		}
		p := o.Probes
		want := map[string]bool{
			sector.LineHeartbeat: p.Heartbeat != 0,
			"\r\n":               p.Echo,
			sector.LineDisks:     p.Disks,
			sector.LineVolume:    p.Disks,
			sector.LineBoot:      p.BootCount,
			sector.LineError + sector.ErrLineBootCount + "\r\n": p.BootCount,
			sector.LineID + o.ID() + "\r\n":                     p.ID,
		}
		for line, on := range want {
			if got := slices.Contains(strs, line); got != on {
				t.Errorf("%v: loads %q: %v, want %v", o.Probes, line, got, on)
			}
		}
		// The echo ends a line with CR LF; a heartbeat that can land in a
		// typed line ends it first with the same string.
		wantCRLF := 0
		if p.Echo {
			wantCRLF++
			if p.Heartbeat != 0 {
				wantCRLF++
			}
		}
		if got := countString(strs, "\r\n"); got != wantCRLF {
			t.Errorf("%v: loads CR LF %d times, want %d", o.Probes, got, wantCRLF)
		}
		if !slices.Contains(strs, strings.TrimSuffix(string(arm64UTF16Text(text(o))), "\x00")) {
			t.Errorf("%v: the text is never loaded", o.Probes)
		}
		if g := slices.Contains(used, "LoadedImage") && slices.Contains(used, "DevicePath"); g != p.BootCount {
			t.Errorf("%v: loads the LoadedImage and DevicePath GUIDs: %v, want %v", o.Probes, g, p.BootCount)
		}
		if g := slices.Contains(used, "BlockIo"); g != (p.Disks || p.BootCount) {
			t.Errorf("%v: loads the BlockIo GUID: %v", o.Probes, g)
		}
	}
}

// countString counts s in strs.
func countString(strs []string, s string) int {
	n := 0
	for _, x := range strs {
		if x == s {
			n++
		}
	}
	return n
}

// arm64UTF16Text decodes a NUL-terminated UCS-2 byte string.
func arm64UTF16Text(b []byte) string {
	s, _ := arm64UTF16z(b)
	return s
}

// TestProbeSizeARM64 checks the application's budget: every probe with
// a message just short of the budget fits (the default message it
// replaces is under 100 characters), one just over is a one-line error.
func TestProbeSizeARM64(t *testing.T) {
	all := sector.Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}
	app, err := Build(sector.Options{Probes: all}, ARM64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("every probe: %d bytes of %d", len(app), MaxProbeSize)
	room := (MaxProbeSize - len(app)) / 2 // UCS-2: two bytes a character
	if _, err := Build(sector.Options{Probes: all, Message: strings.Repeat("m", room-100)}, ARM64); err != nil {
		t.Errorf("a message that fits: %v", err)
	}
	_, err = Build(sector.Options{Probes: all, Message: strings.Repeat("m", room+100)}, ARM64)
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "over its 14336") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a message that does not fit: got %v", err)
	}
	t.Logf("the error: %v", err)
	// Two applications of the budget's size fit the smallest ESP.
	esp, err := universal.ESP([]fat.File{{Path: AMD64.BootPath(), Data: make([]byte, MaxProbeSize)}, {Path: ARM64.BootPath(), Data: make([]byte, MaxProbeSize)}})
	if err != nil || len(esp) != 32<<10 {
		t.Errorf("two applications of %d bytes: an ESP of %d bytes (%v), want 32 KiB", MaxProbeSize, len(esp), err)
	}
	// Without probes the message is limited by the BIOS program instead.
	if _, err := Build(sector.Options{Message: strings.Repeat("m", room+100)}, ARM64); err != nil {
		t.Errorf("no probes: %v", err)
	}
}
