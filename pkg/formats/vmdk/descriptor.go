package vmdk

import (
	"fmt"
	"strings"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/internal/align"
)

// toolsVersion is what open-vmdk records when no VMware Tools version is
// known: the largest int32, read by VMware as "unknown".
const toolsVersion = "2147483647"

// descriptor returns the embedded descriptor text for a disk of capacity
// sectors. QEMU requires CID= and parentCID= in it; parentCID=ffffffff
// means the disk has no parent.
func descriptor(sub string, capacity uint64, extent string, id contentID) string {
	var b strings.Builder
	b.WriteString("# Disk DescriptorFile\n")
	b.WriteString("version=1\n")
	if sub == StreamOptimized {
		// open-vmdk's descriptor, which ESXi and ovftool accept.
		b.WriteString("encoding=\"UTF-8\"\n")
	}
	fmt.Fprintf(&b, "CID=%08x\n", id.cid())
	b.WriteString("parentCID=ffffffff\n")
	fmt.Fprintf(&b, "createType=%q\n", sub)
	b.WriteString("\n# Extent description\n")
	fmt.Fprintf(&b, "RW %d SPARSE %q\n", capacity, extent)
	b.WriteString("\n# The Disk Data Base\n#DDB\n\n")
	if sub == StreamOptimized {
		fmt.Fprintf(&b, "ddb.longContentID = \"%x\"\n", id[:])
	}
	b.WriteString("ddb.virtualHWVersion = \"4\"\n")
	if sub == StreamOptimized {
		// open-vmdk's geometry: 255 heads, 63 sectors, for an LSI Logic
		// SCSI adapter.
		fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", min(align.CeilDiv(capacity, 255*63), 65535))
		b.WriteString("ddb.geometry.heads = \"255\"\nddb.geometry.sectors = \"63\"\n")
		b.WriteString("ddb.adapterType = \"lsilogic\"\n")
		b.WriteString("ddb.toolsInstallType = \"4\"\n") // 4: unmanaged (open-vm-tools)
	} else {
		// QEMU's geometry for an IDE disk: 16 heads, 63 sectors, with
		// the cylinder count capped at the ATA limit of 16383.
		fmt.Fprintf(&b, "ddb.geometry.cylinders = \"%d\"\n", min(align.CeilDiv(capacity, 16*63), 16383))
		b.WriteString("ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\n")
		b.WriteString("ddb.adapterType = \"ide\"\n")
	}
	fmt.Fprintf(&b, "ddb.toolsVersion = %q\n", toolsVersion)
	return b.String()
}

// contentID is the 128-bit ddb.longContentID, a digest of the disk's
// content and options, so identical inputs give identical files.
type contentID [16]byte

// cid is the descriptor's 32-bit content ID: the last 32 bits of the long
// content ID, as open-vmdk relates them. 0xffffffff and 0xfffffffe are
// reserved (no parent / invalid), so they are moved off.
func (c contentID) cid() uint32 {
	v := uint32(c[12])<<24 | uint32(c[13])<<16 | uint32(c[14])<<8 | uint32(c[15])
	if v >= 0xfffffffe {
		v = 0x7ffffffe
	}
	return v
}

// parseCreateType returns the createType value of a descriptor, or "".
func parseCreateType(desc string) string {
	for _, line := range strings.Split(desc, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && strings.TrimSpace(k) == "createType" {
			return strings.Trim(strings.TrimSpace(v), "\"")
		}
	}
	return ""
}
