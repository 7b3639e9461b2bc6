package probetest

import (
	"slices"
	"strings"
	"testing"
)

func TestDrive(t *testing.T) {
	for _, c := range []struct {
		got, want []string
	}{
		{Drive("virtio-blk-pci", "d0", "/a.raw", "raw", 0, ""),
			[]string{"-drive", "file=/a.raw,format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,bootindex=0"}},
		{Drive("ide-hd,bus=ide.0", "x1", "/b.qcow2", "qcow2", -1, ",readonly=on"),
			[]string{"-drive", "file=/b.qcow2,format=qcow2,if=none,id=x1,readonly=on", "-device", "ide-hd,bus=ide.0,drive=x1"}},
		{CD("ide-cd,bus=ide.2", "cd", "/c.iso", 3),
			[]string{"-drive", "file=/c.iso,format=raw,if=none,id=cd,media=cdrom,readonly=on", "-device", "ide-cd,bus=ide.2,drive=cd,bootindex=3"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

func TestLastHeartbeat(t *testing.T) {
	for out, want := range map[string]int{
		"":                   0,
		"tinyvm heartbeat 7": 0, // not ended: not a line yet
		"tinyvm heartbeat 9\r\ntinyvm heartbeat 10\r\n": 10,
		"\x1b[0mtinyvm heartbeat 3\r\nhello\r\n":        3,
	} {
		if got := LastHeartbeat(out); got != want {
			t.Errorf("LastHeartbeat(%q) = %d, want %d", out, got, want)
		}
	}
}

func TestEchoRE(t *testing.T) {
	re := EchoRE("hello")
	for out, want := range map[string]bool{
		"hello\r\n":                               true,
		"hell\r\ntinyvm heartbeat 3\r\no\r\n":     true, // a heartbeat mid-line
		"hello\r\ntinyvm heartbeat 3\r\n\r\n":     true, // before the CR
		"h\r\ntinyvm heartbeat 3\r\nello\r\n":     true,
		"hell\r\no\r\n":                           false, // a line break without a heartbeat
		"helo\r\n":                                false,
		"hell\r\ntinyvm heartbeat 3\r\nhello\r\n": true, // found later
		"hel\r\ntinyvm heartbeat x\r\nlo\r\n":     false,
		"hello":                                   false, // not ended
	} {
		if got := re.MatchString(out); got != want {
			t.Errorf("EchoRE(hello) on %q: %v, want %v", out, got, want)
		}
	}
	if re := TypedRE("pow"); !re.MatchString("p\r\ntinyvm heartbeat 2\r\now") || re.MatchString("po\r\nw") {
		t.Errorf("TypedRE(pow) = %s", re)
	}
}

func TestTail(t *testing.T) {
	long := strings.Repeat("a", 3000) + "end"
	if got := Tail(long); len(got) != 2003 || !strings.HasPrefix(got, "...") || !strings.HasSuffix(got, "end") {
		t.Errorf("Tail of %d bytes = %d bytes %q...", len(long), len(got), got[:10])
	}
	if got := Tail("short"); got != "short" {
		t.Errorf("Tail(short) = %q", got)
	}
}
