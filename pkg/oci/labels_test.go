package oci_test

import (
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
)

// TestRevisionURLCreatedBy: the revision annotation appears on the
// manifest and as a config label only when given, the url by default, and
// created_by names the command that made the image.
func TestRevisionURLCreatedBy(t *testing.T) {
	raw := rawFile(t, build.Options{})
	for _, tc := range []struct {
		opts          []oci.Option
		revision, url string
		createdBy     string
	}{
		{nil, "", "https://github.com/tinyvm-oci/tinyvm-oci", "tinyvm-oci build --format raw"},
		{[]oci.Option{oci.WithRevision("0123abc"), oci.WithURL("https://example.com/512vm"), oci.WithCreatedBy("tinyvm-oci push")},
			"0123abc", "https://example.com/512vm", "tinyvm-oci push --format raw"},
		{[]oci.Option{oci.WithURL("")}, "", "", "tinyvm-oci build --format raw"},
	} {
		idx, err := oci.ContainerDisk(raw, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		im, err := idx.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		img, err := idx.Image(im.Manifests[0].Digest) // linux/amd64
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		for _, ann := range []map[string]string{im.Annotations, cfg.Config.Labels} {
			rev, hasRev := ann["org.opencontainers.image.revision"]
			url, hasURL := ann["org.opencontainers.image.url"]
			if hasRev != (tc.revision != "") || hasURL != (tc.url != "") || rev != tc.revision || url != tc.url {
				t.Errorf("annotations %v: want revision %q url %q", ann, tc.revision, tc.url)
			}
		}
		if got := cfg.History[0].CreatedBy; got != tc.createdBy {
			t.Errorf("created_by %q, want %q", got, tc.createdBy)
		}
	}
}
