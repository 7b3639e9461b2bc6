package oci

import (
	"slices"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// Media types and annotation keys. The org.opencontainers.image.* keys are
// the image spec's pre-defined annotations (annotations.md); the io.tinyvm-oci
// keys are this project's, documented in docs/oci.md.
const (
	// ArtifactType is the artifactType of the all-formats artifact.
	ArtifactType = "application/vnd.tinyvm-oci.disks.v1"
	// EmptyMediaType is the OCI 1.1 empty descriptor's media type.
	EmptyMediaType types.MediaType = "application/vnd.oci.empty.v1+json"
	// EmptyDigest is the digest of the empty descriptor's blob, "{}".
	EmptyDigest = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationDescription = "org.opencontainers.image.description"
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationLicenses    = "org.opencontainers.image.licenses"
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationRefName     = "org.opencontainers.image.ref.name"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationURL         = "org.opencontainers.image.url"
	// AnnotationFormat names the disk format a containerDisk or an artifact
	// layer holds: a Type from the formats table (raw, qcow2, ...).
	AnnotationFormat = "io.tinyvm-oci.disk.format"
)

// ArtifactTag is the tag of the all-formats artifact; each containerDisk is
// tagged with its format's Type.
const ArtifactTag = "disks"

// DiskDir is the directory KubeVirt and CDI look in, and the uid and gid
// of the qemu user that must be able to read the disk.
const (
	DiskDir  = "disk"
	QemuUID  = 107
	QemuUser = "qemu"
)

// DefaultMaxSize is the default limit on each file Extract writes.
const DefaultMaxSize = 1 << 30

// Defaults for the annotations.
const (
	DefaultSource = "https://github.com/tinyvm-oci/tinyvm-oci"
	// DefaultURL is the url annotation: where to read about the image.
	DefaultURL      = DefaultSource
	DefaultLicenses = "Apache-2.0"
	DefaultVersion  = "devel"
	// DefaultCreatedBy is the command a containerDisk's history names.
	DefaultCreatedBy = "tinyvm-oci build"
)

// File is a disk file already written to a directory by a format writer.
type File struct {
	// Path is where the file is.
	Path string
	// Format is the table row that wrote it: its Type, file name and
	// artifact media type.
	Format formats.Format
}

// Option changes what ContainerDisk, Artifact, Images, WriteLayout and
// Extract do.
type Option func(*options)

type options struct {
	created     time.Time
	revision    string
	url         string
	createdBy   string
	vm          VMFunc
	vmArchs     []string
	description string
	source      string
	version     string
	licenses    string
	maxSize     int64
	blobDir     string
	archs       []string
}

func makeOptions(opts []Option) options {
	o := options{
		created:  formats.DefaultTime,
		source:   DefaultSource,
		url:      DefaultURL,
		version:  DefaultVersion,
		licenses: DefaultLicenses,
		maxSize:  DefaultMaxSize,
		archs:    slices.Clone(Architectures),
	}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// WithCreated sets every time in the images: the created annotation, label
// and config field, and the tar entries' mtime. The default is
// formats.DefaultTime; pass formats.Options.Stamp() to follow
// SOURCE_DATE_EPOCH.
func WithCreated(t time.Time) Option {
	return func(o *options) {
		if !t.IsZero() {
			o.created = t.UTC()
		}
	}
}

// WithDescription replaces the default description annotation.
func WithDescription(s string) Option { return func(o *options) { o.description = s } }

// WithSource sets the source annotation (default DefaultSource).
func WithSource(s string) Option { return func(o *options) { o.source = s } }

// WithRevision sets the org.opencontainers.image.revision annotation: the
// commit of the source the disk was built from (empty leaves it out).
func WithRevision(s string) Option { return func(o *options) { o.revision = s } }

// WithURL sets the org.opencontainers.image.url annotation: where to find
// more about the image (default DefaultURL; empty leaves it out).
func WithURL(s string) Option { return func(o *options) { o.url = s } }

// WithCreatedBy sets the created_by of a containerDisk's history entry, the
// command that made it (default DefaultCreatedBy). The format is appended
// as " --format TYPE".
func WithCreatedBy(s string) Option { return func(o *options) { o.createdBy = s } }

func (o options) createdByOrDefault() string {
	if o.createdBy == "" {
		return DefaultCreatedBy
	}
	return o.createdBy
}

// WithVersion sets the version annotation (default DefaultVersion), the
// version of tinyvm-oci that built the disk.
func WithVersion(s string) Option { return func(o *options) { o.version = s } }

// WithLicenses sets the licenses annotation, an SPDX expression (default
// DefaultLicenses).
func WithLicenses(s string) Option { return func(o *options) { o.licenses = s } }

// WithBlobDir has every compressed layer (a containerDisk's gzip tar, the
// artifact's, the VM artifact's zstd disk) written once, as it is made
// and hashed, into dir (created if need be) under its hex digest, and
// read from there afterwards: give it the blobs/sha256 directory of the
// OCI layout about to be written (LayoutBlobDir), whose writer then finds
// every blob in place, or any directory that outlives the images (push's
// temp directory). Without it a layer is compressed once for its digest
// and again on every read.
func WithBlobDir(dir string) Option { return func(o *options) { o.blobDir = dir } }

// WithMaxSize limits the size of each file Extract writes (default
// DefaultMaxSize, 1 GiB).
func WithMaxSize(n int64) Option { return func(o *options) { o.maxSize = n } }

// WithArchitectures sets the architectures a containerDisk's image index
// lists, each as a linux/ARCH entry: a subset of Architectures (the
// default is all of them). Order and case do not matter: the entries
// always follow the order of Architectures, so equal sets give equal
// digests. ContainerDisk fails on an unknown, repeated or empty list.
func WithArchitectures(archs ...string) Option {
	return func(o *options) { o.archs = archs }
}
