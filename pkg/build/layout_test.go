package build

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/txn/txntest"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// TestLayoutAsWriteLayout: the layout build makes while the formats are
// still being written (each file's images as soon as it is done) is, byte
// for byte, the one oci.WriteLayout makes of the finished files.
func TestLayoutAsWriteLayout(t *testing.T) {
	for _, o := range []Options{{}, {Size: 64 << 20}} {
		dir := t.TempDir()
		o.OCILayout = true
		res, err := Files(dir, o)
		if err != nil {
			t.Fatal(err)
		}
		var files []oci.File
		for _, f := range res.Files {
			files = append(files, oci.File{Path: f.Path, Format: f.Format})
		}
		want := filepath.Join(t.TempDir(), "oci")
		if err := oci.WriteLayout(want, files, append(o.ImageOptions(), oci.WithCreatedBy("tinyvm-oci build"))...); err != nil {
			t.Fatal(err)
		}
		if got, want := txntest.Snapshot(t, filepath.Join(dir, LayoutDir)), txntest.Snapshot(t, want); got != want {
			t.Errorf("size %d: build's layout differs from WriteLayout's:\n%s\nwant:\n%s", o.size(), got, want)
		}
	}
}

// TestLayoutFormatFails: a format that fails while the layout's images
// of the others are being made fails the build with its error, and
// leaves the directory as it was.
func TestLayoutFormatFails(t *testing.T) {
	dir := t.TempDir()
	if _, err := Files(dir, Options{Formats: []formats.Format{mustLookup(t, "raw")}}); err != nil {
		t.Fatal(err)
	}
	before := txntest.Snapshot(t, dir)
	errBroken := errors.New("broken writer")
	vhd := mustLookup(t, "vhd")
	vhd.Write = func(out io.Writer, d disk.Disk, o formats.Options) error {
		if _, err := out.Write(make([]byte, 4096)); err != nil {
			return err
		}
		return errBroken
	}
	fs := []formats.Format{mustLookup(t, "raw"), mustLookup(t, "qcow2"), vhd, mustLookup(t, "vmdk")}
	_, err := Files(dir, Options{Formats: fs, OCILayout: true, ImageRepo: "r.example/vm"})
	if !errors.Is(err, errBroken) {
		t.Fatalf("build with a broken vhd writer: %v, want its error", err)
	}
	if after := txntest.Snapshot(t, dir); after != before {
		t.Errorf("a failed build changed the directory:\n%s\nwant:\n%s", after, before)
	}
	if _, err := os.Stat(filepath.Join(dir, LayoutDir)); !os.IsNotExist(err) {
		t.Errorf("a failed build left %s: %v", LayoutDir, err)
	}
}

// TestManifestsTag: the KubeVirt manifests, made in the pool once the
// formats are written, point at qcow2 when it was built, else at raw;
// without either there are none, and a warning says why.
func TestManifestsTag(t *testing.T) {
	for _, c := range []struct {
		formats string
		tag     string
	}{
		{"raw,qcow2,vmdk", "qcow2"},
		{"vhd,raw", "raw"},
		{"vmdk,vdi", ""},
	} {
		fs, err := formats.Parse(c.formats)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		res, err := Files(dir, Options{Formats: fs, ImageRepo: "r.example/vm"})
		if err != nil {
			t.Fatal(err)
		}
		if c.tag == "" {
			if len(res.Manifests) != 0 || !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.HasPrefix(w, "KubeVirt manifests not written") }) {
				t.Errorf("%s: manifests %v, warnings %q: want none and the warning", c.formats, res.Manifests, res.Warnings)
			}
			if _, err := os.Stat(filepath.Join(dir, kubevirt.SubDir)); !os.IsNotExist(err) {
				t.Errorf("%s: %s is there: %v", c.formats, kubevirt.SubDir, err)
			}
			continue
		}
		if len(res.Manifests) == 0 {
			t.Fatalf("%s: no manifests", c.formats)
		}
		vm, err := os.ReadFile(filepath.Join(dir, kubevirt.SubDir, "vm.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if want := "image: r.example/vm:" + c.tag + "\n"; !strings.Contains(string(vm), want) {
			t.Errorf("%s: vm.yaml lacks %q:\n%s", c.formats, want, vm)
		}
	}
}
