package kubevirt

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/kubevirt")

const goldenDir = "../../testdata/kubevirt"

const (
	testImage  = "registry.example.com/512vm:qcow2"
	testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// goldenCases are the manifests pinned in testdata/kubevirt: each kind with
// defaults, plus variants that exercise every option.
var goldenCases = []struct {
	file string
	o    Options
}{
	{"vm.yaml", Options{Kind: VM, Image: testImage}},
	{"vmi.yaml", Options{Kind: VMI, Image: testImage}},
	{"datavolume.yaml", Options{Kind: DataVolume, Image: testImage}},
	{"datasource.yaml", Options{Kind: DataSource}},
	{"vm-once-pinned.yaml", Options{Kind: VM, Name: "fixture", Namespace: "ci", Image: testImage + "@" + testDigest, RunStrategy: kubevirtv1.RunStrategyOnce}},
	{"datavolume-node-10gib.yaml", Options{Kind: DataVolume, Name: "golden-512vm", Namespace: "os-images", Image: "ghcr.io/acme/512vm@" + testDigest, PullMethod: cdiv1.RegistryPullNode, Size: 10 << 30}},
	{"datasource-pvc.yaml", Options{Kind: DataSource, Name: "512vm", Namespace: "os-images", PVC: "golden-512vm"}},
	{"vm-efi.yaml", Options{Kind: VM, Image: testImage, Firmware: EFI}},
	{"vm-arm64.yaml", Options{Kind: VM, Image: testImage, Arch: ARM64}},
	{"vmi-efi-amd64.yaml", Options{Kind: VMI, Name: "512vm-efi", Image: testImage, Arch: AMD64, Firmware: EFI}},
}

func TestGolden(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.file, func(t *testing.T) {
			got, err := Generate(c.o)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(goldenDir, c.file)
			if *update {
				if err := os.MkdirAll(goldenDir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./pkg/kubevirt -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the golden file (go test ./pkg/kubevirt -update rewrites it):\ngot:\n%s\nwant:\n%s", c.file, got, want)
			}
			again, err := Generate(c.o)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second Generate differs: not deterministic")
			}
		})
	}
}

// TestStrictDecode decodes every generated manifest strictly, through
// apimachinery's strict serializer (by apiVersion and kind) and through
// sigs.k8s.io/yaml.UnmarshalStrict into the expected type, and checks that
// the object survives the round trip unchanged.
func TestStrictDecode(t *testing.T) {
	for _, c := range goldenCases {
		t.Run(c.file, func(t *testing.T) {
			b, err := Generate(c.o)
			if err != nil {
				t.Fatal(err)
			}
			want, err := Object(c.o)
			if err != nil {
				t.Fatal(err)
			}
			obj, err := Decode(b)
			if err != nil {
				t.Fatalf("strict decode: %v\n%s", err, b)
			}
			if reflect.TypeOf(obj) != reflect.TypeOf(want) {
				t.Fatalf("decoded %T, want %T", obj, want)
			}
			typed := reflect.New(reflect.TypeOf(want).Elem()).Interface()
			if err := yaml.UnmarshalStrict(b, typed); err != nil {
				t.Fatalf("UnmarshalStrict: %v", err)
			}
			if !equality.Semantic.DeepEqual(typed, want) {
				t.Errorf("UnmarshalStrict round trip changed the object:\n got %#v\nwant %#v", typed, want)
			}
			if !equality.Semantic.DeepEqual(obj, want) {
				t.Errorf("Decode round trip changed the object:\n got %#v\nwant %#v", obj, want)
			}
			again, err := Marshal(obj)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(again, b) {
				t.Errorf("decode and marshal changed the manifest:\n%s\nwas\n%s", again, b)
			}
		})
	}
}

// TestStrictDecodeRejects makes sure the strict decoding above can fail: an
// unknown field, a misspelt one and an unknown kind are each errors.
func TestStrictDecodeRejects(t *testing.T) {
	vm, err := Generate(Options{Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(old, new string) []byte { return bytes.Replace(vm, []byte(old), []byte(new), 1) }
	cases := map[string]struct {
		manifest []byte
		want     string
	}{
		"unknown field":                 {edit("  runStrategy: Always\n", "  runStrategy: Always\n  bogus: 1\n"), `unknown field "spec.bogus"`},
		"misspelt field":                {edit("useSerial", "useserial"), `unknown field "spec.template.spec.domain.firmware.bootloader.bios.useserial"`},
		"unknown field in the VMI spec": {edit("          guest: 2Mi\n", "          guest: 2Mi\n          bogus: 1\n"), `unknown field "spec.template.spec.domain.memory.bogus"`},
		"duplicate field":               {edit("  runStrategy: Always\n", "  runStrategy: Always\n  runStrategy: Once\n"), `key "runStrategy" already set`},
		"misspelt EFI field":            {efiEdit(t, "secureBoot", "secureboot"), `unknown field "spec.template.spec.domain.firmware.bootloader.efi.secureboot"`},
		"misspelt architecture":         {archEdit(t, "      architecture: arm64\n", "      arch: arm64\n"), `unknown field "spec.template.spec.arch"`},
		"unknown kind":                  {edit("kind: VirtualMachine\n", "kind: VirtualMachineX\n"), `unknown apiVersion "kubevirt.io/v1" kind "VirtualMachineX"`},
		"old apiVersion":                {edit("apiVersion: kubevirt.io/v1\n", "apiVersion: kubevirt.io/v1alpha9\n"), `unknown apiVersion`},
	}
	for name, c := range cases {
		if bytes.Equal(c.manifest, vm) {
			t.Fatalf("%s: the edit did not apply", name)
		}
		_, err := Decode(c.manifest)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: Decode error %v, want one containing %q", name, err, c.want)
		}
	}
	if err := yaml.UnmarshalStrict(cases["unknown field"].manifest, &kubevirtv1.VirtualMachine{}); err == nil {
		t.Error("UnmarshalStrict accepted an unknown field")
	}
}

// efiEdit and archEdit edit the EFI and the arm64 VM as TestStrictDecodeRejects edits the default one.
func efiEdit(t *testing.T, old, new string) []byte {
	t.Helper()
	return editOf(t, Options{Image: testImage, Firmware: EFI}, old, new)
}

func archEdit(t *testing.T, old, new string) []byte {
	t.Helper()
	return editOf(t, Options{Image: testImage, Arch: ARM64}, old, new)
}

func editOf(t *testing.T, o Options, old, new string) []byte {
	t.Helper()
	b, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	e := bytes.Replace(b, []byte(old), []byte(new), 1)
	if bytes.Equal(e, b) {
		t.Fatalf("%q is not in the manifest:\n%s", old, b)
	}
	return e
}

// TestNoNoise checks the clean-up: no status, no null timestamps, no empty
// resources.
func TestNoNoise(t *testing.T) {
	for _, c := range goldenCases {
		b, err := Generate(c.o)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"status:", "creationTimestamp", "resources: {}", "metadata: {}", "null"} {
			if bytes.Contains(b, []byte(bad)) {
				t.Errorf("%s contains %q:\n%s", c.file, bad, b)
			}
		}
	}
}

// TestMarshalAsSigsYAML checks that Marshal, which hands its pruned map
// to go-yaml itself, writes what sigs.k8s.io/yaml.Marshal (JSON, then
// go-yaml's parse of that JSON, then go-yaml) writes for the same value:
// strings go-yaml must quote, numbers past float64's precision and past
// int64, JSON's escaped HTML characters, key order. The goldens pin the
// real manifests, which sigs.k8s.io/yaml wrote.
func TestMarshalAsSigsYAML(t *testing.T) {
	values := map[string]any{
		"strings": []any{"true", "no", "~", "null", "1", "0x10", "1e3", "1Mi", "", " lead", "a: b", "- x", "#c",
			"<&>", "ünïcødé", "multi\nline", "tab\there", `"quoted"`, "'single'", "*alias", "&anchor", "{}", "[]"},
		"ints":   []any{0, -1, 1 << 53, 1<<53 + 1, math.MaxInt64, math.MinInt64, uint64(math.MaxUint64)},
		"floats": []any{0.5, -2.25, 1e21, 1e-7, 3.0},
		"bools":  []any{true, false},
		"nil":    nil,
		"nested": map[string]any{"b": map[string]any{}, "a": []any{map[string]any{"z": 1, "y": "2"}, []any{}}},
		"Upper":  "key order",
	}
	got, err := Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	want, err := yaml.Marshal(values)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Marshal differs from sigs.k8s.io/yaml.Marshal:\ngot:\n%s\nwant:\n%s", got, want)
	}
}

// TestMetadataValid runs apimachinery's ObjectMeta validation, the
// API server's own, over every object.
func TestMetadataValid(t *testing.T) {
	for _, c := range goldenCases {
		o := c.o
		if o.Namespace == "" {
			o.Namespace = "default"
		}
		obj, err := Object(o)
		if err != nil {
			t.Fatal(err)
		}
		meta := obj.(metav1.Object)
		om := metav1.ObjectMeta{Name: meta.GetName(), Namespace: meta.GetNamespace()}
		if errs := apivalidation.ValidateObjectMeta(&om, true, apivalidation.NameIsDNSSubdomain, field.NewPath("metadata")); len(errs) > 0 {
			t.Errorf("%s: %v", c.file, errs.ToAggregate())
		}
	}
}

func TestVMNamesAgree(t *testing.T) {
	for _, c := range goldenCases {
		if c.o.Kind != VM && c.o.Kind != VMI {
			continue
		}
		b, err := Generate(c.o)
		if err != nil {
			t.Fatal(err)
		}
		obj, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		var spec kubevirtv1.VirtualMachineInstanceSpec
		switch v := obj.(type) {
		case *kubevirtv1.VirtualMachine:
			spec = v.Spec.Template.Spec
		case *kubevirtv1.VirtualMachineInstance:
			spec = v.Spec
		}
		disks, vols := spec.Domain.Devices.Disks, spec.Volumes
		if len(disks) != 1 || len(vols) != 1 {
			t.Fatalf("%s: %d disks, %d volumes; want one of each", c.file, len(disks), len(vols))
		}
		if disks[0].Name != vols[0].Name {
			t.Errorf("%s: disk %q but volume %q", c.file, disks[0].Name, vols[0].Name)
		}
		if vols[0].ContainerDisk == nil {
			t.Fatalf("%s: volume %q is not a containerDisk", c.file, vols[0].Name)
		}
		if disks[0].Disk == nil || disks[0].Disk.Bus != kubevirtv1.DiskBusVirtio {
			t.Errorf("%s: disk is not on virtio: %+v", c.file, disks[0].DiskDevice)
		}
		want, _ := PinnedImage(c.o.Image)
		if vols[0].ContainerDisk.Image != want {
			t.Errorf("%s: containerDisk image %q, want %q", c.file, vols[0].ContainerDisk.Image, want)
		}
		if spec.Architecture != string(c.o.Arch) {
			t.Errorf("%s: architecture %q, want %q", c.file, spec.Architecture, c.o.Arch)
		}
		fw := spec.Domain.Firmware
		if fw == nil || fw.Bootloader == nil {
			t.Fatalf("%s: no bootloader", c.file)
		}
		bl := fw.Bootloader
		if c.o.firmware() == BIOS {
			if bl.EFI != nil || bl.BIOS == nil || bl.BIOS.UseSerial == nil || !*bl.BIOS.UseSerial {
				t.Errorf("%s: want BIOS with useSerial, got %+v", c.file, bl)
			}
		} else if bl.BIOS != nil || bl.EFI == nil || bl.EFI.SecureBoot == nil || *bl.EFI.SecureBoot {
			// KubeVirt defaults secureBoot to true, which needs SMM and
			// signed applications: it must be false, and written.
			t.Errorf("%s: want EFI with secureBoot false, got %+v", c.file, bl)
		}
		if mem := spec.Domain.Memory.Guest; mem == nil || mem.Cmp(GuestMemoryFor(c.o.Arch, c.o.firmware())) != 0 {
			t.Errorf("%s: guest memory %v, want the %s floor", c.file, mem, c.o.firmware())
		}
		if spec.Architecture == string(ARM64) {
			if causes := arm64Rejects(spec); len(causes) > 0 {
				t.Errorf("%s: KubeVirt's arm64 admission would reject it: %v", c.file, causes)
			}
		}
		if g := spec.TerminationGracePeriodSeconds; g == nil || *g <= 0 || *g >= kubevirtv1.DefaultGracePeriodSeconds {
			t.Errorf("%s: terminationGracePeriodSeconds %v, want small but above 0 (ACPI shutdown)", c.file, g)
		}
	}
}

// arm64Rejects applies the rules of KubeVirt v1.8.0's arm64 admission
// (pkg/virt-api/webhooks/arm64.go, ValidateVirtualMachineInstanceArm64Setting)
// to a VMI spec and returns what it would reject: a BIOS bootloader, EFI
// without an explicit secureBoot: false (KubeVirt's default is true), a
// disk bus other than virtio or scsi, a CPU model other than
// host-passthrough, a watchdog or a sound device.
func arm64Rejects(spec kubevirtv1.VirtualMachineInstanceSpec) []string {
	var out []string
	if fw := spec.Domain.Firmware; fw != nil && fw.Bootloader != nil {
		if fw.Bootloader.BIOS != nil {
			out = append(out, "bios boot")
		}
		if efi := fw.Bootloader.EFI; efi != nil && (efi.SecureBoot == nil || *efi.SecureBoot) {
			out = append(out, "secure boot")
		}
	}
	for _, d := range spec.Domain.Devices.Disks {
		if d.Disk != nil && d.Disk.Bus != "" && d.Disk.Bus != kubevirtv1.DiskBusVirtio && d.Disk.Bus != kubevirtv1.DiskBusSCSI {
			out = append(out, "disk bus "+string(d.Disk.Bus))
		}
	}
	if cpu := spec.Domain.CPU; cpu != nil && cpu.Model != "" && cpu.Model != kubevirtv1.CPUModeHostPassthrough {
		out = append(out, "cpu model "+cpu.Model)
	}
	if spec.Domain.Devices.Watchdog != nil {
		out = append(out, "watchdog")
	}
	if spec.Domain.Devices.Sound != nil {
		out = append(out, "sound")
	}
	return out
}

// TestArm64RulesCanFail shows arm64Rejects rejects what KubeVirt does:
// the default BIOS VM moved to arm64, and EFI left to KubeVirt's default.
func TestArm64RulesCanFail(t *testing.T) {
	obj, err := Object(Options{Kind: VMI, Image: testImage})
	if err != nil {
		t.Fatal(err)
	}
	spec := obj.(*kubevirtv1.VirtualMachineInstance).Spec
	if got := arm64Rejects(spec); len(got) != 1 || got[0] != "bios boot" {
		t.Errorf("the BIOS VM on arm64: %v, want bios boot rejected", got)
	}
	spec.Domain.Firmware.Bootloader = &kubevirtv1.Bootloader{EFI: &kubevirtv1.EFI{}}
	if got := arm64Rejects(spec); len(got) != 1 || got[0] != "secure boot" {
		t.Errorf("EFI with the default secureBoot on arm64: %v, want secure boot rejected", got)
	}
}

// TestMemoryAcceptedByKubeVirt checks GuestMemory against KubeVirt v1.8.0's
// admission rule: a memory request (defaulted from memory.guest) below 1M is
// rejected.
func TestMemoryAcceptedByKubeVirt(t *testing.T) {
	if GuestMemory.Cmp(resource.MustParse("1M")) < 0 {
		t.Errorf("GuestMemory %s is below KubeVirt's 1M minimum", GuestMemory.String())
	}
	if GuestMemory.Value()%mib != 0 {
		t.Errorf("GuestMemory %s is not whole MiB: libvirt would round it", GuestMemory.String())
	}
	for _, c := range []struct {
		a    Arch
		f    Firmware
		want string
	}{
		{"", BIOS, "2Mi"}, {AMD64, BIOS, "2Mi"}, {"", EFI, "48Mi"}, {AMD64, EFI, "48Mi"}, {ARM64, EFI, "128Mi"},
	} {
		if got := GuestMemoryFor(c.a, c.f); got.String() != c.want {
			t.Errorf("GuestMemoryFor(%q, %s) = %s, want %s", c.a, c.f, got.String(), c.want)
		}
	}
}

func TestStorageRequest(t *testing.T) {
	cases := []struct {
		size int64
		want string
	}{
		{512, "1Mi"},
		{1 << 20, "1Mi"},
		{1<<20 + 512, "2Mi"},
		{3<<20 - 512, "3Mi"},
		{10 << 30, "10Gi"},
		{1 << 40, "1Ti"},
		{maxSize, "8796093022207Mi"},
	}
	for _, c := range cases {
		q := StorageRequest(c.size)
		if q.String() != c.want {
			t.Errorf("StorageRequest(%d) = %s, want %s", c.size, q.String(), c.want)
		}
		// CDI's rules: at least 1 MiB, whole MiB, and room for the disk.
		if v := q.Value(); v < mib || v%mib != 0 || v < c.size {
			t.Errorf("StorageRequest(%d) = %d breaks CDI's rules", c.size, v)
		}
	}
}

func TestPinnedImage(t *testing.T) {
	cases := []struct{ in, want string }{
		{"registry.example.com/512vm:qcow2", "registry.example.com/512vm:qcow2"},
		{"registry.example.com/512vm", "registry.example.com/512vm"},
		{"registry.example.com/512vm:qcow2@" + testDigest, "registry.example.com/512vm@" + testDigest},
		{"registry.example.com/512vm@" + testDigest, "registry.example.com/512vm@" + testDigest},
		{"127.0.0.1:5000/512vm:raw@" + testDigest, "127.0.0.1:5000/512vm@" + testDigest},
		{"127.0.0.1:5000/512vm", "127.0.0.1:5000/512vm"},
		{" ghcr.io/acme/512vm:qcow2 ", "ghcr.io/acme/512vm:qcow2"},
	}
	for _, c := range cases {
		got, err := PinnedImage(c.in)
		if err != nil || got != c.want {
			t.Errorf("PinnedImage(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "UPPER/case:tag", "repo@sha256:abc", "a b"} {
		if _, err := PinnedImage(bad); !errors.Is(err, ErrImage) {
			t.Errorf("PinnedImage(%q) error %v, want ErrImage", bad, err)
		}
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		o    Options
		want error
		text string // must appear in the message
	}{
		{"unknown kind", Options{Kind: "pod", Image: testImage}, ErrKind, `"pod": use vm, vmi, datavolume, datasource`},
		{"run strategy", Options{Kind: VM, Image: testImage, RunStrategy: "Sometimes"}, ErrRunStrategy, `"Sometimes": use Always, Once, Halted, Manual`},
		{"run strategy on vmi", Options{Kind: VMI, Image: testImage, RunStrategy: kubevirtv1.RunStrategyOnce}, ErrOption, "run strategy is for kind vm"},
		{"pull method", Options{Kind: DataVolume, Image: testImage, PullMethod: "kubelet"}, ErrPullMethod, `"kubelet": use pod, node`},
		{"pull method on vm", Options{Kind: VM, Image: testImage, PullMethod: cdiv1.RegistryPullNode}, ErrOption, "pull method is for kind datavolume"},
		{"uppercase name", Options{Image: testImage, Name: "MyVM"}, ErrName, `"MyVM"`},
		{"dotted name", Options{Image: testImage, Name: "my.vm"}, ErrName, `"my.vm"`},
		{"long name", Options{Image: testImage, Name: strings.Repeat("a", 64)}, ErrName, "no more than 63"},
		{"underscore namespace", Options{Image: testImage, Namespace: "my_ns"}, ErrName, `namespace "my_ns"`},
		{"no image", Options{Kind: VM}, ErrImage, "needs the image reference"},
		{"bad image", Options{Kind: VMI, Image: "Registry/UPPER"}, ErrImage, `"Registry/UPPER"`},
		{"image on datasource", Options{Kind: DataSource, Image: testImage}, ErrOption, "points at a PVC"},
		{"size on vm", Options{Kind: VM, Image: testImage, Size: 1 << 20}, ErrOption, "size is for kind datavolume"},
		{"negative size", Options{Kind: DataVolume, Image: testImage, Size: -1}, ErrSize, "positive"},
		{"huge size", Options{Kind: DataVolume, Image: testImage, Size: math.MaxInt64}, ErrSize, "exceeds 8 EiB"},
		{"bad pvc", Options{Kind: DataSource, PVC: "Bad_PVC"}, ErrName, `PVC "Bad_PVC"`},
		{"pvc on vm", Options{Kind: VM, Image: testImage, PVC: "x"}, ErrOption, "PVC is for kind datasource"},
		{"unknown arch", Options{Image: testImage, Arch: "s390x"}, ErrArch, `"s390x": use amd64, arm64`},
		{"unknown firmware", Options{Image: testImage, Firmware: "coreboot"}, ErrFirmware, `"coreboot": use bios, efi`},
		{"arm64 with bios", Options{Image: testImage, Arch: ARM64, Firmware: BIOS}, ErrFirmware, "arm64 boots UEFI only: use efi"},
		{"arch on datavolume", Options{Kind: DataVolume, Image: testImage, Arch: ARM64}, ErrOption, "architecture is for kind vm or vmi, not datavolume"},
		{"firmware on datasource", Options{Kind: DataSource, Firmware: EFI}, ErrOption, "firmware is for kind vm or vmi, not datasource"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Generate(c.o)
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.text) || !strings.HasPrefix(err.Error(), "kubevirt: ") {
				t.Errorf("error %q should start with \"kubevirt: \" and contain %q", err, c.text)
			}
		})
	}
}

func TestParse(t *testing.T) {
	if k, err := ParseKind(" VM "); err != nil || k != VM {
		t.Errorf("ParseKind(VM) = %q, %v", k, err)
	}
	if _, err := ParseKind("vmx"); !errors.Is(err, ErrKind) {
		t.Errorf("ParseKind(vmx) error %v", err)
	}
	if r, err := ParseRunStrategy("once"); err != nil || r != kubevirtv1.RunStrategyOnce {
		t.Errorf("ParseRunStrategy(once) = %q, %v", r, err)
	}
	if _, err := ParseRunStrategy("RerunOnFailure"); !errors.Is(err, ErrRunStrategy) {
		t.Errorf("ParseRunStrategy(RerunOnFailure) error %v: only Always, Once, Halted and Manual are offered", err)
	}
	if p, err := ParsePullMethod("Node"); err != nil || p != cdiv1.RegistryPullNode {
		t.Errorf("ParsePullMethod(Node) = %q, %v", p, err)
	}
	if _, err := ParsePullMethod("docker"); !errors.Is(err, ErrPullMethod) {
		t.Errorf("ParsePullMethod(docker) error %v", err)
	}
	if a, err := ParseArch(" ARM64"); err != nil || a != ARM64 {
		t.Errorf("ParseArch(ARM64) = %q, %v", a, err)
	}
	for _, bad := range []string{"aarch64", "x86_64", ""} {
		if _, err := ParseArch(bad); !errors.Is(err, ErrArch) || !strings.Contains(err.Error(), "use amd64, arm64") {
			t.Errorf("ParseArch(%q) error %v", bad, err)
		}
	}
	for in, want := range map[string]Firmware{"EFI": EFI, "uefi": EFI, " bios ": BIOS} {
		if f, err := ParseFirmware(in); err != nil || f != want {
			t.Errorf("ParseFirmware(%q) = %q, %v", in, f, err)
		}
	}
	if _, err := ParseFirmware("ovmf"); !errors.Is(err, ErrFirmware) {
		t.Errorf("ParseFirmware(ovmf) error %v", err)
	}
}

func TestWriteDir(t *testing.T) {
	dir := t.TempDir()
	paths, err := WriteDir(dir, DirOptions{Size: 10 << 20, RunStrategy: kubevirtv1.RunStrategyOnce})
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) != len(Kinds) {
		t.Fatalf("%d paths, want %d: a BIOS-only disk gets no UEFI VMs", len(paths), len(Kinds))
	}
	for i, k := range Kinds {
		want := filepath.Join(dir, "kubevirt", string(k)+".yaml")
		if paths[i] != want {
			t.Errorf("path %q, want %q", paths[i], want)
		}
		b, err := os.ReadFile(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		obj, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		switch v := obj.(type) {
		case *kubevirtv1.VirtualMachine:
			if img := v.Spec.Template.Spec.Volumes[0].ContainerDisk.Image; img != DefaultRepo+":qcow2" {
				t.Errorf("vm image %q", img)
			}
			if *v.Spec.RunStrategy != kubevirtv1.RunStrategyOnce {
				t.Errorf("vm runStrategy %s", *v.Spec.RunStrategy)
			}
		case *kubevirtv1.VirtualMachineInstance:
			if img := v.Spec.Volumes[0].ContainerDisk.Image; img != DefaultRepo+":qcow2" {
				t.Errorf("vmi image %q", img)
			}
		case *cdiv1.DataVolume:
			if u := *v.Spec.Source.Registry.URL; u != "docker://"+DefaultRepo+":qcow2" {
				t.Errorf("datavolume url %q", u)
			}
			if q := v.Spec.Storage.Resources.Requests.Storage(); q.String() != "10Mi" {
				t.Errorf("datavolume storage %s", q)
			}
		case *cdiv1.DataSource:
			if v.Spec.Source.PVC.Name != DefaultName {
				t.Errorf("datasource pvc %q", v.Spec.Source.PVC.Name)
			}
		default:
			t.Errorf("%s decoded as %T", k, obj)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "kubevirt"))
	if len(entries) != len(Kinds) {
		t.Errorf("%d entries in kubevirt/, want %d (temp files left?)", len(entries), len(Kinds))
	}
	if _, err := WriteDir(t.TempDir(), DirOptions{Repo: "Bad Repo"}); !errors.Is(err, ErrImage) {
		t.Errorf("bad repo: error %v, want ErrImage", err)
	}
}

// TestWriteDirUEFI: a disk that boots on UEFI also gets a VM per
// architecture, vm-efi.yaml and vm-arm64.yaml, equal to what manifest
// --firmware efi and --arch arm64 print.
func TestWriteDirUEFI(t *testing.T) {
	dir := t.TempDir()
	paths, err := WriteDir(dir, DirOptions{UEFI: []Arch{ARM64, AMD64}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	if got := strings.Join(names, ","); got != "vm.yaml,vmi.yaml,datavolume.yaml,datasource.yaml,vm-efi.yaml,vm-arm64.yaml" {
		t.Fatalf("wrote %s", got)
	}
	for file, o := range map[string]Options{
		"vm-efi.yaml":   {Image: DefaultRepo + ":qcow2", Firmware: EFI},
		"vm-arm64.yaml": {Image: DefaultRepo + ":qcow2", Arch: ARM64},
	} {
		b, err := os.ReadFile(filepath.Join(dir, "kubevirt", file))
		if err != nil {
			t.Fatal(err)
		}
		want, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s:\n%s\nwant\n%s", file, b, want)
		}
	}
	one, err := WriteDir(t.TempDir(), DirOptions{UEFI: []Arch{AMD64}})
	if err != nil || filepath.Base(one[len(one)-1]) != "vm-efi.yaml" || len(one) != len(Kinds)+1 {
		t.Errorf("UEFI amd64 only: %v, %v", one, err)
	}
	out := t.TempDir()
	if _, err := WriteDir(out, DirOptions{UEFI: []Arch{"riscv64"}}); !errors.Is(err, ErrArch) {
		t.Errorf("UEFI riscv64: error %v, want ErrArch", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("a refused WriteDir left %v", ents)
	}
}

var _ runtime.Object = (*kubevirtv1.VirtualMachine)(nil)
