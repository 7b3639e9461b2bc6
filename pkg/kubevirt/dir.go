package kubevirt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

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
	// Firmware is what vm.yaml and vmi.yaml boot with (empty means BIOS);
	// EFI for a disk that carries no BIOS program.
	Firmware Firmware
	// UEFI lists the architectures whose UEFI firmware boots the disk
	// (the disk carries the ESP and their EFI applications). For each,
	// WriteDir also writes a VirtualMachine: vm-efi.yaml for amd64 (OVMF)
	// and vm-arm64.yaml for arm64 (AAVMF). Empty, for a BIOS-only disk,
	// writes neither.
	UEFI []Arch
}

// UEFIFile names the extra VirtualMachine WriteDir writes for an
// architecture in DirOptions.UEFI.
var UEFIFile = map[Arch]string{AMD64: "vm-efi.yaml", ARM64: "vm-arm64.yaml"}

// WriteDir writes dir/kubevirt/<kind>.yaml for every kind (vm.yaml,
// vmi.yaml, datavolume.yaml, datasource.yaml), named DefaultName and
// referencing Repo:Tag, then the UEFIFile VM of each DirOptions.UEFI
// architecture (in Arches order), and returns the paths in that order.
// Each file is written to a temp file and renamed, so a failure leaves no
// partial file.
func WriteDir(dir string, o DirOptions) ([]string, error) {
	for _, a := range o.UEFI {
		if !slices.Contains(Arches, a) {
			return nil, fmt.Errorf("%w %q: use %s", ErrArch, a, join(Arches))
		}
	}
	repo, tag := o.Repo, o.Tag
	if repo == "" {
		repo = DefaultRepo
	}
	if tag == "" {
		tag = DefaultTag
	}
	image := repo + ":" + tag
	names := make([]string, len(Kinds))
	manifests := make([][]byte, len(Kinds))
	for i, k := range Kinds {
		names[i] = string(k) + ".yaml"
		ko := Options{Kind: k, Image: image}
		switch k {
		case VM:
			ko.RunStrategy, ko.Firmware = o.RunStrategy, o.Firmware
		case VMI:
			ko.Firmware = o.Firmware
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
	for _, a := range Arches {
		if !slices.Contains(o.UEFI, a) {
			continue
		}
		// The arm64 VM is EFI by default; the amd64 one asks for it and
		// leaves the architecture to the cluster, as vm.yaml does.
		vo := Options{Kind: VM, Image: image, RunStrategy: o.RunStrategy, Firmware: EFI}
		if a != AMD64 {
			vo.Arch = a
		}
		b, err := Generate(vo)
		if err != nil {
			return nil, err
		}
		names = append(names, UEFIFile[a])
		manifests = append(manifests, b)
	}
	out := filepath.Join(dir, SubDir)
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, fmt.Errorf("kubevirt: %w", err)
	}
	paths := make([]string, len(names))
	for i, n := range names {
		paths[i] = filepath.Join(out, n)
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
