package qemu

import (
	"os"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	args, err := Options{File: "a,b.img", Driver: "qcow2", Machine: "q35", Bus: "virtio"}.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"-machine q35", "-accel tcg", "file=a,,b.img,format=qcow2", "virtio-blk-pci,drive=d0,bootindex=0", "-serial stdio"} {
		if !strings.Contains(line, want) {
			t.Errorf("args %q lack %q", line, want)
		}
	}
	args, _ = Options{File: "x.iso", Bus: "cdrom"}.Args()
	if line := strings.Join(args, " "); !strings.Contains(line, "media=cdrom") || !strings.Contains(line, "ide-cd") {
		t.Errorf("cdrom args: %q", line)
	}
	args, _ = Options{File: "x.ova", Driver: "vmdk", Offset: 4096, Length: 16384}.Args()
	if line := strings.Join(args, " "); !strings.Contains(line, `"offset":4096`) || !strings.Contains(line, `"size":16384`) || !strings.Contains(line, `file=json:`) {
		t.Errorf("archive args: %q", line)
	}
}

func TestValidate(t *testing.T) {
	for _, o := range []Options{
		{}, {File: "f", Machine: "isapc"}, {File: "f", Bus: "usb"}, {File: "f", Accel: "hvf"},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

func TestArgsFirmware(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want []string
	}{
		{Options{File: "fat:/d", Firmware: "uefi", Machine: "q35", Bus: "virtio"}, []string{
			"-machine q35 ", "-m 64 ", "file=fat:/d,format=raw,if=none,id=d0,snapshot=on",
			"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode,
			"if=pflash,format=raw,unit=1,snapshot=on,file=" + OVMFVars,
		}},
		{Options{File: "d.raw", Arch: "arm64", NoACPI: true}, []string{"-machine virt,acpi=off "}},
		{Options{File: "d.raw", Arch: "arm64"}, []string{
			"-machine virt ", "-cpu cortex-a57", "-m 128 ", "virtio-blk-pci,drive=d0",
			"unit=0,readonly=on,file=" + AAVMFCode, "unit=1,snapshot=on,file=" + AAVMFVars,
		}},
		{Options{File: "d.raw", Firmware: "uefi", SecureBoot: true, Memory: 48}, []string{
			"-machine q35,smm=on ", "-m 48 ", "driver=cfi.pflash01,property=secure,value=on",
			"file=" + OVMFSecureCode, "file=" + OVMFSecureVars,
		}},
	} {
		args, err := c.o.Args()
		if err != nil {
			t.Fatalf("%+v: %v", c.o, err)
		}
		line := strings.Join(args, " ") + " "
		for _, want := range c.want {
			if !strings.Contains(line, want) {
				t.Errorf("%+v: args %q lack %q", c.o, line, want)
			}
		}
	}
	if args, _ := (Options{File: "d.raw"}).Args(); strings.Contains(strings.Join(args, " "), "pflash") {
		t.Errorf("SeaBIOS boot has pflash drives: %q", args)
	}
}

func TestValidateFirmware(t *testing.T) {
	for _, o := range []Options{
		{File: "f", Arch: "riscv64"},
		{File: "f", Firmware: "coreboot"},
		{File: "f", Arch: "arm64", Firmware: "bios"},
		{File: "f", Arch: "arm64", Machine: "q35"},
		{File: "f", Arch: "arm64", Bus: "ide"},
		{File: "f", Machine: "virt"},
		{File: "f", SecureBoot: true},
		{File: "f", Firmware: "uefi", SecureBoot: true, Machine: "pc"},
		{File: "f", Memory: -1},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		} else if strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: error spans lines: %q", o, err)
		}
	}
}

func TestArgsDisplay(t *testing.T) {
	args, err := Options{File: "d.raw", Display: "gtk", NoShutdown: true}.Args()
	if err != nil {
		t.Fatal(err)
	}
	line := strings.Join(args, " ")
	for _, want := range []string{"-display gtk ", "-serial stdio ", "-no-shutdown"} {
		if !strings.Contains(line, want) {
			t.Errorf("args %q lack %q", line, want)
		}
	}
	args, _ = Options{File: "d.raw"}.Args()
	if line := strings.Join(args, " "); !strings.Contains(line, "-display none ") || strings.Contains(line, "-no-shutdown") {
		t.Errorf("default args %q: want -display none and no -no-shutdown", line)
	}
	args, err = Options{File: "d.raw", Display: "curses", Terminal: os.Stdin}.Args()
	if line := strings.Join(args, " "); err != nil || !strings.Contains(line, "-display curses -serial vc ") {
		t.Errorf("curses args %q, %v: want the serial console on a vc", line, err)
	}
	cmd, _ := Options{File: "d.raw", Arch: "arm64"}.Command()
	if cmd[0] != BinaryARM || strings.Contains(strings.Join(cmd, " "), "ramfb") {
		t.Errorf("arm64 command %q: want %s, without a screen", cmd, BinaryARM)
	}
	if args, _ := (Options{File: "d.raw", Arch: "arm64", Screen: true}).Args(); !strings.Contains(strings.Join(args, " "), "-device ramfb") {
		t.Errorf("arm64 with a screen: %q lacks ramfb", args)
	}
	for _, o := range []Options{
		{File: "f", Display: "vnc"},
		{File: "f", Display: "curses"},
		{File: "f", Terminal: os.Stdin},
		{File: "f", Display: "curses", Terminal: os.Stdin, Serial: os.Stdout},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
