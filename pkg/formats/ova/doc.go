// Package ova writes and inspects OVA files: a tar archive holding an OVF
// descriptor, the disk as a streamOptimized VMDK, and a manifest.
//
// Specifications: DMTF DSP0243 "Open Virtualization Format Specification"
// version 1.0.0 (2009-02-22,
// https://www.dmtf.org/sites/default/files/standards/documents/DSP0243_1.0.0.pdf),
// whose section 5.3 requires the descriptor to be the first file of the
// archive and the manifest, when present, to follow it or the disks; and
// the VMware "Virtual Disk Format 1.1" note for the disk (package vmdk).
//
// The archive is POSIX ustar with deterministic headers: every member has
// mode 0644, uid and gid 0, no user or group names, and the modification
// time of Options.Time (SOURCE_DATE_EPOCH). Its members, in order:
//
//	512-byte-vm.ovf         OVF 1.0 envelope (namespace http://schemas.dmtf.org/ovf/envelope/1)
//	512-byte-vm-disk1.vmdk  the disk, streamOptimized
//	512-byte-vm.mf          "SHA256(name)= hex" for the two files above
//
// The OVF is minimal but complete for VMware, VirtualBox and oVirt
// imports: one VirtualSystem with an "Other" operating system, a
// VirtualHardwareSection of family vmx-07 (a BIOS x86 machine; firmware
// is also stated as bios for VMware), one CPU, 16 MiB of memory, an IDE
// controller (from which every BIOS boots; no subtype, as in VMware's own
// descriptors, so each importer picks its default) and the disk on it. The
// Disk's ovf:capacity is the virtual size in bytes, the default unit.
//
// Writing streams: the VMDK is generated twice, once into a hash to learn
// its size and digest (the OVF and the tar header need both before its
// bytes), and once into the archive. The VMDK writer is deterministic, so
// the two passes agree, and nothing is buffered at all.
package ova
