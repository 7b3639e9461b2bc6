package kubevirt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	kubevirtv1 "kubevirt.io/api/core/v1"
)

// DefaultRepo is the placeholder registry repository build's manifests
// reference until the user pushes somewhere real.
const DefaultRepo = "registry.example.com/512vm"

// DefaultTag is the containerDisk tag the manifests use: the qcow2 image,
// the smaller of the two formats KubeVirt's containerDisk accepts.
const DefaultTag = "qcow2"

// SubDir is the directory under the build output that holds the manifests.
const SubDir = "kubevirt"

// DirOptions choose the manifests WriteDir writes.
type DirOptions struct {
	// Repo is the image repository (empty means DefaultRepo).
	Repo string
	// Tag is the containerDisk tag (empty means DefaultTag).
	Tag string
	// Size is the disk's virtual size in bytes, for the DataVolume's
	// storage request (0 means DefaultSize).
	Size int64
	// RunStrategy is the VirtualMachine's (empty means DefaultRunStrategy;
	// use Once for a VM built with --then poweroff).
	RunStrategy kubevirtv1.VirtualMachineRunStrategy
}

// WriteDir writes dir/kubevirt/<kind>.yaml for every kind (vm.yaml,
// vmi.yaml, datavolume.yaml, datasource.yaml), named DefaultName and
// referencing Repo:Tag, and returns the paths in Kinds order. Each file is
// written to a temp file and renamed, so a failure leaves no partial file.
func WriteDir(dir string, o DirOptions) ([]string, error) {
	repo, tag := o.Repo, o.Tag
	if repo == "" {
		repo = DefaultRepo
	}
	if tag == "" {
		tag = DefaultTag
	}
	image := repo + ":" + tag
	manifests := make([][]byte, len(Kinds))
	for i, k := range Kinds {
		ko := Options{Kind: k, Image: image}
		switch k {
		case VM:
			ko.RunStrategy = o.RunStrategy
		case DataVolume:
			ko.Size = o.Size
		case DataSource:
			ko.Image = ""
		}
		b, err := Generate(ko)
		if err != nil {
			return nil, err
		}
		manifests[i] = b
	}
	out := filepath.Join(dir, SubDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("kubevirt: %w", err)
	}
	paths := make([]string, len(Kinds))
	for i, k := range Kinds {
		paths[i] = filepath.Join(out, string(k)+".yaml")
		if err := writeAtomic(paths[i], manifests[i]); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// writeAtomic writes b to path through a temp file in the same directory.
func writeAtomic(path string, b []byte) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("kubevirt: %w", err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Chmod(0o644), f.Close()); err != nil {
		return fmt.Errorf("kubevirt: write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("kubevirt: %w", err)
	}
	return nil
}
