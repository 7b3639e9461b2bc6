// Package asmbuf is what the three assemblers (packages asm, x64 and a64)
// share: the bytes emitted so far, the labels defined, the references
// waiting for them (fix-ups) and a sticky first error. Each assembler
// encodes its own instructions and patches its own kinds of field.
package asmbuf

import "fmt"

// Fixup is a reference to a label, patched once every label is known.
type Fixup struct {
	At    int    // where the field (or the instruction holding it) starts
	End   int    // where the next instruction starts; x86 counts from it
	Label string // the label referred to
	Kind  int    // the assembler's own kind of field
}

// Buf accumulates a program. The zero value is not usable: use New.
type Buf struct {
	// Code is the program so far; encoders append to it.
	Code   []byte
	labels map[string]int
	fixups []Fixup
	err    error
	name   string // the assembler's package, prefixed to its errors
}

// New returns an empty Buf whose errors start with name, as "x64: ...".
func New(name string) Buf { return Buf{labels: map[string]int{}, name: name} }

// Len is the number of bytes emitted so far.
func (b *Buf) Len() int { return len(b.Code) }

// Err returns the first error, if any.
func (b *Buf) Err() error { return b.err }

// Fail records an error unless one came first.
func (b *Buf) Fail(format string, args ...any) {
	if b.err == nil {
		b.err = fmt.Errorf(b.name+": "+format, args...)
	}
}

// Emit appends bytes.
func (b *Buf) Emit(p ...byte) { b.Code = append(b.Code, p...) }

// Label defines name at the current position.
func (b *Buf) Label(name string) { b.Define(name, len(b.Code)) }

// Define defines name at off, which may lie outside the code (a fixed
// address, say); a name defined twice is an error.
func (b *Buf) Define(name string, off int) {
	if _, dup := b.labels[name]; dup {
		b.Fail("label %q defined twice", name)
		return
	}
	b.labels[name] = off
}

// Offset returns where a defined label is.
func (b *Buf) Offset(name string) (int, bool) {
	off, ok := b.labels[name]
	return off, ok
}

// Fix records a reference to patch when Resolve runs.
func (b *Buf) Fix(f Fixup) { b.fixups = append(b.fixups, f) }

// Resolve returns a copy of the code with every fix-up patched by patch,
// given the label's offset. The first error, a label never defined
// (undefined, wrapped with the name) or patch's, stops it.
func (b *Buf) Resolve(undefined error, patch func(out []byte, f Fixup, target int) error) ([]byte, error) {
	if b.err != nil {
		return nil, b.err
	}
	out := append([]byte(nil), b.Code...)
	for _, f := range b.fixups {
		target, ok := b.labels[f.Label]
		if !ok {
			return nil, fmt.Errorf("%w %q", undefined, f.Label)
		}
		if err := patch(out, f, target); err != nil {
			return nil, err
		}
	}
	return out, nil
}
