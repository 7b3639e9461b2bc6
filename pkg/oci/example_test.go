package oci_test

import (
	"fmt"
	"os"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
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
	// sha256:357b86139f7a882dbe8ebb793d9bc6fbf479ff2b4b26431374c61d0beb284677
}
