package sector_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/internal/probetest"
	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/qemu"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestHeartbeatEndsTypedLine types part of a line on COM1 while
// heartbeats run: each heartbeat still starts a line of its own (the
// program ends the typed line first), and the rest of the word, typed
// after the heartbeats, still powers off, since the matcher kept what
// was typed before them.
func TestHeartbeatEndsTypedLine(t *testing.T) {
	tooltest.Require(t, qemu.Binary, tooltest.QemuSystem)
	o := sector.Options{Layout: sector.Bare, Probes: sector.Probes{Heartbeat: sector.MinHeartbeat, Echo: true}}
	s, err := sector.Build(o)
	if err != nil {
		t.Fatal(err)
	}
	chunks := []disk.Chunk{{Off: 0, Data: s.Bytes()}}
	for _, r := range s.Reserved() {
		chunks = append(chunks, disk.Chunk{Off: r.LBA * disk.SectorSize, Data: r.Data})
	}
	d, err := disk.NewSparse(1<<20, chunks...)
	if err != nil {
		t.Fatal(err)
	}
	file := probetest.WriteRaw(t, d)
	console, typed, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer typed.Close()
	defer console.Close()
	serial := qemu.NewCapture()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := qemu.Start(ctx, qemu.Options{File: file, Serial: serial, Console: console})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	const wait = 60 * time.Second // generous for TCG under load; not asserted
	if !serial.WaitFor("tinyvm heartbeat 1\r\n", wait, p.Done()) {
		t.Fatalf("no heartbeat: %q", serial.String())
	}
	if _, err := typed.WriteString("pow"); err != nil {
		t.Fatal(err)
	}
	// A heartbeat may come due between the letters.
	pow := probetest.TypedRE("pow").String()
	if !serial.WaitForMatch(regexp.MustCompile(pow), wait, p.Done()) {
		t.Fatalf("pow not echoed: %q", serial.String())
	}
	after := regexp.MustCompile(pow + `(\r\n)?(tinyvm heartbeat [0-9]+\r\n){2}`)
	deadline := time.Now().Add(wait)
	for !after.MatchString(serial.String()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := typed.WriteString("eroff\r"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(wait):
		t.Fatalf("pow, heartbeats, eroff did not power off: %q", serial.String())
	}
	if err := p.Wait(); err != nil {
		t.Fatalf("QEMU: %v", err)
	}
	out := serial.String()
	if !regexp.MustCompile(pow + `\r\ntinyvm heartbeat `).MatchString(out) {
		t.Errorf("the heartbeat after the typed pow is not on a line of its own: %q", out)
	}
	for _, i := range regexp.MustCompile(`tinyvm heartbeat`).FindAllStringIndex(out, -1) {
		if i[0] == 0 || out[i[0]-1] != '\n' {
			t.Errorf("a heartbeat line at %d does not start a line: %q", i[0], out[max(0, i[0]-10):i[1]])
		}
	}
	// Without the heartbeat lines and line ends, the echo is the word.
	typedBack := regexp.MustCompile(`tinyvm heartbeat [0-9]+\r\n`).ReplaceAllString(out, "")
	if typedBack = strings.ReplaceAll(typedBack, "\r\n", ""); !strings.HasSuffix(typedBack, "poweroff") {
		t.Errorf("the echo, heartbeats left out, does not end in poweroff: %q", out)
	}
}
