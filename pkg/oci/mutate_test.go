package oci_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// mutationCount is how many mutants TestExtractMutations tries: enough
// to reach the tar and gzip parsers' error paths every run, few enough
// for CI (about a second).
const mutationCount = 3000

// mutationMax is the size limit the mutants are extracted with.
const mutationMax = 64 << 10

// TestExtractMutations is FuzzExtract's deterministic companion, since
// Go's fuzzer stalls on these machines: valid layers, as tar and as gzip,
// mutated from a fixed seed. Extract must not panic, must never inflate
// more than the size limit plus oci.HeaderSlack, and must fail only with
// the package's errors, leaving nothing behind.
func TestExtractMutations(t *testing.T) {
	seeds := mutationSeeds(t)
	var inflated int64
	oci.SetInflatedHook(func(n int64) { inflated += n })
	defer oci.SetInflatedHook(nil)

	rnd := rand.New(rand.NewPCG(12, 2024))
	counts := map[string]int{}
	base := t.TempDir()
	for i := range mutationCount {
		seed := seeds[rnd.IntN(len(seeds))]
		b := mutateBytes(rnd, seed)
		if rnd.IntN(2) == 0 {
			// Most edits of a header break its checksum; fixing it lets
			// the mutant past tar's first check to the paths behind.
			fixChecksums(b)
		}
		gzipped := rnd.IntN(4) == 0 // mutate the gzip stream itself
		if gzipped {
			b = mutateBytes(rnd, gzipOf(seed))
		}
		img, err := mutantImage(b, gzipped)
		if err != nil {
			continue // ggcr refuses to build it; Extract never sees it
		}
		inflated = 0
		kind := extractMutant(t, base, img, fmt.Sprintf("mutant %d (gzip %v)", i, gzipped), b)
		counts[kind]++
		if inflated > mutationMax+oci.HeaderSlack {
			t.Fatalf("mutant %d (gzip %v) inflated %d bytes, bound %d: %q", i, gzipped, inflated, mutationMax+oci.HeaderSlack, b)
		}
	}
	t.Logf("outcomes: %v", counts)
	// The mutants must reach more than one outcome, or the test proves
	// little.
	if len(counts) < 4 {
		t.Errorf("only outcomes %v", counts)
	}
}

// extractMutant runs Extract on img and checks its result; it returns
// the outcome's name.
func extractMutant(t *testing.T, base string, img v1.Image, what string, b []byte) (kind string) {
	t.Helper()
	parent, err := os.MkdirTemp(base, "")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(parent)
	out := filepath.Join(parent, "out")
	defer func() {
		if p := recover(); p != nil {
			t.Fatalf("%s: Extract panics: %v\ninput %q", what, p, b)
		}
	}()
	paths, err := oci.Extract(img, out, oci.WithMaxSize(mutationMax))
	ents, _ := os.ReadDir(out)
	if all, _ := os.ReadDir(parent); len(all) > 1 { // out itself is removed again
		t.Fatalf("%s: wrote outside the output directory: %v", what, all)
	}
	if err == nil {
		if len(paths) != 1 || len(ents) != 1 {
			t.Fatalf("%s: succeeded with %v, directory %v", what, paths, ents)
		}
		return "ok"
	}
	if len(ents) != 0 {
		t.Fatalf("%s: failed (%v) but left %v", what, err, ents)
	}
	for _, e := range []error{oci.ErrUnsafe, oci.ErrTooLarge, oci.ErrNoDisk, oci.ErrDigest, oci.ErrCorrupt} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	t.Fatalf("%s: error %v is none of the package's errors\ninput %q", what, err, b)
	return ""
}

// mutantImage makes a one-layer containerDisk of b: a tar that ggcr
// compresses, or (gzipped) the layer's compressed bytes as they are.
func mutantImage(b []byte, gzipped bool) (v1.Image, error) {
	var l v1.Layer
	var err error
	if gzipped {
		l = static.NewLayer(b, types.OCILayer)
	} else {
		l, err = tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
	}
	return mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), l)
}

// mutationSeeds are valid layers: a containerDisk's, one with a file
// outside disk/ and PAX names, one with several entries, one at the size
// limit.
func mutationSeeds(t *testing.T) [][]byte {
	t.Helper()
	build := func(hdrs ...*tar.Header) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, h := range hdrs {
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
			if h.Typeflag == tar.TypeReg {
				tw.Write(bytes.Repeat([]byte{0xeb, 0x3c, 0x90, 'x'}, int(h.Size)/4))
				tw.Write(make([]byte, int(h.Size)%4))
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	dir := func(name string) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o555, Uid: oci.QemuUID, Gid: oci.QemuUID}
	}
	reg := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o444, Size: size, Uid: oci.QemuUID, Gid: oci.QemuUID, Uname: oci.QemuUser, Gname: oci.QemuUser}
	}
	return [][]byte{
		build(dir("disk/"), reg("disk/512-byte-vm.raw", 4096)),
		build(reg("README", 100), dir("./disk/"), reg("./disk/"+string(bytes.Repeat([]byte("n"), 120))+".qcow2", 1000)),
		build(dir("etc/"), reg("etc/a", 10), dir("disk/"), reg("disk/a.vmdk", 512), reg("etc/b", 0)),
		build(dir("disk/"), reg("disk/full.raw", mutationMax)),
	}
}

// mutateBytes applies one to four random edits to a copy of seed.
func mutateBytes(rnd *rand.Rand, seed []byte) []byte {
	b := bytes.Clone(seed)
	for range 1 + rnd.IntN(4) {
		if len(b) == 0 {
			return b
		}
		at := rnd.IntN(len(b))
		switch rnd.IntN(7) {
		case 0: // flip a bit
			b[at] ^= 1 << rnd.IntN(8)
		case 1: // a random byte
			b[at] = byte(rnd.IntN(256))
		case 2: // an octal digit or NUL, as tar numbers are written
			b[at] = "01234567\x00 "[rnd.IntN(10)]
		case 3: // truncate
			b = b[:at]
		case 4: // a huge size field in the header block at or before at
			h := at - at%512
			if h+136 <= len(b) {
				copy(b[h+124:], "77777777777\x00")
			}
		case 5: // repeat a chunk
			end := min(len(b), at+1+rnd.IntN(1024))
			b = append(b[:end:end], b[at:]...)
		case 6: // insert random bytes
			ins := make([]byte, 1+rnd.IntN(64))
			for i := range ins {
				ins[i] = byte(rnd.IntN(256))
			}
			b = append(b[:at:at], append(ins, b[at:]...)...)
		}
	}
	return b
}

// fixChecksums rewrites the checksum of every ustar header block in b,
// as a writer would have.
func fixChecksums(b []byte) {
	for h := 0; h+512 <= len(b); h += 512 {
		blk := b[h : h+512]
		if string(blk[257:262]) != "ustar" {
			continue
		}
		copy(blk[148:156], "        ")
		var sum int64
		for _, c := range blk {
			sum += int64(c)
		}
		copy(blk[148:156], fmt.Sprintf("%06o\x00 ", sum))
	}
}

func gzipOf(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}
