package build

import (
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// ExportedVM is the VirtualMachine KubeVirt's VM artifact of this build
// carries for arch (kubevirt.ExportedVM, its disk on the PVC
// kubevirt.DefaultName): like the vm manifest of dir/kubevirt, it runs
// Once when the boot sector powers itself off, so the VMI ends Succeeded
// instead of being restarted.
func (o Options) ExportedVM(arch string) (*kubevirtv1.VirtualMachine, error) {
	var ko kubevirt.Options
	if o.SectorFile == nil && o.Sector.Then == sector.PowerOff {
		ko.RunStrategy = kubevirtv1.RunStrategyOnce
	}
	if !o.Has(BIOS) {
		ko.Firmware = kubevirt.EFI // amd64 too: the disk has no BIOS program
	}
	return kubevirt.ExportedVM(ko, kubevirt.DefaultName, arch)
}

// ImageOptions are the pkg/oci options every image of this build takes:
// its time, version and revision; the architectures its containerDisks
// and VM artifact list, those the disk boots on (amd64 for BIOS, plus
// each EFI application's); and the VM artifact's VirtualMachine.
func (o Options) ImageOptions() []oci.Option {
	archs := o.Architectures()
	opts := []oci.Option{
		oci.WithCreated(o.Format.Stamp()),
		oci.WithRevision(o.Revision),
		oci.WithArchitectures(archs...),
		oci.WithVirtualMachine(o.ExportedVM),
		oci.WithVMArchitectures(archs...),
	}
	if o.Version != "" {
		opts = append(opts, oci.WithVersion(o.Version))
	}
	return opts
}
