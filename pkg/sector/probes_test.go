package sector

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/arch/x86/x86asm"
)

func TestParseProbes(t *testing.T) {
	for _, c := range []struct {
		list string
		want Probes
		str  string
	}{
		{"", Probes{}, ""},
		{"heartbeat", Probes{Heartbeat: time.Second}, "heartbeat=1s"},
		{"heartbeat=250ms", Probes{Heartbeat: 250 * time.Millisecond}, "heartbeat=250ms"},
		{" ID , Echo ", Probes{ID: true, Echo: true}, "echo,id"},
		{"bootcount,disks,echo,heartbeat=2m,id", Probes{Heartbeat: 2 * time.Minute, Echo: true, Disks: true, BootCount: true, ID: true}, "heartbeat=2m0s,echo,disks,bootcount,id"},
	} {
		got, err := ParseProbes(c.list)
		if err != nil || got != c.want {
			t.Errorf("ParseProbes(%q) = %+v, %v; want %+v", c.list, got, err, c.want)
			continue
		}
		if got.String() != c.str || got.Any() != (c.str != "") {
			t.Errorf("%q: String %q Any %v, want %q", c.list, got.String(), got.Any(), c.str)
		}
		if back, err := ParseProbes(got.String()); err != nil || back != got {
			t.Errorf("%q: String does not parse back: %+v, %v", c.list, back, err)
		}
	}
	for _, c := range []struct {
		list string
		want error
		text string
	}{
		{"uptime", ErrBadProbe, "use heartbeat, echo, disks, bootcount, id"},
		{"echo,,id", ErrBadProbe, "empty name"},
		{"echo,echo", ErrBadProbe, `"echo" given twice`},
		{"disks=2", ErrBadProbe, `"disks" takes no value`},
		{"heartbeat=fast", ErrBadInterval, "not a duration"},
		{"heartbeat=10ms", ErrBadInterval, "use 100ms to 59m0s"},
		{"heartbeat=2h", ErrBadInterval, "2h0m0s; use 100ms to 59m0s"},
	} {
		_, err := ParseProbes(c.list)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text) || strings.Contains(err.Error(), "\n") {
			t.Errorf("ParseProbes(%q): %v, want %v with %q on one line", c.list, err, c.want, c.text)
		}
	}
}

func TestProbeValidate(t *testing.T) {
	for _, o := range []Options{
		{Then: PowerOff, Probes: Probes{Heartbeat: time.Second}},
		{Then: Halt, Probes: Probes{Echo: true}},
	} {
		if _, err := Build(o); !errors.Is(err, ErrProbeThen) || !strings.Contains(err.Error(), "not with --then") {
			t.Errorf("%+v: %v, want ErrProbeThen", o, err)
		}
	}
	if _, err := Build(Options{Probes: Probes{Heartbeat: time.Millisecond}}); !errors.Is(err, ErrBadInterval) {
		t.Errorf("a 1ms heartbeat built: %v", err)
	}
	for _, then := range Thens {
		if _, err := Build(Options{Then: then, Probes: Probes{Disks: true, BootCount: true, ID: true}}); err != nil {
			t.Errorf("boot-time probes with --then %s: %v", then, err)
		}
	}
	err := Probes{BootCount: true}.CheckReadOnly("iso")
	if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "iso is read-only") {
		t.Errorf("bootcount on an ISO: %v", err)
	}
	if err := (Probes{Heartbeat: time.Second, Echo: true, Disks: true, ID: true}).CheckReadOnly("iso"); err != nil {
		t.Errorf("read-only probes on an ISO: %v", err)
	}
}

// TestProbeLayouts checks the pieces and places of the two-stage program
// in both layouts, and that the default program is untouched.
func TestProbeLayouts(t *testing.T) {
	if s, _ := Build(Options{}); s.Stage2() != nil || s.Reserved() != nil || s.MinDiskSize() != Size || !bytes.Equal(s.BootImage(), s.Bytes()) {
		t.Error("the default program has a second stage")
	}
	for _, l := range []Layout{Bare, Partitioned} {
		o := Options{Layout: l, Timeout: time.Minute, Probes: Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}}
		s, err := Build(o)
		if err != nil {
			t.Fatal(err)
		}
		st := s.Stage2()
		if len(st) == 0 || len(st)%Size != 0 || len(st) > l.Stage2Budget() || !bytes.HasPrefix(st, []byte("TV")) {
			t.Errorf("layout %d: stage 2 of %d bytes, budget %d, head % x", l, len(st), l.Stage2Budget(), st[:4])
		}
		r := s.Reserved()
		if len(r) != 2 || r[0].LBA != l.Stage2LBA() || r[1].LBA != BootCountLBA || !bytes.Equal(r[0].Data, st) {
			t.Fatalf("layout %d: reserved %+v", l, r)
		}
		if r[0].LBA+int64(len(st)/Size) > BootCountLBA {
			t.Errorf("layout %d: stage 2 runs into the counter", l)
		}
		if s.Stage2Free() <= 0 || s.Stage2Free() > l.Stage2Budget()-len(st)+Size {
			t.Errorf("layout %d: Stage2Free %d with %d bytes of stage", l, s.Stage2Free(), len(st))
		}
		if s.MinDiskSize() != (BootCountLBA+1)*Size {
			t.Errorf("layout %d: MinDiskSize %d", l, s.MinDiskSize())
		}
		if s.Used() > l.Budget() || s.Bytes()[510] != 0x55 {
			t.Errorf("layout %d: loader takes %d of %d", l, s.Used(), l.Budget())
		}
		// The loader's DAP reads len(st)/512 sectors from the layout's LBA
		// to 0000:7E00.
		dap := []byte{16, 0, byte(len(st) / Size), 0, 0x00, 0x7E, 0, 0, byte(l.Stage2LBA()), 0, 0, 0, 0, 0, 0, 0}
		if !bytes.Contains(s.Bytes(), dap) {
			t.Errorf("layout %d: no DAP % x in the loader", l, dap)
		}
		// The CD boot image: the sector, then the stage at its LBA.
		img := s.BootImage()
		if int64(len(img)) != l.Stage2LBA()*Size+int64(len(st)) || !bytes.Equal(img[:Size], s.Bytes()) || !bytes.Equal(img[l.Stage2LBA()*Size:], st) {
			t.Errorf("layout %d: BootImage of %d bytes", l, len(img))
		}
		// The signature's id half is the id's first two bytes.
		if got, want := st[2:4], mustHex(t, o.ID())[:2]; !bytes.Equal(got, want) {
			t.Errorf("signature % x, want TV + % x", got, want)
		}
	}
	// Without bootcount there is no counter sector.
	s, _ := Build(Options{Probes: Probes{ID: true}})
	if r := s.Reserved(); len(r) != 1 || r[0].LBA != 1 {
		t.Errorf("id only: reserved %+v", r)
	}
	// The second stage's budget: one byte more than fits says so.
	_, err := Build(Options{Layout: Partitioned, Message: strings.Repeat("m", 15000), Probes: Probes{ID: true}})
	if !errors.Is(err, ErrTooBig) || !strings.Contains(err.Error(), "over its 14848 bytes (LBA 34-62)") {
		t.Errorf("a 15000-byte message with probes: %v", err)
	}
	fits := func(n int) error {
		_, err := Build(Options{Layout: Partitioned, Message: strings.Repeat("m", n), Probes: Probes{ID: true}})
		return err
	}
	base, _, _ := secondStage(Options{Message: "m", Probes: Probes{ID: true}}.withLayout(Partitioned), []byte("TV\x00\x00"))
	room := Partitioned.Stage2Budget() - len(base) + 1
	if err := fits(room); err != nil {
		t.Errorf("a message that exactly fits: %v", err)
	}
	if err := fits(room + 1); err == nil || !strings.Contains(err.Error(), ", 1 over") {
		t.Errorf("one byte over: %v", err)
	}
}

func (o Options) withLayout(l Layout) Options { o.Layout = l; return o }

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	var b []byte
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v = v<<4 | byte(strings.IndexRune("0123456789abcdef", c))
		}
		b = append(b, v)
	}
	return b
}

// TestProbeProgramsDecode walks both stages of several probe sets with
// x86asm, from the first instruction to the data.
func TestProbeProgramsDecode(t *testing.T) {
	sig := []byte("TV\x12\x34")
	for _, o := range []Options{
		{Probes: Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}, Timeout: time.Minute},
		{Then: PowerOff, Probes: Probes{Disks: true}},
		{Then: Halt, Serial: str(""), Probes: Probes{BootCount: true}},
		{Then: Reboot, Probes: Probes{ID: true}},
		{Probes: Probes{Echo: true}},
	} {
		two, end, err := secondStage(o, sig)
		if err != nil {
			t.Fatal(err)
		}
		walk(t, "stage 2", two, 4, end)
	}
	for _, lba := range []int64{1, 34} {
		one, end, err := firstStage(lba, 3, sig)
		if err != nil {
			t.Fatal(err)
		}
		walk(t, "stage 1", one, 0, end)
	}
}

// walk decodes code[start:end] instruction by instruction.
func walk(t *testing.T, what string, code []byte, start, end int) {
	t.Helper()
	if end <= start || end > len(code) {
		t.Fatalf("%s: data at %d of %d bytes", what, end, len(code))
	}
	for pc := start; pc < end; {
		inst, err := x86asm.Decode(code[pc:end], 16)
		if err != nil {
			t.Fatalf("%s: byte %d (% x): %v", what, pc, code[pc:min(pc+4, end)], err)
		}
		pc += inst.Len
	}
}

// failingReader fails every read.
type failingReader struct{}

func (failingReader) ReadAt([]byte, int64) (int, error) { return 0, errors.New("device gone") }

func TestReadBootCount(t *testing.T) {
	s, err := Build(Options{Probes: Probes{BootCount: true}})
	if err != nil {
		t.Fatal(err)
	}
	img := make([]byte, 1<<16)
	copy(img, s.Bytes())
	for _, r := range s.Reserved() {
		copy(img[r.LBA*Size:], r.Data)
	}
	if n, ok, err := ReadBootCount(bytes.NewReader(img)); n != 0 || !ok || err != nil {
		t.Errorf("fresh disk: %d, %v, %v; want 0, true", n, ok, err)
	}
	binary.LittleEndian.PutUint32(img[BootCountLBA*Size+16:], 70000)
	if n, ok, err := ReadBootCount(bytes.NewReader(img)); n != 70000 || !ok || err != nil {
		t.Errorf("after 70000 boots: %d, %v, %v", n, ok, err)
	}
	if _, ok, err := ReadBootCount(bytes.NewReader(img[:BootCountLBA*Size+10])); ok || err != nil {
		t.Errorf("a disk cut inside the counter: %v, %v; want no counter, no error", ok, err)
	}
	plain, _ := Build(Options{})
	if _, ok, err := ReadBootCount(bytes.NewReader(append(plain.Bytes(), make([]byte, 1<<16)...))); ok || err != nil {
		t.Errorf("a disk without the probe: %v, %v", ok, err)
	}
	if _, _, err := ReadBootCount(failingReader{}); err == nil || !strings.Contains(err.Error(), "device gone") {
		t.Errorf("a failing reader: %v", err)
	}
}

func TestID(t *testing.T) {
	a := Options{Probes: Probes{ID: true}}
	if a.ID() != a.ID() || !regexp.MustCompile(`^[0-9a-f]{8}$`).MatchString(a.ID()) {
		t.Fatalf("id %q", a.ID())
	}
	b := a
	b.Layout = Partitioned
	if a.ID() != b.ID() {
		t.Error("the layout changes the id; the BIOS and UEFI programs of one disk must agree")
	}
	// Defaults count as given: no Then is Wait.
	if (Options{Then: Wait, Probes: Probes{ID: true}}).ID() != a.ID() {
		t.Error("an explicit default changes the id")
	}
	seen := map[string]Options{}
	for _, o := range []Options{a, {Message: "x", Probes: a.Probes}, {Serial: str("disk B"), Probes: a.Probes},
		{Then: PowerOff, Probes: a.Probes}, {Timeout: time.Second, Probes: a.Probes}, {Probes: Probes{ID: true, Disks: true}}} {
		if prev, dup := seen[o.ID()]; dup {
			t.Errorf("%+v and %+v share id %s", prev, o, o.ID())
		}
		seen[o.ID()] = o
	}
}

// golden is one line format of testdata/probes/lines.txt.
type golden struct {
	probe   string
	re      *regexp.Regexp
	example string
}

// loadGolden reads the line formats and checks the version line.
func loadGolden(t *testing.T) []golden {
	t.Helper()
	f, err := os.Open("../../testdata/probes/lines.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []golden
	sc := bufio.NewScanner(f)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			if line != "# "+LinesVersion {
				t.Fatalf("the golden's first line is %q, want the version", line)
			}
			first = false
		}
		key, val, _ := strings.Cut(line, " ")
		switch key {
		case "probe":
			out = append(out, golden{probe: val})
		case "re":
			out[len(out)-1].re = regexp.MustCompile(val)
		case "example":
			out[len(out)-1].example = val
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLinesGolden checks the golden against itself and the program: each
// example matches its regexp, every fixed part of a line is in the second
// stage, and the lines built at build time match.
func TestLinesGolden(t *testing.T) {
	g := loadGolden(t)
	if len(g) != 6 {
		t.Fatalf("%d line formats in the golden, want 6", len(g))
	}
	for _, l := range g {
		if !l.re.MatchString(l.example) {
			t.Errorf("%s: example %q does not match %v", l.probe, l.example, l.re)
		}
	}
	o := Options{Probes: Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}}
	s, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{LineHeartbeat, LineBoot, LineDisks, LineVolume, LineError + ErrLineBootCount + "\r\n", LineID + o.ID() + "\r\n"} {
		if !bytes.Contains(s.Stage2(), []byte(part)) {
			t.Errorf("the second stage lacks %q", part)
		}
	}
	if !bytes.Contains(s.Bytes(), []byte(LineError+errStage2+"\r\n")) {
		t.Error("the loader lacks its error line")
	}
	for _, line := range []string{LineID + o.ID(), LineError + errStage2, LineError + ErrLineBootCount, LineHeartbeat + "1", LineBoot + "1", LineDisks + "0", LineVolume + "config-2"} {
		if !MatchesGolden(g, line) {
			t.Errorf("%q matches no line format of the golden", line)
		}
	}
}

// MatchesGolden reports whether line matches one of the formats.
func MatchesGolden(g []golden, line string) bool {
	for _, l := range g {
		if l.re.MatchString(line) {
			return true
		}
	}
	return false
}

// FuzzParseProbes: any input either fails with one line or parses to a
// set whose canonical form parses back to it.
func FuzzParseProbes(f *testing.F) {
	for _, s := range []string{"", "heartbeat", "heartbeat=1s,echo", "id,id", "disks=1", "bootcount, ID ,echo", "heartbeat=-1s", ",", "heartbeat=1h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		p, err := ParseProbes(list)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("%q: error spans lines: %q", list, err)
			}
			return
		}
		back, err := ParseProbes(p.String())
		if err != nil || back != p {
			t.Errorf("%q parses to %+v, whose form %q gives %+v, %v", list, p, p.String(), back, err)
		}
		if p.Heartbeat != 0 && (p.Heartbeat < MinHeartbeat || p.Heartbeat > MaxHeartbeat) {
			t.Errorf("%q: interval %v out of range accepted", list, p.Heartbeat)
		}
	})
}

func BenchmarkBuildProbes(b *testing.B) {
	o := Options{Layout: Partitioned, Probes: Probes{Heartbeat: time.Second, Echo: true, Disks: true, BootCount: true, ID: true}}
	for b.Loop() {
		if _, err := Build(o); err != nil {
			b.Fatal(err)
		}
	}
}
