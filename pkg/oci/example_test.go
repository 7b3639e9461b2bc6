package oci_test

import (
	"fmt"
	"os"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// The artifact of the default build: one gzip-compressed tar of the
// directory 512-byte-vm/, which oras pull unpacks. testdata/oci-digests.txt
// pins its digest as "disks"; like the containerDisks', it follows the Go
// version's compress/gzip.
func ExampleArtifact() {
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	res, err := build.Files(dir, build.Options{})
	if err != nil {
		panic(err)
	}
	var files []oci.File
	for _, f := range res.Files {
		files = append(files, oci.File{Path: f.Path, Format: f.Format})
	}
	img, err := oci.Artifact(files)
	if err != nil {
		panic(err)
	}
	m, _ := img.Manifest()
	digest, _ := img.Digest()
	fmt.Println(m.ArtifactType)
	fmt.Println(m.Config.MediaType, m.Config.Size, m.Config.Digest)
	fmt.Println(len(m.Layers), "layers, first", m.Layers[0].MediaType, m.Layers[0].Annotations["org.opencontainers.image.title"])
	fmt.Println(digest)
	// Output:
	// application/vnd.tinyvm-oci.disks.v1
	// application/vnd.oci.empty.v1+json 2 sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a
	// 1 layers, first application/vnd.tinyvm-oci.disks.v1.tar+gzip 512-byte-vm
	// sha256:94cf420af8b24f9796d840c9fea69cbefbd7bd1cde29647d7d7a1e2288d6e42c
}

// The qcow2 containerDisk of the default build: an image index with a
// linux/amd64 and a linux/arm64 entry, each a full image whose config
// names its architecture, both holding the same layer. (Its digests depend
// on gzip's bytes, hence on the Go version; testdata/oci-digests.txt pins
// them for one.)
func ExampleContainerDisk() {
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	qcow2, _ := formats.Lookup("qcow2")
	res, err := build.Files(dir, build.Options{Formats: []formats.Format{qcow2}})
	if err != nil {
		panic(err)
	}
	idx, err := oci.ContainerDisk(oci.File{Path: res.Files[0].Path, Format: qcow2})
	if err != nil {
		panic(err)
	}
	im, _ := idx.IndexManifest()
	fmt.Println(im.MediaType)
	layers := map[string]bool{}
	for _, d := range im.Manifests {
		img, _ := idx.Image(d.Digest)
		cfg, _ := img.ConfigFile()
		m, _ := img.Manifest()
		layers[m.Layers[0].Digest.String()] = true
		fmt.Println(d.Platform, d.MediaType, "config", cfg.Platform())
	}
	fmt.Println(len(layers), "layer blob for", len(im.Manifests), "entries")
	// Output:
	// application/vnd.oci.image.index.v1+json
	// linux/amd64 application/vnd.oci.image.manifest.v1+json config linux/amd64
	// linux/arm64/v8 application/vnd.oci.image.manifest.v1+json config linux/arm64/v8
	// 1 layer blob for 2 entries
}
