package efi_test

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// columnHeartbeat is a heartbeat line, matched wherever it starts.
var columnHeartbeat = regexp.MustCompile(`tinyvm heartbeat [0-9]+\r\n`)

// columnWait polls serial until ok holds for what came after the marker,
// the guest stops, or bootTimeout passes.
func columnWait(t *testing.T, p *qemu.Process, serial *qemu.Capture, why string, ok func(rest string) bool) {
	t.Helper()
	deadline := time.Now().Add(bootTimeout)
	for {
		out := serial.String()
		rest := out[strings.Index(out, marker)+len(marker):]
		if ok(rest) {
			return
		}
		select {
		case <-p.Done():
			t.Fatalf("%s: the guest stopped first; got %q", why, tail(out))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; got %q", why, bootTimeout, tail(out))
		}
	}
}

// TestProbeHeartbeatColumn types part of a line, lets heartbeats come,
// then types the rest of "poweroff": each heartbeat starts a line of its
// own (the application ends the typed line on screen first), and the
// line still powers off, as the whole line typed was "poweroff".
func TestProbeHeartbeatColumn(t *testing.T) {
	o := sector.Options{Then: sector.Wait, Probes: sector.Probes{Heartbeat: 100 * time.Millisecond, Echo: true}}
	raw := probeFile(t, o)
	for _, c := range []struct {
		name string
		o    qemu.Options
	}{
		{"ovmf-q35", uefi(raw, "q35", "virtio")},
		{"aavmf-virt", arm(raw)},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, w := console(t)
			c.o.Console = r
			p, serial := start(t, c.o)
			// After the first heartbeat the application is in its wait
			// loop, reading keys.
			columnWait(t, p, serial, "a heartbeat before typing", func(rest string) bool {
				return columnHeartbeat.MatchString(rest)
			})
			if _, err := w.Write([]byte("pow")); err != nil {
				t.Fatal(err)
			}
			columnWait(t, p, serial, `"pow" echoed, then two heartbeats`, func(rest string) bool {
				i := strings.LastIndexByte(rest, 'w')
				return i >= 0 && len(columnHeartbeat.FindAllString(rest[i:], -1)) >= 2
			})
			if _, err := w.Write([]byte("eroff\r")); err != nil {
				t.Fatal(err)
			}
			exits(t, p, `"pow", heartbeats, then "eroff" and CR`)

			out := serial.String()
			rest := out[strings.Index(out, marker)+len(marker):]
			for _, m := range columnHeartbeat.FindAllStringIndex(rest, -1) {
				// rest starts after the marker's CR LF, a line start.
				if m[0] > 0 && rest[m[0]-1] != '\n' {
					t.Errorf("a heartbeat at %d does not start a line: %q", m[0], rest[max(0, m[0]-20):m[1]])
				}
			}
			if strings.Contains(rest, "\n\r\n") {
				t.Errorf("an empty line: the typed line was ended when none was open: %q", tail(rest))
			}
			typed := strings.ReplaceAll(columnHeartbeat.ReplaceAllString(rest, ""), "\r\n", "")
			if typed != "poweroff" {
				t.Errorf("the echo without heartbeats and line ends is %q, want \"poweroff\"; got %q", typed, tail(rest))
			}
			if i, j := strings.IndexByte(rest, 'w'), strings.Index(rest, "eroff\r\n"); i < 0 || j < 0 ||
				len(columnHeartbeat.FindAllString(rest[i:j], -1)) < 2 {
				t.Errorf("want \"pow\", two heartbeats or more, then \"eroff\" CR LF; got %q", tail(rest))
			}
			t.Logf("%q", tail(rest))
		})
	}
}
