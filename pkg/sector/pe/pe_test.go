package pe

import (
	"bytes"
	"debug/pe"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// code is a stand-in program whose length is not a multiple of Align.
var code = []byte{0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC, 0xCC}

func TestLayout(t *testing.T) {
	for _, m := range []Machine{AMD64, ARM64} {
		b, err := Write(m, code)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != 336 || len(b)%Align != 0 {
			t.Errorf("machine 0x%X: %d bytes, want 336", m, len(b))
		}
		if got := binary.LittleEndian.Uint32(b[lfanewOffset:]); got != peOffset {
			t.Errorf("e_lfanew = 0x%X, want 0x%X", got, peOffset)
		}
		if !bytes.Equal(b[HeaderSize:HeaderSize+len(code)], code) {
			t.Errorf("code is not at 0x%X", HeaderSize)
		}
		// debug/pe is an independent reader of the same format.
		f, err := pe.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("debug/pe: %v", err)
		}
		oh, ok := f.OptionalHeader.(*pe.OptionalHeader64)
		if !ok {
			t.Fatalf("optional header is %T, want PE32+", f.OptionalHeader)
		}
		if f.Machine != uint16(m) || oh.Subsystem != pe.IMAGE_SUBSYSTEM_EFI_APPLICATION {
			t.Errorf("machine 0x%X subsystem %d, want 0x%X and 10", f.Machine, oh.Subsystem, m)
		}
		if oh.AddressOfEntryPoint != HeaderSize || oh.NumberOfRvaAndSizes != numDirectories {
			t.Errorf("entry 0x%X, %d directories", oh.AddressOfEntryPoint, oh.NumberOfRvaAndSizes)
		}
		if len(f.Sections) != 1 {
			t.Fatalf("%d sections, want 1", len(f.Sections))
		}
		data, err := f.Sections[0].Data()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, code) || f.Sections[0].VirtualAddress != f.Sections[0].Offset {
			t.Errorf("section: RVA 0x%X offset 0x%X", f.Sections[0].VirtualAddress, f.Sections[0].Offset)
		}
	}
}

// TestMinimumSize checks the padding that keeps a tiny program loadable.
func TestMinimumSize(t *testing.T) {
	b, err := Write(AMD64, []byte{0xC3})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 336 || len(b) < minFileSize {
		t.Errorf("a 1-byte program makes %d bytes, want 336", len(b))
	}
	if _, err := pe.NewFile(bytes.NewReader(b)); err != nil {
		t.Errorf("debug/pe: %v", err)
	}
}

func TestErrors(t *testing.T) {
	if _, err := Write(AMD64, nil); !errors.Is(err, ErrNoCode) {
		t.Errorf("empty code: got %v, want ErrNoCode", err)
	}
	if _, err := Write(0x14C, code); err == nil || !strings.Contains(err.Error(), "0x8664") {
		t.Errorf("i386: got %v, want an error naming the machines allowed", err)
	}
}

// TestObjdump reads the files with binutils' PE reader, which knows the
// EFI machine types by name.
func TestObjdump(t *testing.T) {
	objdump := tooltest.Require(t, "objdump", tooltest.Binutils)
	for _, c := range []struct {
		m      Machine
		format string
	}{{AMD64, "pei-x86-64"}, {ARM64, "pei-aarch64-little"}} {
		b, err := Write(c.m, code)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "app.efi")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(objdump, "-p", "-h", path).CombinedOutput()
		if err != nil {
			t.Fatalf("objdump -p: %v\n%s", err, out)
		}
		for _, want := range []string{
			"file format " + c.format,
			`Magic\s+020b\s+\(PE32\+\)`,
			`Subsystem\s+0000000a\s+\(EFI application\)`,
			`AddressOfEntryPoint\s+0+120`,
			`SectionAlignment\s+00000010`,
			`FileAlignment\s+00000010`,
			`NumberOfRvaAndSizes\s+00000006`,
			`\.text\s+0000000b\s+0+10120\s+0+10120\s+00000120`, // size, VMA, LMA, file offset
			"READONLY, CODE",
		} {
			if !regexp.MustCompile(want).Match(out) {
				t.Errorf("%s: objdump output lacks %q:\n%s", c.format, want, out)
			}
		}
	}
}
