package txn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn/txntest"
)

func writeString(s string) func(*os.File) error {
	return func(f *os.File) error {
		_, err := f.WriteString(s)
		return err
	}
}

// seed fills dir with a previous run's outputs and a user's files.
func seed(t *testing.T, dir string) {
	t.Helper()
	for name, data := range map[string]string{
		"a":             "old a",
		"layout/index":  "old index",
		"sub/keep.txt":  "user's",
		"user-file.txt": "user's",
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// stageAll stages a replaced file, a new file, a replaced directory and
// a file in a new directory.
func stageAll(t *testing.T, tx *Txn) {
	t.Helper()
	if _, err := tx.File("a", writeString("new a")); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.File("b", writeString("new b")); err != nil {
		t.Fatal(err)
	}
	d, err := tx.TempDir()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(d, "index"), []byte("new index"), 0o644)
	if err := tx.Add("layout", d, func(string) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.File("new/c", writeString("new c")); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.File("sub/d", writeString("new d")); err != nil {
		t.Fatal(err)
	}
}

func TestCommit(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "out")
	os.Mkdir(dir, 0o755)
	seed(t, dir)
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	stageAll(t, tx)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"a": "new a", "b": "new b", "layout/index": "new index", "new/c": "new c",
		"sub/d": "new d", "sub/keep.txt": "user's", "user-file.txt": "user's",
	} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	for _, name := range []string{"a", "b", "new/c"} {
		if st, _ := os.Stat(filepath.Join(dir, name)); st == nil || st.Mode().Perm() != 0o644 {
			t.Errorf("%s: mode %v, want 0644 under umask 077", name, st.Mode())
		}
	}
	for _, name := range []string{"layout", "new"} {
		if st, _ := os.Stat(filepath.Join(dir, name)); st == nil || st.Mode().Perm() != 0o755 {
			t.Errorf("%s: mode %v, want 0755 under umask 077", name, st.Mode())
		}
	}
	noTemps(t, dir)
	if err := tx.Commit(); !errors.Is(err, ErrDone) {
		t.Errorf("second Commit: %v", err)
	}
}

// TestFaultMidCommit fails each rename of a commit in turn: every time,
// the directory ends exactly as it was.
func TestFaultMidCommit(t *testing.T) {
	for k := 1; ; k++ {
		dir := t.TempDir()
		seed(t, dir)
		before := txntest.Snapshot(t, dir)
		tx, err := Begin(dir)
		if err != nil {
			t.Fatal(err)
		}
		stageAll(t, tx)
		n, fault := 0, errors.New("injected fault")
		rename := tx.rename
		tx.rename = func(oldname, newname string) error {
			if n++; n == k {
				return fault
			}
			return rename(oldname, newname)
		}
		err = tx.Commit()
		if err == nil {
			if k < 4 {
				t.Fatalf("only %d renames in a commit of five entries", k-1)
			}
			return // k is past the last rename: all were tried
		}
		if !errors.Is(err, fault) {
			t.Fatalf("rename %d: %v", k, err)
		}
		if strings.Contains(err.Error(), Prefix) {
			t.Errorf("rename %d: error names a temp path: %v", k, err)
		}
		if after := txntest.Snapshot(t, dir); after != before {
			t.Errorf("rename %d failed, and the directory changed:\nbefore:\n%s\nafter:\n%s", k, before, after)
		}
	}
}

func TestInTheWay(t *testing.T) {
	dir := t.TempDir()
	seed(t, dir)
	os.Mkdir(filepath.Join(dir, "isdir"), 0o755)
	before := txntest.Snapshot(t, dir)
	for _, tc := range []struct {
		name  string
		stage func(*Txn) error
		want  string
	}{
		{"directory where a file goes", func(tx *Txn) error {
			_, err := tx.File("isdir", writeString("x"))
			return err
		}, "isdir is a directory"},
		{"file where a directory goes", func(tx *Txn) error {
			_, err := tx.File("user-file.txt/x", writeString("x"))
			return err
		}, "user-file.txt is not a directory"},
		{"directory not approved", func(tx *Txn) error {
			d, _ := tx.TempDir()
			return tx.Add("sub", d, func(p string) error { return errors.New(p + " is not ours") })
		}, "sub is not ours"},
		{"directory, no approval asked", func(tx *Txn) error {
			d, _ := tx.TempDir()
			return tx.Add("sub", d, nil)
		}, "sub already exists"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := Begin(dir)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.File("fine", writeString("x")); err != nil {
				t.Fatal(err)
			}
			err = tc.stage(tx)
			if !errors.Is(err, ErrInTheWay) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("stage: %v, want ErrInTheWay naming %q", err, tc.want)
			}
			if cerr := tx.Commit(); cerr != err {
				t.Errorf("Commit = %v, want the first error %v", cerr, err)
			}
			if after := txntest.Snapshot(t, dir); after != before {
				t.Errorf("directory changed:\n%s", after)
			}
		})
	}
}

// TestRollbackRemovesCreated: a failed transaction in a directory that did
// not exist leaves no directory.
func TestRollbackRemovesCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	tx.File("x", writeString("x"))
	tx.Rollback()
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("rollback left %s: %v", filepath.Dir(dir), err)
	}
}

// TestRedact: an error from the writer names the target, not the temp.
func TestRedact(t *testing.T) {
	dir := t.TempDir()
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	_, err = tx.File("disk.raw", func(f *os.File) error {
		f.Close()
		_, err := f.Write([]byte("x")) // fails, naming f
		return err
	})
	if err == nil || strings.Contains(err.Error(), Prefix) || !strings.Contains(err.Error(), filepath.Join(dir, "disk.raw")) {
		t.Errorf("error %v: want the target's name and no temp name", err)
	}
	if !errors.Is(err, os.ErrClosed) {
		t.Errorf("redacted error lost its chain: %v", err)
	}
}

// TestStale: a staging directory left by a killed process (unlocked) goes
// at the next Begin; a live one, and names not ours, stay.
func TestStale(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, Prefix+"0123456789ab")
	os.MkdirAll(filepath.Join(stale, "1"), 0o700)
	os.WriteFile(filepath.Join(stale, "1", "disk"), []byte("half"), 0o644)
	staleFile := filepath.Join(dir, Prefix+"file")
	os.WriteFile(staleFile, nil, 0o644)
	users := []string{"tinyvm-oci-tmp-notes", ".tinyvm-oci-tmp", ".tinyvm-oci-tmpX", "x" + Prefix + "1"}
	for _, u := range users {
		os.WriteFile(filepath.Join(dir, u), []byte("mine"), 0o644)
	}
	live, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback()
	livePath, err := live.File("x", writeString("x"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stale, staleFile} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s survived: %v", p, err)
		}
	}
	tx, err := Begin(dir) // a second, concurrent transaction
	if err != nil {
		t.Fatal(err)
	}
	tx.Rollback()
	if _, err := os.Stat(livePath); err != nil {
		t.Errorf("a concurrent Begin removed a live transaction's file: %v", err)
	}
	for _, u := range users {
		if _, err := os.Stat(filepath.Join(dir, u)); err != nil {
			t.Errorf("user's %s removed: %v", u, err)
		}
	}
	if err := live.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestScratch(t *testing.T) {
	parent := t.TempDir()
	stale := filepath.Join(parent, Prefix+"0123456789ab")
	os.Mkdir(stale, 0o700)
	user := filepath.Join(parent, "tinyvm-run-mine")
	os.Mkdir(user, 0o700)
	dir, release, err := Scratch(parent)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(dir), Prefix) {
		t.Errorf("scratch %s lacks the prefix", dir)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale scratch survived: %v", err)
	}
	if _, err := os.Stat(user); err != nil {
		t.Errorf("user's directory removed: %v", err)
	}
	release()
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("release left %s", dir)
	}
}

func noTemps(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), Prefix) {
			t.Errorf("temp %s left", p)
		}
		return nil
	})
}

// TestConcurrentFiles stages files from many goroutines, as a build
// writes its formats: every file lands.
func TestConcurrentFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	tx, err := Begin(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			name := fmt.Sprintf("f%d", i)
			_, errs[i] = tx.File(name, writeString(name))
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for i := range errs {
		name := fmt.Sprintf("f%d", i)
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != name {
			t.Errorf("%s = %q, %v", name, got, err)
		}
	}
}

// TestConcurrentSameName stages one name twice at once: the second File
// is refused while the first is still writing.
func TestConcurrentSameName(t *testing.T) {
	tx, err := Begin(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := tx.File("twice", func(f *os.File) error {
			close(inside)
			<-release
			return nil
		})
		first <- err
	}()
	<-inside
	_, err = tx.File("twice", func(*os.File) error {
		t.Error("the second write of one name ran")
		return nil
	})
	close(release)
	if err == nil || !strings.Contains(err.Error(), "staged twice") {
		t.Errorf("second File of one name: %v, want a staged-twice error", err)
	}
	if err := <-first; err != nil {
		t.Errorf("first File: %v", err)
	}
}
