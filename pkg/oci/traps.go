package oci

import (
	"errors"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
)

// ErrNotContainerDisk is a format that must not be a containerDisk.
var ErrNotContainerDisk = errors.New("oci: not a containerDisk")

// CheckContainerDisk reports whether f may be published as a containerDisk.
// An archive (ova) may not: qemu-img reads the tar as a raw disk, so
// KubeVirt and CDI both accept it and the VM then never boots. It stays a
// file of the artifact (ArtifactTag).
func CheckContainerDisk(f formats.Format) error {
	if f.Media == formats.MediaArchive {
		return fmt.Errorf("%w: %s is a tar archive; qemu-img reads it as a raw disk, so KubeVirt and CDI accept it and the VM never boots",
			ErrNotContainerDisk, f.Type)
	}
	return nil
}
