package oci

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestPAXRecord: the length that starts each record counts the whole
// record, also where adding its digits makes it a digit longer.
func TestPAXRecord(t *testing.T) {
	for n := 0; n < 1200; n++ {
		r := paxRecord("GNU.sparse.name", strings.Repeat("x", n))
		l, _, ok := strings.Cut(r, " ")
		if got, err := strconv.Atoi(l); !ok || err != nil || got != len(r) || !strings.HasSuffix(r, "\n") {
			t.Fatalf("value of %d bytes: record %q says %s, is %d bytes", n, r[:min(len(r), 40)], l, len(r))
		}
	}
}

// TestDataSegments: zero runs of minHole bytes or more become holes, at
// block granularity; shorter runs stay in the data.
func TestDataSegments(t *testing.T) {
	data := func(n int) string { return strings.Repeat("d", n) }
	zero := func(n int) string { return strings.Repeat("\x00", n) }
	for _, tc := range []struct {
		name, content string
		want          []segment
	}{
		{"empty", "", nil},
		{"all zero", zero(3 * minHole), nil},
		{"data only", data(1000), []segment{{0, 1000}}},
		{"short hole kept", data(512) + zero(minHole-512) + data(512), []segment{{0, minHole + 512}}},
		{"hole", data(512) + zero(minHole) + data(100), []segment{{0, 512}, {512 + minHole, 100}}},
		{"leading and trailing holes", zero(minHole) + data(512) + zero(minHole+7), []segment{{minHole, 512}}},
		{"short trailing zeros kept", data(512) + zero(100), []segment{{0, 612}}},
		// A block with any data is data: holes are whole blocks.
		{"unaligned data", zero(minHole+10) + "d" + zero(2*minHole), []segment{{minHole, 512}}},
	} {
		p := t.TempDir() + "/f"
		if err := writeFile(p, tc.content); err != nil {
			t.Fatal(err)
		}
		got, err := dataSegments(p, int64(len(tc.content)))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: segments %v, want %v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: segments %v, want %v", tc.name, got, tc.want)
			}
		}
	}
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }
