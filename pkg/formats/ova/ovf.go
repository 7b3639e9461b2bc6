package ova

import (
	"bytes"
	"encoding/xml"
	"fmt"
)

// OVF 1.0 namespaces (DSP0243 1.0.0, Annex B).
const (
	NamespaceOVF  = "http://schemas.dmtf.org/ovf/envelope/1"
	namespaceRASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
	namespaceVSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
	namespaceVMW  = "http://www.vmware.com/schema/ovf"
)

// diskFormat is the OVF disk format URI of a streamOptimized VMDK.
const diskFormat = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

// CIM resource types used in the hardware section.
const (
	resourceCPU    = 3
	resourceMemory = 4
	resourceIDE    = 5
	resourceDisk   = 17
)

// memoryMiB is the guest memory: the boot sector needs almost none, and
// 16 MiB is above every importer's minimum.
const memoryMiB = 16

// envelope returns the OVF descriptor for a VM called name whose disk
// file diskFile is fileSize bytes and holds a capacity-byte virtual disk,
// populated bytes of it allocated. Rasd and vssd elements are in the
// alphabetical order the CIM schemas' sequences require.
func envelope(name, diskFile string, fileSize, capacity, populated int64) []byte {
	var b bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		_ = xml.EscapeText(&e, []byte(s)) // a bytes.Buffer never fails
		return e.String()
	}
	n, f := esc(name), esc(diskFile)
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="%s" xmlns:ovf="%s" xmlns:rasd="%s" xmlns:vssd="%s" xmlns:vmw="%s">
  <References>
    <File ovf:href="%s" ovf:id="file1" ovf:size="%d"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="%d" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="%s" ovf:populatedSize="%d"/>
  </DiskSection>
  <VirtualSystem ovf:id="%s">
    <Info>A 512-byte x86 boot sector that prints Hello World! on COM1</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="1">
      <Info>The guest operating system</Info>
      <Description>Other</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-07</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>1 virtual CPU</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>%d</rasd:ResourceType>
        <rasd:VirtualQuantity>1</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>%d MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>%d</rasd:ResourceType>
        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>IDE controller</rasd:Description>
        <rasd:ElementName>ideController0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceType>%d</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>disk0</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>%d</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="bios"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, NamespaceOVF, NamespaceOVF, namespaceRASD, namespaceVSSD, namespaceVMW,
		f, fileSize,
		capacity, diskFormat, populated,
		n, n, n,
		resourceCPU,
		memoryMiB, resourceMemory, memoryMiB,
		resourceIDE,
		resourceDisk)
	return b.Bytes()
}
