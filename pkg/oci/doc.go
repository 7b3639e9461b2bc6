// Package oci turns disk files into OCI images: one KubeVirt containerDisk
// per format (but ova), one OCI 1.1 artifact that holds every format, and
// KubeVirt's VM artifact of the raw disk, and writes them to an OCI image
// layout. It also extracts disk files from such
// images, refusing anything that could write outside the output directory.
//
// Data flows one way: the format writers (package formats) write files to a
// directory, and this package reads those files. Layers stream from the
// files, so a large raw disk is never held in memory.
//
// containerDisk (what KubeVirt's pkg/container-disk and CDI's registry
// importer read), one image per architecture under one index, so the
// node's runtime picks its own:
//
//	index     application/vnd.oci.image.index.v1+json
//	          platform linux/amd64, linux/arm64/v8 (WithArchitectures)
//	manifest  application/vnd.oci.image.manifest.v1+json, one per entry
//	config    application/vnd.oci.image.config.v1+json (linux/ARCH)
//	layer     application/vnd.oci.image.layer.v1.tar+gzip, the same blob
//	          in every entry:
//	          disk/                     dir  0555 107:107
//	          disk/512-byte-vm.<ext>    file 0444 107:107 qemu:qemu
//
// Artifact (what oras pull reads), following the OCI image spec v1.1.0
// "Guidelines for Artifact Usage"
// (https://github.com/opencontainers/image-spec/blob/v1.1.0/manifest.md):
//
//	artifactType  application/vnd.tinyvm-oci.disks.v1
//	config        the empty descriptor (application/vnd.oci.empty.v1+json, {})
//	layer         one gzip tar of 512-byte-vm/ and the files, titled
//	              512-byte-vm, with ORAS's unpack annotations
//
// KubeVirt's VM artifact (VEP 256; what kubevirt/kubevirt pkg/storage/oci
// writes and hack/oci-import.sh reads), see VirtualMachine:
//
//	index         artifactType application/vnd.kubevirt.virtualmachine.v1,
//	              linux/amd64 and linux/arm64 (WithVMArchitectures)
//	manifest      the same artifactType, one per architecture
//	config        application/vnd.kubevirt.virtualmachine.config.v1+json:
//	              the VirtualMachine, its disk on a PVC
//	layer         application/vnd.kubevirt.disk.raw+zstd, the same blob
//	              for every architecture
//
// Every time in the output comes from WithCreated (SOURCE_DATE_EPOCH), so
// the same files and options give the same digests. The gzip streams come
// from the standard library's compress/gzip, whose bytes may change between
// Go versions (the zstd stream comes from klauspost/compress, pinned in
// go.mod); docs/oci.md says which Go version the pinned digests in
// testdata/oci-digests.txt were made with.
//
// Package oci/remote pushes and pulls these images; this package never
// touches the network.
package oci
