package kubevirt_test

import (
	"encoding/json"
	"errors"
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
)

func TestExportedVM(t *testing.T) {
	for _, arch := range kubevirt.ExportArchitectures {
		vm, err := kubevirt.ExportedVM(kubevirt.Options{RunStrategy: kubevirtv1.RunStrategyOnce}, "512vm", arch)
		if err != nil {
			t.Fatal(err)
		}
		// Marshalled as KubeVirt's exporter does, it decodes strictly.
		j, err := json.Marshal(vm)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := kubevirt.Decode(j)
		if err != nil {
			t.Fatalf("%s: %v\n%s", arch, err, j)
		}
		got := obj.(*kubevirtv1.VirtualMachine)
		spec := got.Spec.Template.Spec
		if got.Name != kubevirt.DefaultName || got.Namespace != "" || *got.Spec.RunStrategy != kubevirtv1.RunStrategyOnce || spec.Architecture != arch {
			t.Errorf("%s: %s", arch, j)
		}
		if len(spec.Volumes) != 1 || spec.Volumes[0].PersistentVolumeClaim == nil || spec.Volumes[0].PersistentVolumeClaim.ClaimName != "512vm" ||
			spec.Volumes[0].ContainerDisk != nil || spec.Volumes[0].Name != spec.Domain.Devices.Disks[0].Name {
			t.Errorf("%s volumes %+v", arch, spec.Volumes)
		}
		bl := spec.Domain.Firmware.Bootloader
		if arch == "amd64" && (bl.BIOS == nil || bl.EFI != nil) || arch == "arm64" && (bl.EFI == nil || bl.BIOS != nil || *bl.EFI.SecureBoot) {
			t.Errorf("%s bootloader %+v", arch, bl)
		}
	}
}

func TestExportedVMRefuses(t *testing.T) {
	for _, tc := range []struct {
		name        string
		o           kubevirt.Options
		claim, arch string
		want        error
	}{
		{"image", kubevirt.Options{Image: "example.com/512vm:raw"}, "512vm", "amd64", kubevirt.ErrOption},
		{"namespace", kubevirt.Options{Namespace: "default"}, "512vm", "amd64", kubevirt.ErrOption},
		{"kind", kubevirt.Options{Kind: kubevirt.VMI}, "512vm", "amd64", kubevirt.ErrOption},
		{"size", kubevirt.Options{Size: 1 << 20}, "512vm", "amd64", kubevirt.ErrOption},
		{"name", kubevirt.Options{Name: "Bad_Name"}, "512vm", "amd64", kubevirt.ErrName},
		{"run strategy", kubevirt.Options{RunStrategy: "Sometimes"}, "512vm", "amd64", kubevirt.ErrRunStrategy},
		{"claim", kubevirt.Options{}, "Bad/Claim", "amd64", kubevirt.ErrName},
		{"arch", kubevirt.Options{}, "512vm", "s390x", kubevirt.ErrOption},
	} {
		_, err := kubevirt.ExportedVM(tc.o, tc.claim, tc.arch)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}
