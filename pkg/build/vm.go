package build

import (
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
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
	return kubevirt.ExportedVM(ko, kubevirt.DefaultName, arch)
}
