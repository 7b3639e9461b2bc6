// Package txn writes a set of files and directories into one directory as
// one transaction: all of them appear, or none does.
//
// Every entry is first written into a staging directory inside the target
// directory (so that renames stay on one filesystem and are atomic). Commit
// checks that nothing is in the way, then renames the entries into place;
// if a rename fails midway, it puts back what it had already replaced.
// Rollback removes the staging directory. Nothing but the staged names is
// ever replaced, and nothing is deleted that the transaction did not write.
//
// Staging directories are named with Prefix and locked while in use, so
// that the next transaction in the same directory removes the ones a
// killed process left behind (and only those).
package txn

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Prefix starts the name of every temp entry this package makes.
const Prefix = ".tinyvm-oci-tmp-"

// Errors, wrapped with the path at fault.
var (
	// ErrInTheWay is something at a target name that the transaction may
	// not replace: a directory where a file goes, a file where a
	// directory goes, or a directory its owner did not approve.
	ErrInTheWay = errors.New("txn: in the way")
	// ErrDone is a use of a transaction after Commit or Rollback.
	ErrDone = errors.New("txn: already committed or rolled back")
)

// Txn is one transaction on a directory. File, TempDir and Add may be
// called concurrently (a build writes its formats in parallel); Commit
// and Rollback must come after they all returned.
type Txn struct {
	mu      sync.Mutex      // guards the fields below, not File's write
	pending map[string]bool // names File is writing
	dir     string
	root    *os.Root
	stage   string   // the staging directory's name in root
	lock    *os.File // holds the staging directory's lock
	created []string // directories Begin made, deepest first
	entries []entry
	temps   []string // TempDir names
	n       int      // names handed out in the staging directory
	err     error    // the first failure; Commit returns it
	done    bool
	// rename is root.Rename; tests make it fail.
	rename func(oldname, newname string) error
}

// entry is one staged file or directory.
type entry struct {
	name    string // target, slash-separated, relative to dir
	tmp     string // its content, a name in root under stage
	isDir   bool
	replace func(path string) error
}

// Begin starts a transaction on dir, creating it (mode 0755) if needed,
// and removes stale staging directories of earlier, killed runs there.
func Begin(dir string) (*Txn, error) {
	if dir == "" {
		return nil, errors.New("txn: no directory given")
	}
	created, err := mkdirAll(dir)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", dir, unwrapPath(err))
	}
	t := &Txn{dir: dir, created: created}
	if t.root, err = os.OpenRoot(dir); err != nil {
		t.removeCreated()
		return nil, fmt.Errorf("open %s: %w", dir, unwrapPath(err))
	}
	t.rename = t.root.Rename
	cleanStale(t.root)
	if t.stage, t.lock, err = newStage(t.root); err != nil {
		t.root.Close()
		t.removeCreated()
		return nil, fmt.Errorf("write %s: %w", dir, unwrapPath(err))
	}
	return t, nil
}

// Dir is the transaction's target directory.
func (t *Txn) Dir() string { return t.dir }

// Err is the first error of a File, TempDir or Add call, if any.
func (t *Txn) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// File stages a file that becomes name at Commit: write fills it (opened
// for reading too; mode 0644, whatever the umask). It returns where the
// content is until Commit, for the caller to read back. An error from
// write comes back with the temp name replaced by the target's, and
// nothing is staged; unlike the transaction's own errors, it does not
// make Commit fail, so the caller may leave an entry out and go on.
func (t *Txn) File(name string, write func(*os.File) error) (string, error) {
	t.mu.Lock()
	if err := t.usable(); err != nil {
		t.mu.Unlock()
		return "", err
	}
	if err := errors.Join(t.fresh(name), t.check(name, false, nil)); err != nil {
		defer t.mu.Unlock()
		return "", t.fail(err)
	}
	tmp := t.next()
	if t.pending == nil {
		t.pending = map[string]bool{}
	}
	t.pending[name] = true
	t.mu.Unlock()
	defer func() {
		t.mu.Lock()
		delete(t.pending, name)
		t.mu.Unlock()
	}()
	f, err := t.root.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.mu.Lock()
		defer t.mu.Unlock()
		return "", t.fail(fmt.Errorf("write %s: %w", t.Path(name), unwrapPath(err)))
	}
	werr := write(f)
	err = errors.Join(f.Chmod(0o644), f.Close())
	t.mu.Lock()
	defer t.mu.Unlock()
	if werr != nil || err != nil {
		t.root.Remove(tmp)
		names := map[string]string{f.Name(): t.Path(name), t.abs(tmp): t.Path(name)}
		if werr != nil {
			// The caller's own failure: it decides, the transaction goes on.
			return "", redact(werr, names)
		}
		return "", t.fail(redact(fmt.Errorf("write %s: %w", t.Path(name), err), names))
	}
	t.entries = append(t.entries, entry{name: name, tmp: tmp})
	return t.abs(tmp), nil
}

// TempDir makes an empty directory (mode 0755) in the staging area, for
// content that Add stages or for scratch space. It goes with the staging
// area unless Add stages it.
func (t *Txn) TempDir() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return "", err
	}
	tmp := t.next()
	if err := t.root.Mkdir(tmp, 0o755); err != nil {
		return "", t.fail(fmt.Errorf("write %s: %w", t.dir, unwrapPath(err)))
	}
	if err := t.root.Chmod(tmp, 0o755); err != nil {
		return "", t.fail(fmt.Errorf("write %s: %w", t.dir, unwrapPath(err)))
	}
	t.temps = append(t.temps, tmp)
	return t.abs(tmp), nil
}

// Add stages p, a file or directory inside a TempDir, to become name at
// Commit. A directory replaces an existing directory at name only when
// replace, given its path, approves (nil approves none); a file replaces
// any existing non-directory.
func (t *Txn) Add(name, p string, replace func(path string) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.usable(); err != nil {
		return err
	}
	rel, err := filepath.Rel(t.abs(t.stage), p)
	if err != nil || !filepath.IsLocal(rel) {
		return t.fail(fmt.Errorf("txn: %s is not in the staging area", p))
	}
	tmp := path.Join(t.stage, filepath.ToSlash(rel))
	st, err := t.root.Lstat(tmp)
	if err != nil {
		return t.fail(fmt.Errorf("txn: %w", err))
	}
	if err := errors.Join(t.fresh(name), t.check(name, st.IsDir(), replace)); err != nil {
		return t.fail(err)
	}
	t.entries = append(t.entries, entry{name: name, tmp: tmp, isDir: st.IsDir(), replace: replace})
	return nil
}

// Path is where name lands in the target directory.
func (t *Txn) Path(name string) string { return filepath.Join(t.dir, filepath.FromSlash(name)) }

// Redact replaces the staging paths in err's text with the target paths
// they stand for (a TempDir not added stands for the target directory),
// keeping err in the chain, so messages never show temp names.
func (t *Txn) Redact(err error) error {
	if err == nil {
		return nil
	}
	m := map[string]string{}
	for _, d := range t.temps {
		m[t.abs(d)] = t.dir // scratch space stands for the directory itself
	}
	for _, e := range t.entries {
		m[t.abs(e.tmp)] = t.Path(e.name)
	}
	m[t.abs(t.stage)] = t.dir
	return redact(err, m)
}

// Commit renames every staged entry into place, in the order staged. If
// anything is in the way, nothing is renamed; if a rename fails midway,
// the entries already renamed are taken out again and what they replaced
// is put back. Either way the staging area is removed.
func (t *Txn) Commit() error {
	if t.done {
		return ErrDone
	}
	if t.err != nil {
		t.finish(true)
		return t.err
	}
	for _, e := range t.entries {
		if err := t.check(e.name, e.isDir, e.replace); err != nil {
			t.finish(true)
			return err
		}
	}
	var undo []func() error
	rollback := func(err error) error {
		var failed []error
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				failed = append(failed, uerr)
			}
		}
		if len(failed) > 0 {
			// Keep the staging area: it holds what could not be put back.
			t.release()
			return errors.Join(append([]error{err}, failed...)...)
		}
		t.finish(true)
		return err
	}
	for i, e := range t.entries {
		for _, dir := range parents(e.name) {
			if _, err := t.root.Lstat(dir); err == nil {
				continue
			}
			if err := t.root.Mkdir(dir, 0o755); err != nil {
				return rollback(fmt.Errorf("create %s: %w", t.Path(dir), unwrapPath(err)))
			}
			t.root.Chmod(dir, 0o755)
			undo = append(undo, func() error { return t.root.Remove(dir) })
		}
		aside := path.Join(t.stage, "old-"+strconv.Itoa(i))
		out := path.Join(t.stage, "out-"+strconv.Itoa(i))
		_, err := t.root.Lstat(e.name)
		had := err == nil
		if had {
			// A file is linked aside, so that the rename below replaces it
			// atomically; a directory (or a file on a filesystem without
			// hard links) is moved aside. Either way, renaming aside back
			// to name restores it.
			if e.isDir || t.root.Link(e.name, aside) != nil {
				if err := t.rename(e.name, aside); err != nil {
					return rollback(fmt.Errorf("write %s: %w", t.Path(e.name), unwrapPath(err)))
				}
			}
			undo = append(undo, func() error { return t.restore(aside, e.name) })
		}
		if err := t.rename(e.tmp, e.name); err != nil {
			return rollback(fmt.Errorf("write %s: %w", t.Path(e.name), unwrapPath(err)))
		}
		if !had || e.isDir {
			// Take the new entry out again (first, for a directory).
			undo = append(undo, func() error { return t.restore(e.name, out) })
		}
	}
	t.finish(false)
	return nil
}

// restore renames oldname to newname, naming both in an error.
func (t *Txn) restore(oldname, newname string) error {
	if err := t.rename(oldname, newname); err != nil {
		return fmt.Errorf("txn: could not put back %s (it is at %s): %w", t.Path(newname), t.Path(oldname), unwrapPath(err))
	}
	return nil
}

// Rollback removes everything staged, and the directories Begin created
// if they are still empty. After Commit it does nothing, so it can be
// deferred.
func (t *Txn) Rollback() {
	if !t.done {
		t.finish(true)
	}
}

// finish ends the transaction, removing the staging area.
func (t *Txn) finish(failed bool) {
	t.root.RemoveAll(t.stage)
	t.release()
	if failed {
		t.removeCreated()
	}
}

// release unlocks and closes; the staging area is left as it is.
func (t *Txn) release() {
	t.done = true
	t.lock.Close()
	t.root.Close()
}

func (t *Txn) removeCreated() {
	for _, d := range t.created {
		os.Remove(d) // only if still empty
	}
}

func (t *Txn) usable() error {
	if t.done {
		return ErrDone
	}
	return t.err
}

func (t *Txn) fail(err error) error {
	if t.err == nil {
		t.err = err
	}
	return err
}

// next is a fresh name in the staging area.
func (t *Txn) next() string {
	t.n++
	return path.Join(t.stage, strconv.Itoa(t.n))
}

// abs is the path of a name in root.
func (t *Txn) abs(name string) string { return filepath.Join(t.dir, filepath.FromSlash(name)) }

// fresh reports an error if name is already staged.
func (t *Txn) fresh(name string) error {
	if t.pending[name] {
		return fmt.Errorf("txn: %s staged twice", t.Path(name))
	}
	for _, e := range t.entries {
		if e.name == name {
			return fmt.Errorf("txn: %s staged twice", t.Path(name))
		}
	}
	return nil
}

// check reports whether an entry may become name: a legal name, parents that are directories or absent, and nothing at
// name that the entry may not replace.
func (t *Txn) check(name string, isDir bool, replace func(string) error) error {
	if name == "" || !filepath.IsLocal(filepath.FromSlash(name)) || path.Clean(name) != name || strings.HasPrefix(name, Prefix) {
		return fmt.Errorf("txn: bad name %q", name)
	}
	for _, dir := range parents(name) {
		st, err := t.root.Lstat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", t.Path(name), unwrapPath(err))
		}
		if !st.IsDir() {
			return fmt.Errorf("%w: %s is not a directory", ErrInTheWay, t.Path(dir))
		}
	}
	st, err := t.root.Lstat(name)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("write %s: %w", t.Path(name), unwrapPath(err))
	case !isDir && st.IsDir():
		return fmt.Errorf("%w: %s is a directory, where a file goes: move it away", ErrInTheWay, t.Path(name))
	case isDir && !st.IsDir():
		return fmt.Errorf("%w: %s is not a directory: move it away", ErrInTheWay, t.Path(name))
	case isDir && replace == nil:
		return fmt.Errorf("%w: %s already exists: move it away", ErrInTheWay, t.Path(name))
	case isDir:
		if err := replace(t.Path(name)); err != nil {
			return fmt.Errorf("%w: %w", ErrInTheWay, err)
		}
	}
	return nil
}

// parents lists name's parent directories, outermost first.
func parents(name string) []string {
	var ds []string
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		ds = append([]string{d}, ds...)
	}
	return ds
}

// mkdirAll makes dir and its missing parents, mode 0755 whatever the
// umask, and returns those it made, deepest first.
func mkdirAll(dir string) ([]string, error) {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range missing {
		os.Chmod(d, 0o755)
	}
	return missing, nil
}

// newStage makes and locks a fresh staging directory in root.
func newStage(root *os.Root) (string, *os.File, error) {
	var err error
	for range 3 {
		name := Prefix + randomHex()
		if err = root.Mkdir(name, 0o700); err != nil {
			continue
		}
		var f *os.File
		if f, err = lockDir(root, name); err == nil {
			return name, f, nil
		}
		root.RemoveAll(name)
	}
	return "", nil, err
}

// lockDir opens and locks the directory name in root, and checks that a
// concurrent cleanup did not remove it before the lock was taken.
func lockDir(root *os.Root, name string) (*os.File, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	if ok, err := tryLock(f); err != nil || !ok {
		f.Close()
		return nil, errors.Join(errors.New("txn: staging directory locked"), err)
	}
	fst, err1 := f.Stat()
	pst, err2 := root.Lstat(name)
	if err1 != nil || err2 != nil || !os.SameFile(fst, pst) {
		f.Close()
		return nil, errors.New("txn: staging directory removed")
	}
	return f, nil
}

// cleanStale removes the entries in root named with Prefix that no live
// transaction holds: those a killed process left behind.
func cleanStale(root *os.Root) {
	d, err := root.Open(".")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, name := range names {
		if !strings.HasPrefix(name, Prefix) {
			continue
		}
		st, err := root.Lstat(name)
		if err != nil {
			continue
		}
		switch {
		case st.Mode().IsRegular():
			root.Remove(name)
		case st.IsDir():
			f, err := root.Open(name)
			if err != nil {
				continue
			}
			if ok, err := tryLock(f); err == nil && ok && stale(st) {
				root.RemoveAll(name)
			}
			f.Close()
		}
	}
}

// Scratch makes a private directory (mode 0700) named with Prefix in
// parent (os.TempDir() when empty), after removing stale ones there, and
// returns it with the function that removes it.
func Scratch(parent string) (string, func(), error) {
	if parent == "" {
		parent = os.TempDir()
	}
	root, err := os.OpenRoot(parent)
	if err != nil {
		return "", nil, fmt.Errorf("temp directory: %w", err)
	}
	defer root.Close()
	cleanStale(root)
	name, lock, err := newStage(root)
	if err != nil {
		return "", nil, fmt.Errorf("temp directory: %w", err)
	}
	dir := filepath.Join(parent, name)
	return dir, func() { os.RemoveAll(dir); lock.Close() }, nil
}

func randomHex() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// redacted is an error whose text has had temp paths replaced.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

func redact(err error, paths map[string]string) error {
	msg := err.Error()
	// Longer paths first, so that a directory does not cut a path inside
	// it short.
	for range len(paths) {
		long := ""
		for p := range paths {
			if len(p) > len(long) {
				long = p
			}
		}
		msg = replacePath(msg, long, paths[long])
		delete(paths, long)
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

// replacePath replaces old in s where it is a whole path or a leading
// part of one: staging name 1 must not match in 10.
func replacePath(s, old, new string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, old)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		end := i + len(old)
		if end < len(s) && (isNameByte(s[end])) {
			b.WriteString(s[:end])
		} else {
			b.WriteString(s[:i])
			b.WriteString(new)
		}
		s = s[end:]
	}
}

func isNameByte(c byte) bool {
	return c == '.' || c == '-' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// unwrapPath drops a *PathError or *LinkError, whose paths the caller
// names better.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
