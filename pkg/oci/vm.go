package oci

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"k8s.io/apimachinery/pkg/api/resource"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/holes"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/internal/zzstd"
)

// KubeVirt's VM artifact (VEP 256), as kubevirt/kubevirt pkg/storage/oci
// writes it and hack/oci-import.sh reads it.
const (
	// VMArtifactType is the artifactType of the index and of each
	// manifest.
	VMArtifactType = "application/vnd.kubevirt.virtualmachine.v1"
	// VMConfigMediaType is the config blob's media type: the
	// VirtualMachine as JSON.
	VMConfigMediaType types.MediaType = "application/vnd.kubevirt.virtualmachine.config.v1+json"
	// DiskRawZstdMediaType is a disk layer's media type: the raw disk
	// compressed with zstd, no tar.
	DiskRawZstdMediaType types.MediaType = "application/vnd.kubevirt.disk.raw+zstd"
	// AnnotationDiskName names the PVC a disk layer holds; the VM's
	// volume with that claimName is the one it fills.
	AnnotationDiskName = "io.kubevirt.disk.name"
	// AnnotationDiskSize is the raw disk's size as a Kubernetes quantity
	// (1Mi): the size the importer gives the PVC.
	AnnotationDiskSize = "io.kubevirt.disk.size"
)

// VMTag is the tag of the VM artifact.
const VMTag = "vm"

// VMArchitectures are the architectures the VM artifact lists by default,
// in the order it lists them.
var VMArchitectures = []string{"amd64", "arm64"}

// VMFunc returns the VirtualMachine one architecture's manifest carries as
// its config (kubevirt.ExportedVM).
type VMFunc func(arch string) (*kubevirtv1.VirtualMachine, error)

// ErrVM is a VirtualMachine the VM artifact cannot carry.
var ErrVM = errors.New("oci: bad virtual machine")

// WithVirtualMachine makes Images and WriteLayout add the VM artifact,
// tagged VMTag, when the files include the raw disk; vm gives each
// architecture's VirtualMachine.
func WithVirtualMachine(vm VMFunc) Option { return func(o *options) { o.vm = vm } }

// WithVMArchitectures sets the architectures the VM artifact's index lists
// (default VMArchitectures), in that order: any the VMFunc accepts, each
// once, at least one. Each gets its own config, the VirtualMachine for it,
// and shares the one disk layer.
func WithVMArchitectures(archs ...string) Option {
	// Never nil, so that no architectures is an error, not the default.
	archs = append([]string{}, archs...)
	return func(o *options) { o.vmArchs = archs }
}

// VirtualMachine returns KubeVirt's VM artifact for the raw disk: an OCI
// image index with artifactType VMArtifactType and one manifest per
// architecture (WithVMArchitectures), its platform linux/ARCH in the index
// descriptor. Each manifest has the same artifactType, the VirtualMachine
// vm(arch) marshalled as JSON as its config (VMConfigMediaType), and one
// layer: the raw disk compressed with zstd (DiskRawZstdMediaType), with
// the annotations KubeVirt's exporter writes: AnnotationDiskName (the
// claimName of the VM's only PVC volume), AnnotationDiskSize and a title
// NAME.raw.zst. The layer blob is the same for every architecture.
//
// The index carries the standard annotations; the manifests carry none,
// as KubeVirt's do.
func VirtualMachine(raw File, vm VMFunc, opts ...Option) (v1.ImageIndex, error) {
	o := makeOptions(opts)
	if raw.Format.Type != "raw" {
		return nil, fmt.Errorf("%w: the VM artifact holds the raw disk, not %q (%s)", ErrVM, raw.Format.Type, raw.Path)
	}
	if vm == nil {
		return nil, fmt.Errorf("%w: no VirtualMachine given", ErrVM)
	}
	archs := o.vmArchs
	if archs == nil {
		archs = VMArchitectures
	}
	if len(archs) == 0 {
		return nil, fmt.Errorf("%w: no architecture given: use %s", ErrVM, strings.Join(VMArchitectures, ", "))
	}
	l, err := newZstdLayer(raw, o.blobDir)
	if err != nil {
		return nil, err
	}
	m := v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		ArtifactType:  VMArtifactType,
	}
	desc := o.description
	if desc == "" {
		desc = "The 512-byte VM as KubeVirt's VM artifact (virtctl vmexport --format=oci): the VirtualMachine and its raw disk, zstd-compressed"
	}
	m.Annotations = o.annotations("512-byte-vm KubeVirt VM", desc)
	imgs := map[v1.Hash]v1.Image{}
	claim := ""
	for i, arch := range archs {
		if slices.Contains(archs[:i], arch) {
			return nil, fmt.Errorf("%w: architecture %s given twice", ErrVM, arch)
		}
		v, err := vm(arch)
		if err != nil {
			return nil, err
		}
		c, err := pvcClaim(v)
		if err != nil {
			return nil, err
		}
		if claim != "" && c != claim {
			return nil, fmt.Errorf("%w: the %s VM's disk is PVC %q, the %s VM's %q; one layer serves both", ErrVM, arch, c, archs[0], claim)
		}
		claim = c
		// Marshalled as KubeVirt's exporter does: encoding/json over
		// the API type.
		cfg, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("oci: vm config: %w", err)
		}
		mf := v1.Manifest{
			SchemaVersion: 2,
			MediaType:     types.OCIManifestSchema1,
			ArtifactType:  VMArtifactType,
			Config: v1.Descriptor{
				MediaType: VMConfigMediaType,
				Size:      int64(len(cfg)),
				Digest:    digestOf(cfg),
			},
			Layers: []v1.Descriptor{{
				MediaType: DiskRawZstdMediaType,
				Size:      l.size,
				Digest:    l.digest,
				Annotations: map[string]string{
					AnnotationDiskName: claim,
					AnnotationDiskSize: resource.NewQuantity(l.fsize, resource.BinarySI).String(),
					AnnotationTitle:    claim + ".raw.zst",
				},
			}},
		}
		img, err := newImage(mf, cfg, l)
		if err != nil {
			return nil, err
		}
		d, err := img.Digest()
		if err != nil {
			return nil, err
		}
		n, err := img.Size()
		if err != nil {
			return nil, err
		}
		m.Manifests = append(m.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Size:      n,
			Digest:    d,
			Platform:  &v1.Platform{OS: "linux", Architecture: arch},
		})
		imgs[d] = img
	}
	rawIndex, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	return &index{raw: rawIndex, digest: digestOf(rawIndex), images: imgs}, nil
}

// pvcClaim is the claimName of v's only volume, which must be a PVC.
func pvcClaim(v *kubevirtv1.VirtualMachine) (string, error) {
	if v == nil || v.Spec.Template == nil {
		return "", fmt.Errorf("%w: no template", ErrVM)
	}
	vols := v.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].PersistentVolumeClaim == nil || vols[0].PersistentVolumeClaim.ClaimName == "" {
		return "", fmt.Errorf("%w: %s needs exactly one volume, a persistentVolumeClaim, for the disk layer to fill", ErrVM, v.Name)
	}
	return vols[0].PersistentVolumeClaim.ClaimName, nil
}

// zstdLayer is the VM artifact's disk layer: the raw file compressed with
// zstd, no tar. Its digest (of the compressed bytes) is taken once,
// streaming, when the layer is made; with a blob directory (WithBlobDir)
// that pass also writes the blob, which reads then come from, and without
// one reads compress the file again. Its diff_id, the file's sha256, is
// taken the first time it is asked for: no manifest or config holds it,
// and writing a layout or pushing never asks, so a build hashes the raw
// disk once, for SHA256SUMS.
type zstdLayer struct {
	path   string
	fsize  int64
	blob   string
	digest v1.Hash
	size   int64

	diffOnce sync.Once
	diffID   v1.Hash
	diffErr  error
}

func newZstdLayer(raw File, blobDir string) (*zstdLayer, error) {
	f, err := openRegular(raw.Path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	l := &zstdLayer{path: raw.Path, fsize: st.Size()}
	if blobDir != "" {
		if l.blob, l.digest, l.size, err = spool(blobDir, l.compress); err != nil {
			return nil, err
		}
		return l, nil
	}
	dh := sha256.New()
	cw := &countWriter{w: dh}
	if err := l.compress(cw); err != nil {
		return nil, err
	}
	l.digest, l.size = sum(dh), cw.n
	return l, nil
}

// compress writes the file to w as zstd frames (zzstd): its holes, and
// every long zero run, as frames of RLE blocks, never read; the rest
// compressed by klauspost/compress.
func (l *zstdLayer) compress(w io.Writer) error {
	f, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	zw, err := zzstd.NewWriter(w)
	if err != nil {
		return fmt.Errorf("oci: zstd: %w", err)
	}
	if err := l.copyFile(zw, f); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("oci: zstd: %w", err)
	}
	return nil
}

// copyFile writes the layer's fsize bytes of f to w.
func (l *zstdLayer) copyFile(w io.Writer, f *os.File) error {
	if _, err := holes.Copy(context.Background(), w, f, l.fsize); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("oci: %s shrank below %d bytes while being read", l.path, l.fsize)
		}
		return fmt.Errorf("oci: read %s: %w", l.path, err)
	}
	return nil
}

func (l *zstdLayer) Digest() (v1.Hash, error) { return l.digest, nil }

// DiffID is the file's sha256, hashed on the first call.
func (l *zstdLayer) DiffID() (v1.Hash, error) {
	l.diffOnce.Do(func() {
		f, err := os.Open(l.path)
		if err != nil {
			l.diffErr = fmt.Errorf("oci: %w", err)
			return
		}
		defer f.Close()
		h := sha256.New()
		if l.diffErr = l.copyFile(h, f); l.diffErr == nil {
			l.diffID = sum(h)
		}
	})
	return l.diffID, l.diffErr
}
func (l *zstdLayer) Size() (int64, error) { return l.size, nil }
func (l *zstdLayer) MediaType() (types.MediaType, error) {
	return DiskRawZstdMediaType, nil
}

// Uncompressed opens the file itself. The reader fails at the end if the
// bytes differ from DiffID.
func (l *zstdLayer) Uncompressed() (io.ReadCloser, error) {
	d, err := l.DiffID()
	if err != nil {
		return nil, err
	}
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	return newVerifier(f, l.fsize, d, l.path), nil
}

// Compressed streams the zstd frame. The reader fails at the end if the
// bytes differ from the digest taken when the layer was made.
func (l *zstdLayer) Compressed() (io.ReadCloser, error) {
	if l.blob != "" {
		return openBlob(l.blob, l.size, l.digest)
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(l.compress(pw)) }()
	return newVerifier(pr, l.size, l.digest, l.path), nil
}
