package kubevirt

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// ExportDiskName names the disk and volume of ExportedVM: the name of the
// VM's root disk, which is no containerDisk there.
const ExportDiskName = "rootdisk"

// ExportArchitectures are the architectures ExportedVM writes a VM for.
var ExportArchitectures = []string{"amd64", "arm64"}

// ExportedVM returns the VirtualMachine the way KubeVirt's VM export writes
// it into the config blob of its OCI artifact (virt-exportserver's
// prepareVMConfig, kubevirt/kubevirt pkg/storage/oci): the vm kind's
// VirtualMachine for o, with its disk on the PersistentVolumeClaim claim
// instead of a containerDisk, spec.template.spec.architecture set to arch
// (the exporter's index platform comes from that field), and no namespace,
// which the exporter strips.
//
// amd64 boots with BIOS and the BIOS output on the serial console, as the
// vm kind does; arm64, which KubeVirt boots only with UEFI, gets EFI
// without Secure Boot.
//
// o must be for kind vm with no image and no namespace; only Name and
// RunStrategy apply.
func ExportedVM(o Options, claim, arch string) (*kubevirtv1.VirtualMachine, error) {
	if o.kind() != VM {
		return nil, fmt.Errorf("%w: an exported VM is kind vm, not %s", ErrOption, o.kind())
	}
	if o.Image != "" {
		return nil, fmt.Errorf("%w: an exported VM takes no image: its disk is the PVC %q", ErrOption, claim)
	}
	if o.Namespace != "" {
		return nil, fmt.Errorf("%w: an exported VM has no namespace: the importer chooses it", ErrOption)
	}
	if o.PullMethod != "" || o.Size != 0 || o.PVC != "" {
		return nil, fmt.Errorf("%w: an exported VM takes only a name and a run strategy", ErrOption)
	}
	if errs := validation.IsDNS1123Label(o.name()); len(errs) > 0 {
		return nil, fmt.Errorf("%w %q: %s", ErrName, o.name(), strings.Join(errs, "; "))
	}
	if o.RunStrategy != "" && !slices.Contains(RunStrategies, o.RunStrategy) {
		return nil, fmt.Errorf("%w %q: use %s", ErrRunStrategy, o.RunStrategy, join(RunStrategies))
	}
	if errs := validation.IsDNS1123Subdomain(claim); len(errs) > 0 {
		return nil, fmt.Errorf("%w PVC %q: %s", ErrName, claim, strings.Join(errs, "; "))
	}
	if !slices.Contains(ExportArchitectures, arch) {
		return nil, fmt.Errorf("%w: architecture %q: use %s", ErrOption, arch, strings.Join(ExportArchitectures, ", "))
	}

	// arm64 boots only with UEFI; vmiSpec then writes EFI without Secure
	// Boot and the firmware's memory floor.
	o.Arch = Arch(arch)
	if o.Arch == ARM64 {
		o.Firmware = EFI
	}
	spec := vmiSpec("", o)
	spec.Domain.Devices.Disks[0].Name = ExportDiskName
	spec.Volumes = []kubevirtv1.Volume{{
		Name: ExportDiskName,
		VolumeSource: kubevirtv1.VolumeSource{
			PersistentVolumeClaim: &kubevirtv1.PersistentVolumeClaimVolumeSource{
				PersistentVolumeClaimVolumeSource: corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
			},
		},
	}}
	rs := o.runStrategy()
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: metav1.ObjectMeta{Name: o.name()},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: &rs,
			Template:    &kubevirtv1.VirtualMachineInstanceTemplateSpec{Spec: spec},
		},
	}, nil
}
