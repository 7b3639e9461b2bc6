package oci

import (
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/internal/parallel"
)

// Tagged is what a tag names in a layout or a repository: a containerDisk's
// image index or the artifact's image manifest.
type Tagged struct {
	Tag string
	// Image is a v1.ImageIndex (a containerDisk) or a v1.Image (the
	// artifact); layouts and pushes handle either.
	Image Taggable
}

// Taggable is anything a tag can point at: both v1.Image and
// v1.ImageIndex implement it, and so does ggcr's remote.Taggable.
type Taggable interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
	Digest() (v1.Hash, error)
	Size() (int64, error)
}

// containerDiskImage is one architecture's entry of a containerDisk index:
// the layer l, a linux/arch config, and the annotations ann on the manifest
// and as config labels. Only the config's architecture and variant differ
// between entries, so the amd64 entry is the single-platform containerDisk
// of earlier releases, byte for byte.
func containerDiskImage(f File, l *diskLayer, arch string, ann map[string]string, o options) (v1.Image, error) {
	cfg := v1.ConfigFile{
		Architecture: arch,
		Variant:      variants[arch],
		OS:           OS,
		Created:      v1.Time{Time: o.created},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{l.diffID}},
		Config:       v1.Config{Labels: ann},
		History: []v1.History{{
			Created:   v1.Time{Time: o.created},
			CreatedBy: o.createdByOrDefault() + " --format " + f.Format.Type,
		}},
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config: v1.Descriptor{
			MediaType: types.OCIConfigJSON,
			Size:      int64(len(rawCfg)),
			Digest:    digestOf(rawCfg),
		},
		Layers: []v1.Descriptor{{
			MediaType: types.OCILayer,
			Size:      l.size,
			Digest:    l.digest,
		}},
		// The index carries the full set; an entry names only its format,
		// which keeps what a push stores small (the labels are in the
		// config for tools that show an image's labels).
		Annotations: map[string]string{AnnotationFormat: f.Format.Type},
	}
	return newImage(m, rawCfg, l)
}

// Artifact returns the OCI 1.1 artifact holding every file: artifactType
// ArtifactType, the empty config, and one layer in the form oras push
// gives a directory, so that oras pull unpacks it by itself: a
// gzip-compressed tar of ArtifactDir/ and the files in it, titled
// ArtifactDir, with AnnotationUnpack "true" and AnnotationUnpackDigest the
// digest of the tar. One compressed layer stores the megabytes of zeros in
// the files as a few kilobytes (docs/oci.md).
func Artifact(files []File, opts ...Option) (v1.Image, error) {
	o := makeOptions(opts)
	if len(files) == 0 {
		return nil, fmt.Errorf("oci: artifact: no files")
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactType,
		Config: v1.Descriptor{
			MediaType: EmptyMediaType,
			Size:      int64(len(emptyJSON)),
			Digest:    digestOf(emptyJSON),
		},
	}
	seen := map[string]bool{}
	var dfs []dirFile
	var kinds []string
	for _, f := range files {
		name := f.Format.FileName()
		if f.Format.Type == "" {
			return nil, fmt.Errorf("oci: %s: no format", f.Path)
		}
		if seen[name] {
			return nil, fmt.Errorf("oci: artifact: two files named %s", name)
		}
		seen[name] = true
		dfs = append(dfs, dirFile{path: f.Path, name: name})
		kinds = append(kinds, f.Format.Type)
	}
	l, err := newDirLayer(dfs, o.created, o.blobDir)
	if err != nil {
		return nil, err
	}
	m.Layers = []v1.Descriptor{{
		MediaType: ArtifactLayerMediaType,
		Size:      l.size,
		Digest:    l.digest,
		Annotations: map[string]string{
			AnnotationTitle:        ArtifactDir,
			AnnotationUnpack:       "true",
			AnnotationUnpackDigest: l.diffID.String(),
			AnnotationFormat:       strings.Join(kinds, ","),
		},
	}}
	desc := o.description
	if desc == "" {
		desc = "The 512-byte VM in every disk format: oras pull unpacks them into " + ArtifactDir + "/"
	}
	m.Annotations = o.annotations("512-byte-vm disks", desc)
	return newImage(m, emptyJSON, l)
}

// Images returns every file's containerDisk index, tagged with its format's Type,
// except an ova's (CheckContainerDisk), then the artifact tagged
// ArtifactTag, then, with WithVirtualMachine and a raw file among the
// files, the VM artifact tagged VMTag.
//
// The images are made concurrently, as many at a time as GOMAXPROCS: each
// compresses and hashes its own layer, and the results do not depend on
// the order. The first error, in the order above, is returned. Images
// runs FileJobs of every file and ArtifactJob, longest first, and returns
// their images in Sort's order.
func Images(files []File, opts ...Option) ([]Tagged, error) {
	var jobs []Job
	for _, f := range files {
		jobs = append(jobs, FileJobs(f, fileSize(f.Path), opts...)...)
	}
	jobs = append(jobs, ArtifactJob(files, opts...))
	slices.SortStableFunc(jobs, func(a, b Job) int { return cmp.Compare(rank(a.Tag), rank(b.Tag)) })
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(jobs[b].Cost, jobs[a].Cost) })
	out := make([]Tagged, len(jobs))
	errs := make([]error, len(jobs))
	parallel.Each(len(order), func(k int) {
		i := order[k]
		out[i], errs[i] = jobs[i].Run()
	})
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Job makes one of the images Images returns; FileJobs and ArtifactJob
// make them. Images runs them all at once; a caller that writes the
// files itself (build) can run a file's jobs as soon as the file is
// complete, and the artifact's once every file is, on CPUs that would
// otherwise wait, then put the images in order with Sort.
type Job struct {
	// Tag is what the image is tagged.
	Tag string
	// Cost is about how long the job takes, in bytes read, so that the
	// longest can start first.
	Cost int64
	make func() (Taggable, error)
}

// Run makes the image.
func (j Job) Run() (Tagged, error) {
	img, err := j.make()
	return Tagged{Tag: j.Tag, Image: img}, err
}

// FileJobs returns the jobs that read f alone, a file of size bytes: its
// containerDisk, unless CheckContainerDisk refuses the format (an ova is
// only a file of the artifact), and, for the raw disk with
// WithVirtualMachine, the VM artifact.
func FileJobs(f File, size int64, opts ...Option) []Job {
	var jobs []Job
	if CheckContainerDisk(f.Format) == nil {
		jobs = append(jobs, Job{Tag: f.Format.Type, Cost: size, make: func() (Taggable, error) {
			return ContainerDisk(f, opts...)
		}})
	}
	if o := makeOptions(opts); o.vm != nil && f.Format.Type == "raw" {
		// Like the containerDisk, zstd (zzstd) reads only the data; it
		// goes first as its encoder costs more to set up than gzip's.
		jobs = append(jobs, Job{Tag: VMTag, Cost: size + 1, make: func() (Taggable, error) {
			return VirtualMachine(f, o.vm, opts...)
		}})
	}
	return jobs
}

// ArtifactJob returns the job that makes the artifact of files
// (Artifact), tagged ArtifactTag.
func ArtifactJob(files []File, opts ...Option) Job {
	var total int64
	for _, f := range files {
		total += fileSize(f.Path)
	}
	return Job{Tag: ArtifactTag, Cost: total, make: func() (Taggable, error) {
		return Artifact(files, opts...)
	}}
}

// Sort puts tagged images in the order Images returns them: the
// containerDisks in the order given, then the artifact, then the VM
// artifact.
func Sort(ts []Tagged) {
	slices.SortStableFunc(ts, func(a, b Tagged) int { return cmp.Compare(rank(a.Tag), rank(b.Tag)) })
}

// rank is where an image with the tag goes in Images's order.
func rank(tag string) int {
	switch tag {
	case ArtifactTag:
		return 1
	case VMTag:
		return 2
	}
	return 0
}

// fileSize is the size of the file at p, or 0 if it cannot be read (the
// job that reads it reports that).
func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (o options) annotations(title, desc string) map[string]string {
	ann := map[string]string{
		AnnotationTitle:       title,
		AnnotationDescription: desc,
		AnnotationCreated:     o.created.Format(time.RFC3339),
	}
	for k, v := range map[string]string{
		AnnotationSource:   o.source,
		AnnotationVersion:  o.version,
		AnnotationLicenses: o.licenses,
		AnnotationRevision: o.revision,
		AnnotationURL:      o.url,
	} {
		if v != "" {
			ann[k] = v
		}
	}
	return ann
}

var emptyJSON = []byte("{}")

func digestOf(b []byte) v1.Hash {
	h, _, _ := v1.SHA256(bytesReader(b))
	return h
}

// image is a v1.Image whose manifest bytes are exactly what this package
// wrote, so that the artifact's empty config and artifactType survive.
// (mutate.ConfigMediaType on empty.Image would still upload a full image
// config, and ggcr has no mutate.ArtifactType.)
type image struct {
	manifest []byte
	config   []byte
	cfgLayer v1.Layer
	layers   map[v1.Hash]partial.CompressedLayer
}

func newImage(m v1.Manifest, config []byte, layers ...v1.Layer) (v1.Image, error) {
	raw, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	img := &image{manifest: raw, config: config, layers: map[v1.Hash]partial.CompressedLayer{}}
	img.cfgLayer = &staticBlob{b: config, mt: m.Config.MediaType, digest: m.Config.Digest}
	for _, l := range layers {
		d, err := l.Digest()
		if err != nil {
			return nil, err
		}
		img.layers[d] = l
	}
	return partial.CompressedToImage(img)
}

func (i *image) RawConfigFile() ([]byte, error)      { return i.config, nil }
func (i *image) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (i *image) RawManifest() ([]byte, error)        { return i.manifest, nil }
func (i *image) ConfigLayer() (v1.Layer, error)      { return i.cfgLayer, nil }
func (i *image) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := i.layers[h]; ok {
		return l, nil
	}
	if d, _ := i.cfgLayer.Digest(); d == h {
		return i.cfgLayer, nil
	}
	return nil, fmt.Errorf("oci: no blob %s in image", h)
}
