package build

import (
	"testing"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// TestExportedVMRunStrategy: the VM artifact's VirtualMachine runs Once
// when the boot sector powers off, and Always otherwise, as the vm
// manifest of dir/kubevirt does.
func TestExportedVMRunStrategy(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want kubevirtv1.VirtualMachineRunStrategy
	}{
		{Options{}, kubevirtv1.RunStrategyAlways},
		{Options{Sector: sector.Options{Then: sector.PowerOff}}, kubevirtv1.RunStrategyOnce},
		// The user's own sector: nothing is known about what it does.
		{Options{Sector: sector.Options{Then: sector.PowerOff}, SectorFile: make([]byte, 512)}, kubevirtv1.RunStrategyAlways},
	} {
		vm, err := tc.o.ExportedVM("amd64")
		if err != nil {
			t.Fatal(err)
		}
		if got := *vm.Spec.RunStrategy; got != tc.want {
			t.Errorf("then %v, own sector %v: run strategy %s, want %s", tc.o.Sector.Then, tc.o.SectorFile != nil, got, tc.want)
		}
	}
}
