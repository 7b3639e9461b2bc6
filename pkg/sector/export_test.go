package sector

import (
	"strings"
	"testing"
)

// CheckLines fails t for each "tinyvm " line of out that matches no line
// format of testdata/probes/lines.txt; the boot tests run it on what the
// guest printed.
func CheckLines(t *testing.T, out string) int {
	t.Helper()
	g := loadGolden(t)
	n := 0
	for _, line := range strings.Split(out, "\r\n") {
		if strings.HasPrefix(line, "tinyvm ") {
			n++
			if !MatchesGolden(g, line) {
				t.Errorf("serial line %q matches no format of testdata/probes/lines.txt", line)
			}
		}
	}
	return n
}
