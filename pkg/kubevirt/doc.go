// Package kubevirt generates KubeVirt and CDI manifests for the 512-byte VM
// from the projects' own Go API types (kubevirt.io/api v1.8.0 and
// kubevirt.io/containerized-data-importer-api v1.64.0), marshalled with
// encoding/json and written with go-yaml, as sigs.k8s.io/yaml writes
// them. No text templates: a field that does not exist in the
// API cannot be written.
//
// Four kinds are generated:
//
//   - vm: a kubevirt.io/v1 VirtualMachine with a runStrategy, wrapping
//   - vmi: a kubevirt.io/v1 VirtualMachineInstance booting a containerDisk
//     on a virtio disk with BIOS firmware and the BIOS output on the serial
//     console, or with EFI firmware (Options.Firmware) and Secure Boot off,
//     on amd64 or arm64 (Options.Arch; arm64 is EFI only);
//   - datavolume: a cdi.kubevirt.io/v1beta1 DataVolume importing the image
//     from a registry (source.registry.url docker://REF) into a PVC;
//   - datasource: a cdi.kubevirt.io/v1beta1 DataSource naming that PVC, so
//     golden-image users can clone it.
//
// The figures come from the sources, pinned to the API versions above:
//
//   - Memory: KubeVirt's VMI admission webhook
//     (pkg/virt-api/webhooks/validating-webhook/admitters/vmi-create-admitter.go,
//     validateMemoryRequestsNegativeOrNull, tag v1.8.0) rejects a memory
//     request below 1M (10^6 bytes). libvirt rounds x86 guest memory up to a
//     whole MiB, so the smallest guest KubeVirt will start has 1 MiB, and
//     SeaBIOS cannot read the boot disk in 1 MiB ("Boot failed: could not
//     read the boot disk"). 2 MiB boots it; GuestMemory is therefore 2Mi.
//     TestMemoryFloorBootsInQEMU checks both facts against QEMU. UEFI
//     needs more: OVMF faults in 32 MiB and runs in 48 (OVMFMemoryMiB),
//     AAVMF faults in 64 MiB and runs in 128 (AAVMFMemoryMiB);
//     TestFirmwareMemoryFloors checks those.
//   - EFI: KubeVirt defaults spec.domain.firmware.bootloader.efi.secureBoot
//     to true, which needs SMM and signed applications, and its arm64
//     admission (pkg/virt-api/webhooks/arm64.go, tag v1.8.0) rejects EFI
//     without an explicit secureBoot: false, and BIOS altogether. The
//     manifests write secureBoot: false.
//   - Storage: CDI's DataVolume controller (pkg/controller/datavolume/util.go
//     renderPvcSpecVolumeSize, tag v1.64.0) rejects a storage request below
//     1 MiB, rounds the request up to whole MiB (util.DefaultAlignBlockSize)
//     and, for Filesystem volumes, adds the storage class's filesystem
//     overhead (default 6%) itself when the DataVolume uses spec.storage. So
//     the manifest asks for the virtual size rounded up to a MiB, at least
//     1 MiB, and does not add the overhead a second time.
package kubevirt
