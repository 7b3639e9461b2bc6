package qemu

import (
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
