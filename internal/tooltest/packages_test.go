package tooltest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
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
	// The hints live here and in the other test-helper packages under
	// internal/ (disktest, formattest, ...).
	dirs, err := filepath.Glob("../*")
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, "../../pkg/oci/ocitest")
	hints := 0
	for _, dir := range dirs {
		files, err := parser.ParseDir(token.NewFileSet(), dir, func(fi os.FileInfo) bool {
			return !strings.HasSuffix(fi.Name(), "_test.go")
		}, 0)
		if err != nil {
			t.Fatal(err)
		}
		hints += countHints(t, files, listed)
	}
	if hints == 0 {
		t.Fatal("found no apt-get install hints under internal/")
	}
}

// countHints checks the "apt-get install" literals of the packages
// against the list and returns how many it saw.
func countHints(t *testing.T, files map[string]*ast.Package, listed map[string]bool) int {
	t.Helper()
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
	return hints
}

// TestEveryPackageSummarizesSkips checks that each package whose tests
// call into tooltest runs them through tooltest.Main, so that a skip is
// never silent.
func TestEveryPackageSummarizesSkips(t *testing.T) {
	uses := map[string]bool{}
	hasMain := map[string]bool{}
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == "." {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if strings.Contains(string(b), "tooltest.") || strings.Contains(string(b), "formattest.") {
			uses[dir] = true
		}
		if strings.Contains(string(b), "tooltest.Main(m)") || strings.Contains(string(b), "tooltest.Run(m)") {
			hasMain[dir] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for dir := range uses {
		if !hasMain[dir] && filepath.Base(dir) != "tooltest" {
			t.Errorf("%s: tests use tooltest but no TestMain calls tooltest.Main(m) or tooltest.Run(m)", dir)
		}
	}
}

func TestSummary(t *testing.T) {
	if s := Summary(); s != "" {
		t.Fatalf("before any skip: %q", s)
	}
	t.Run("skip", func(t *testing.T) {
		if Required() {
			t.Skip("skips are failures here")
		}
		Missing(t, "frob not found: apt-get install frob")
	})
	if Required() {
		return
	}
	want := "tooltest: 1 tests skipped for missing tools: 1× frob not found: apt-get install frob"
	if s := Summary(); !strings.HasPrefix(s, want) {
		t.Errorf("Summary() = %q, want prefix %q", s, want)
	}
	skipped.Lock()
	clear(skipped.n)
	skipped.Unlock()
}
