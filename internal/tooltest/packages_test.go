package tooltest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestHintsListedForCI checks that every Debian package an install hint
// names is in .ci/packages.txt, the one list that .ci/run installs and the
// README points at: a hint for a package CI does not install would turn
// into a failure under TINYVM_REQUIRE_TOOLS=1 only on a clean machine.
func TestHintsListedForCI(t *testing.T) {
	listed := map[string]bool{}
	b, err := os.ReadFile("../../.ci/packages.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if line, _, _ = strings.Cut(line, "#"); strings.TrimSpace(line) != "" {
			listed[strings.TrimSpace(line)] = true
		}
	}
	files, err := parser.ParseDir(token.NewFileSet(), ".", func(fi os.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	hints := 0
	for _, pkg := range files {
		ast.Inspect(pkg, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, _ := strconv.Unquote(lit.Value)
			rest, ok := strings.CutPrefix(s, "apt-get install ")
			if !ok {
				return true
			}
			hints++
			for _, p := range strings.Fields(rest) {
				if !listed[p] {
					t.Errorf("install hint %q names %s, which .ci/packages.txt does not list", s, p)
				}
			}
			return true
		})
	}
	if hints == 0 {
		t.Fatal("found no apt-get install hints in package tooltest")
	}
}
