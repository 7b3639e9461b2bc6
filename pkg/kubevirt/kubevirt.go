package kubevirt

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	goyaml "go.yaml.in/yaml/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	kubevirtv1 "kubevirt.io/api/core/v1"
	cdiv1 "kubevirt.io/containerized-data-importer-api/pkg/apis/core/v1beta1"
)

// Kind names one of the generated manifests.
type Kind string

// The kinds Generate writes.
const (
	VM         Kind = "vm"
	VMI        Kind = "vmi"
	DataVolume Kind = "datavolume"
	DataSource Kind = "datasource"
)

// Kinds lists every kind, in the order WriteDir writes them.
var Kinds = []Kind{VM, VMI, DataVolume, DataSource}

// RunStrategies are the VirtualMachine run strategies Options accepts.
var RunStrategies = []kubevirtv1.VirtualMachineRunStrategy{
	kubevirtv1.RunStrategyAlways,
	kubevirtv1.RunStrategyOnce,
	kubevirtv1.RunStrategyHalted,
	kubevirtv1.RunStrategyManual,
}

// PullMethods are CDI's registry pull methods: "pod" runs an importer pod
// that pulls the image itself; "node" lets the kubelet pull it into the
// node's image cache.
var PullMethods = []cdiv1.RegistryPullMethod{cdiv1.RegistryPullPod, cdiv1.RegistryPullNode}

// Defaults.
const (
	// DefaultName names the objects.
	DefaultName = "512vm"
	// DefaultRunStrategy starts the VM and restarts it whenever it stops.
	DefaultRunStrategy = kubevirtv1.RunStrategyAlways
	// DefaultPullMethod is CDI's own default.
	DefaultPullMethod = cdiv1.RegistryPullPod
	// DefaultSize is the virtual size of the default disk, 1 MiB.
	DefaultSize = 1 << 20
	// DiskName names the disk, its volume and so the containerDisk.
	DiskName = "containerdisk"
)

// Firmware is the firmware a VM boots with.
type Firmware string

// The firmwares Options accepts.
const (
	// BIOS is SeaBIOS, KubeVirt's default on amd64; it boots the disk's
	// MBR program. amd64 only.
	BIOS Firmware = "bios"
	// EFI is UEFI: OVMF on amd64, AAVMF on arm64. It boots the disk's
	// \EFI\BOOT\BOOTX64.EFI or BOOTAA64.EFI.
	EFI Firmware = "efi"
)

// Firmwares lists every firmware.
var Firmwares = []Firmware{BIOS, EFI}

// Arch is a VM's CPU architecture, as spec.architecture names it.
type Arch string

// The architectures Options accepts: those the universal disk boots on.
const (
	AMD64 Arch = "amd64"
	ARM64 Arch = "arm64"
)

// Arches lists every architecture.
var Arches = []Arch{AMD64, ARM64}

// The guest memory floors, in MiB: the least guest RAM each firmware boots
// in. TestMemoryFloorBootsInQEMU (SeaBIOS) and TestFirmwareMemoryFloors
// (OVMF, AAVMF) check them against QEMU and Debian's firmware.
const (
	// BIOSMemoryMiB: in 1 MiB SeaBIOS cannot read a virtio disk, in 2 it
	// boots the sector (see the package documentation).
	BIOSMemoryMiB = 2
	// OVMFMemoryMiB: OVMF (x86-64 UEFI) crashes in 32 MiB and starts EFI
	// applications in 48.
	OVMFMemoryMiB = 48
	// AAVMFMemoryMiB: AAVMF (aarch64 UEFI, QEMU virt) takes a synchronous
	// exception in 64 MiB and starts EFI applications in 128, the size
	// KubeVirt's own arm64 examples use.
	AAVMFMemoryMiB = 128
)

// GuestMemory is the BIOS guest RAM: the smallest size KubeVirt accepts that
// SeaBIOS boots from a virtio disk (see the package documentation).
var GuestMemory = *resource.NewQuantity(BIOSMemoryMiB*mib, resource.BinarySI)

// GuestMemoryFor is the guest RAM of a VM with the given architecture and
// firmware: the firmware's floor (GuestMemory for BIOS, OVMFMemoryMiB for
// EFI on amd64, AAVMFMemoryMiB on arm64). An empty architecture is amd64.
func GuestMemoryFor(a Arch, f Firmware) resource.Quantity {
	switch {
	case a == ARM64:
		return *resource.NewQuantity(AAVMFMemoryMiB*mib, resource.BinarySI)
	case f == EFI:
		return *resource.NewQuantity(OVMFMemoryMiB*mib, resource.BinarySI)
	}
	return GuestMemory.DeepCopy()
}

// TerminationGracePeriodSeconds is how long KubeVirt waits after pressing
// the ACPI power button before it destroys the domain. The boot sector
// powers off on that button at once, so a few seconds is plenty; KubeVirt's
// default is 30.
const TerminationGracePeriodSeconds int64 = 5

// mib is CDI's storage alignment (util.DefaultAlignBlockSize) and its
// smallest accepted request.
const mib = 1 << 20

// maxSize is the largest size whose MiB round-up fits in an int64.
const maxSize = math.MaxInt64 / mib * mib

// Errors. Each says what was wrong; messages wrap them with the value.
var (
	ErrKind        = errors.New("kubevirt: unknown kind")
	ErrName        = errors.New("kubevirt: bad name")
	ErrRunStrategy = errors.New("kubevirt: bad run strategy")
	ErrPullMethod  = errors.New("kubevirt: bad pull method")
	ErrImage       = errors.New("kubevirt: bad image reference")
	ErrSize        = errors.New("kubevirt: bad size")
	ErrArch        = errors.New("kubevirt: bad architecture")
	ErrFirmware    = errors.New("kubevirt: bad firmware")
	ErrOption      = errors.New("kubevirt: option does not apply")
)

// Options choose one manifest.
type Options struct {
	// Kind is the manifest to write (empty means VM).
	Kind Kind
	// Name is metadata.name (empty means DefaultName). It must be a
	// DNS-1123 label: the VMI name becomes the guest's hostname and the
	// DataVolume's names its PVC and importer pod.
	Name string
	// Namespace is metadata.namespace; empty leaves it out, so kubectl
	// applies the manifest to the current namespace.
	Namespace string
	// Image is the containerDisk reference (vm, vmi, datavolume). A
	// reference with a digest is written as repository@digest, without its
	// tag: the digest pins it.
	Image string
	// RunStrategy is the VirtualMachine's runStrategy (vm only; empty
	// means DefaultRunStrategy).
	RunStrategy kubevirtv1.VirtualMachineRunStrategy
	// PullMethod is the DataVolume's registry pull method (datavolume
	// only; empty means DefaultPullMethod).
	PullMethod cdiv1.RegistryPullMethod
	// Size is the disk's virtual size in bytes (datavolume only; 0 means
	// DefaultSize).
	Size int64
	// FileSize is the size of the image file CDI imports (datavolume
	// only; 0 means no more than Size). A pod-pull import copies the file
	// into a scratch PVC as large as the target, so the storage request
	// covers the larger of the two: a 1 MiB disk is a 5 MiB vhdx.
	FileSize int64
	// PVC is the claim the DataSource points at (datasource only; empty
	// means Name, the PVC a DataVolume of that name fills).
	PVC string
	// Arch is the VM's spec.architecture (vm and vmi only). Empty writes
	// none: KubeVirt then uses the cluster's default architecture.
	Arch Arch
	// Firmware is the VM's firmware (vm and vmi only). Empty means BIOS,
	// or EFI on arm64, which has no BIOS.
	Firmware Firmware
}

func (o Options) kind() Kind {
	if o.Kind == "" {
		return VM
	}
	return o.Kind
}

func (o Options) name() string {
	if o.Name == "" {
		return DefaultName
	}
	return o.Name
}

func (o Options) runStrategy() kubevirtv1.VirtualMachineRunStrategy {
	if o.RunStrategy == "" {
		return DefaultRunStrategy
	}
	return o.RunStrategy
}

func (o Options) pullMethod() cdiv1.RegistryPullMethod {
	if o.PullMethod == "" {
		return DefaultPullMethod
	}
	return o.PullMethod
}

func (o Options) size() int64 {
	if o.Size == 0 {
		return DefaultSize
	}
	return o.Size
}

func (o Options) firmware() Firmware {
	switch {
	case o.Firmware != "":
		return o.Firmware
	case o.Arch == ARM64:
		return EFI
	}
	return BIOS
}

func (o Options) pvc() string {
	if o.PVC == "" {
		return o.name()
	}
	return o.PVC
}

// ParseKind reads a kind name, case-insensitively.
func ParseKind(s string) (Kind, error) {
	k := Kind(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(Kinds, k) {
		return "", fmt.Errorf("%w %q: use %s", ErrKind, s, kindList())
	}
	return k, nil
}

// ParseRunStrategy reads a run strategy, case-insensitively
// ("once" is Once).
func ParseRunStrategy(s string) (kubevirtv1.VirtualMachineRunStrategy, error) {
	for _, r := range RunStrategies {
		if strings.EqualFold(string(r), strings.TrimSpace(s)) {
			return r, nil
		}
	}
	return "", fmt.Errorf("%w %q: use %s", ErrRunStrategy, s, join(RunStrategies))
}

// ParseArch reads an architecture name, case-insensitively.
func ParseArch(s string) (Arch, error) {
	a := Arch(strings.ToLower(strings.TrimSpace(s)))
	if !slices.Contains(Arches, a) {
		return "", fmt.Errorf("%w %q: use %s", ErrArch, s, join(Arches))
	}
	return a, nil
}

// ParseFirmware reads a firmware name, case-insensitively. "uefi" is EFI.
func ParseFirmware(s string) (Firmware, error) {
	f := Firmware(strings.ToLower(strings.TrimSpace(s)))
	if f == "uefi" {
		f = EFI
	}
	if !slices.Contains(Firmwares, f) {
		return "", fmt.Errorf("%w %q: use %s", ErrFirmware, s, join(Firmwares))
	}
	return f, nil
}

// ParsePullMethod reads a pull method, case-insensitively.
func ParsePullMethod(s string) (cdiv1.RegistryPullMethod, error) {
	for _, p := range PullMethods {
		if strings.EqualFold(string(p), strings.TrimSpace(s)) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w %q: use %s", ErrPullMethod, s, join(PullMethods))
}

func kindList() string { return join(Kinds) }

func join[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// Validate reports the first bad option. Options that do not apply to the
// kind are errors rather than silently ignored.
func (o Options) Validate() error {
	k := o.kind()
	if !slices.Contains(Kinds, k) {
		return fmt.Errorf("%w %q: use %s", ErrKind, o.Kind, kindList())
	}
	if errs := validation.IsDNS1123Label(o.name()); len(errs) > 0 {
		return fmt.Errorf("%w %q: %s", ErrName, o.name(), strings.Join(errs, "; "))
	}
	if o.Namespace != "" {
		if errs := validation.IsDNS1123Label(o.Namespace); len(errs) > 0 {
			return fmt.Errorf("%w namespace %q: %s", ErrName, o.Namespace, strings.Join(errs, "; "))
		}
	}
	if o.RunStrategy != "" {
		if k != VM {
			return fmt.Errorf("%w: a run strategy is for kind vm, not %s", ErrOption, k)
		}
		if !slices.Contains(RunStrategies, o.RunStrategy) {
			return fmt.Errorf("%w %q: use %s", ErrRunStrategy, o.RunStrategy, join(RunStrategies))
		}
	}
	if o.PullMethod != "" {
		if k != DataVolume {
			return fmt.Errorf("%w: a pull method is for kind datavolume, not %s", ErrOption, k)
		}
		if !slices.Contains(PullMethods, o.PullMethod) {
			return fmt.Errorf("%w %q: use %s", ErrPullMethod, o.PullMethod, join(PullMethods))
		}
	}
	if o.FileSize != 0 && (k != DataVolume || o.FileSize < 0 || o.FileSize > maxSize) {
		return fmt.Errorf("%w: file size %d is for kind datavolume, positive and under 8 EiB", ErrSize, o.FileSize)
	}
	if o.Size != 0 {
		if k != DataVolume {
			return fmt.Errorf("%w: a size is for kind datavolume, not %s", ErrOption, k)
		}
		if o.Size < 0 {
			return fmt.Errorf("%w %d: must be positive", ErrSize, o.Size)
		}
		if o.Size > maxSize {
			return fmt.Errorf("%w %d: rounded up to whole MiB it exceeds 8 EiB", ErrSize, o.Size)
		}
	}
	if o.Arch != "" {
		if k != VM && k != VMI {
			return fmt.Errorf("%w: an architecture is for kind vm or vmi, not %s", ErrOption, k)
		}
		if !slices.Contains(Arches, o.Arch) {
			return fmt.Errorf("%w %q: use %s", ErrArch, o.Arch, join(Arches))
		}
	}
	if o.Firmware != "" {
		if k != VM && k != VMI {
			return fmt.Errorf("%w: a firmware is for kind vm or vmi, not %s", ErrOption, k)
		}
		if !slices.Contains(Firmwares, o.Firmware) {
			return fmt.Errorf("%w %q: use %s", ErrFirmware, o.Firmware, join(Firmwares))
		}
		if o.Arch == ARM64 && o.Firmware == BIOS {
			return fmt.Errorf("%w: arm64 boots UEFI only: use %s, or no firmware (arm64 means %s)", ErrFirmware, EFI, EFI)
		}
	}
	if o.PVC != "" {
		if k != DataSource {
			return fmt.Errorf("%w: a PVC is for kind datasource, not %s", ErrOption, k)
		}
		if errs := validation.IsDNS1123Subdomain(o.PVC); len(errs) > 0 {
			return fmt.Errorf("%w PVC %q: %s", ErrName, o.PVC, strings.Join(errs, "; "))
		}
	}
	if k == DataSource {
		if o.Image != "" {
			return fmt.Errorf("%w: a datasource takes no image: it points at a PVC", ErrOption)
		}
		return nil
	}
	if o.Image == "" {
		return fmt.Errorf("%w: none given: kind %s needs the image reference", ErrImage, k)
	}
	_, err := PinnedImage(o.Image)
	return err
}

// StorageRequest is the DataVolume storage request for a disk of the given
// virtual size: rounded up to a whole MiB, at least 1 MiB, as CDI needs.
// CDI adds the filesystem overhead itself.
func StorageRequest(virtualSize int64) resource.Quantity {
	n := (virtualSize + mib - 1) / mib * mib
	n = max(n, mib)
	return *resource.NewQuantity(n, resource.BinarySI)
}

// Object builds the API object for the options: a *kubevirtv1.VirtualMachine,
// *kubevirtv1.VirtualMachineInstance, *cdiv1.DataVolume or *cdiv1.DataSource.
func Object(o Options) (any, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	meta := metav1.ObjectMeta{Name: o.name(), Namespace: o.Namespace}
	var image string
	if o.kind() != DataSource {
		var err error
		if image, err = PinnedImage(o.Image); err != nil {
			return nil, err
		}
	}
	switch o.kind() {
	case VM:
		rs := o.runStrategy()
		return &kubevirtv1.VirtualMachine{
			TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine"},
			ObjectMeta: meta,
			Spec: kubevirtv1.VirtualMachineSpec{
				RunStrategy: &rs,
				Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
					Spec: vmiSpec(image, o),
				},
			},
		}, nil
	case VMI:
		return &kubevirtv1.VirtualMachineInstance{
			TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachineInstance"},
			ObjectMeta: meta,
			Spec:       vmiSpec(image, o),
		}, nil
	case DataVolume:
		url := "docker://" + image
		pm := o.pullMethod()
		return &cdiv1.DataVolume{
			TypeMeta:   metav1.TypeMeta{APIVersion: cdiv1.SchemeGroupVersion.String(), Kind: "DataVolume"},
			ObjectMeta: meta,
			Spec: cdiv1.DataVolumeSpec{
				Source: &cdiv1.DataVolumeSource{
					Registry: &cdiv1.DataVolumeSourceRegistry{URL: &url, PullMethod: &pm},
				},
				Storage: &cdiv1.StorageSpec{
					Resources: corev1.VolumeResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceStorage: StorageRequest(max(o.size(), o.FileSize))},
					},
				},
			},
		}, nil
	default: // DataSource; Validate rejected anything else.
		return &cdiv1.DataSource{
			TypeMeta:   metav1.TypeMeta{APIVersion: cdiv1.SchemeGroupVersion.String(), Kind: "DataSource"},
			ObjectMeta: meta,
			Spec: cdiv1.DataSourceSpec{
				Source: cdiv1.DataSourceSource{
					// An empty namespace means the DataSource's own
					// (CDI's GetNamespace).
					PVC: &cdiv1.DataVolumeSourcePVC{Name: o.pvc(), Namespace: o.Namespace},
				},
			},
		}, nil
	}
}

// vmiSpec is the VMI spec that vm and vmi share.
func vmiSpec(image string, o Options) kubevirtv1.VirtualMachineInstanceSpec {
	grace := TerminationGracePeriodSeconds
	mem := GuestMemoryFor(o.Arch, o.firmware())
	var boot kubevirtv1.Bootloader
	if o.firmware() == EFI {
		// KubeVirt turns Secure Boot on with EFI unless told otherwise,
		// which needs SMM and signed applications; the disk's are
		// unsigned. OVMF and AAVMF send ConOut, and so the program's
		// output, to the serial console themselves.
		secureBoot := false
		boot.EFI = &kubevirtv1.EFI{SecureBoot: &secureBoot}
	} else {
		// BIOS is KubeVirt's default; useSerial sends its output, and so
		// the boot sector's, to virtctl console.
		useSerial := true
		boot.BIOS = &kubevirtv1.BIOS{UseSerial: &useSerial}
	}
	return kubevirtv1.VirtualMachineInstanceSpec{
		Architecture: string(o.Arch),
		Domain: kubevirtv1.DomainSpec{
			Memory:   &kubevirtv1.Memory{Guest: &mem},
			Firmware: &kubevirtv1.Firmware{Bootloader: &boot},
			Devices: kubevirtv1.Devices{
				Disks: []kubevirtv1.Disk{{
					Name: DiskName,
					DiskDevice: kubevirtv1.DiskDevice{
						Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio},
					},
				}},
			},
		},
		TerminationGracePeriodSeconds: &grace,
		Volumes: []kubevirtv1.Volume{{
			Name: DiskName,
			VolumeSource: kubevirtv1.VolumeSource{
				ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: image},
			},
		}},
	}
}

// Generate returns the manifest for the options as YAML: the API object
// marshalled by sigs.k8s.io/yaml, with the empty status and null
// creationTimestamp fields the types always carry removed. Keys are
// sorted, so equal options give equal bytes.
func Generate(o Options) ([]byte, error) {
	obj, err := Object(o)
	if err != nil {
		return nil, err
	}
	return Marshal(obj)
}

// Marshal writes an API object as clean YAML (see Generate): its JSON,
// pruned, through go-yaml. That is sigs.k8s.io/yaml.Marshal's output
// without its second JSON encoding and go-yaml parse of it, which were
// more than half of the YAML's cost; prune gives the numbers the types
// that parse would.
func Marshal(obj any) ([]byte, error) {
	j, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: marshal: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("kubevirt: marshal: %w", err)
	}
	delete(m, "status")
	prune(m)
	y, err := goyaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("kubevirt: marshal: %w", err)
	}
	return y, nil
}

// emptyNoise are the keys whose empty objects the Go types emit for
// unset non-pointer structs: a template's metadata: {} and a domain's
// resources: {}. An empty object elsewhere (disk: {}) can carry meaning,
// so only these go.
var emptyNoise = map[string]bool{"metadata": true, "resources": true}

// prune removes, bottom-up, the server-set fields that the Go types emit
// even when unset (creationTimestamp: null) and the emptyNoise objects,
// and returns v with each json.Number made the int, uint64 or float64
// that go-yaml resolves it to.
func prune(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			e = prune(e)
			v[k] = e
			if e == nil && k == "creationTimestamp" {
				delete(v, k)
			}
			if m, ok := e.(map[string]any); ok && len(m) == 0 && emptyNoise[k] {
				delete(v, k)
			}
		}
	case []any:
		for i, e := range v {
			v[i] = prune(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return int(i)
		}
		if u, err := strconv.ParseUint(string(v), 10, 64); err == nil {
			return u
		}
		if f, err := strconv.ParseFloat(string(v), 64); err == nil {
			return f
		}
	}
	return v
}

// ErrFormat is a containerDisk format KubeVirt cannot boot.
var ErrFormat = errors.New("kubevirt: not a format virt-launcher boots")

// BootFormats are the containerDisk formats virt-launcher accepts: it
// runs qemu-img info and refuses anything but raw and qcow2 (without a
// backing file).
var BootFormats = []string{"raw", "qcow2"}

// CheckFormat refuses a containerDisk of a format KubeVirt does not boot
// for a VM or VMI of kind k; a DataVolume takes any format qemu-img reads,
// because CDI converts it to raw. An empty format (not known) passes.
func CheckFormat(k Kind, format string) error {
	if format == "" || k == DataVolume || k == DataSource || slices.Contains(BootFormats, format) {
		return nil
	}
	return fmt.Errorf("%w: a %s containerDisk fails in virt-launcher, which takes only raw and qcow2; use the qcow2 or raw tag for a %s, or --kind datavolume, whose import CDI converts", ErrFormat, format, k)
}
