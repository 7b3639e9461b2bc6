package main

import (
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/build"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci/remote"
)

// newManifestCmd is `tinyvm-oci manifest`, a thin layer over pkg/kubevirt.
func newManifestCmd() *cobra.Command {
	var (
		kind, name, namespace, runStrategy, pullMethod, size, pvc string
		firmware, arch, format                                    string
		resolve                                                   bool
	)
	cmd := &cobra.Command{
		Use:   "manifest [REF]",
		Short: "Print a KubeVirt VM or VMI, or a CDI DataVolume or DataSource, for an image",
		Long: `manifest prints a KubeVirt or CDI manifest as YAML, generated from the
projects' own API types (kubevirt.io/api v1.8.0, CDI API v1.64.0).

REF is the containerDisk image, for example the one push printed. A REF with
a digest is written as repository@digest. --resolve looks the digest of a
tag up in the registry (loopback registries over plain HTTP; credentials
from the docker config). A datasource takes no REF: it points at the PVC a
DataVolume filled (--pvc, default --name).

The VM boots the disk on virtio with BIOS output on the serial console
(virtctl console NAME) in 2Mi of guest memory. --firmware efi boots it with
UEFI instead (OVMF, Secure Boot off) in 48Mi; --arch arm64 writes
spec.architecture: arm64 and boots with UEFI (AAVMF; arm64 has no BIOS) in
128Mi. Pair --run-strategy Once with an image built with --then poweroff:
the VM runs once and its VMI ends Succeeded.

For KubeVirt tests, build the image with probes (docs/probes.md): heartbeat
for live migration and pause/unpause, bootcount for VMSnapshot/VMRestore
and clones (on a DataVolume: a containerDisk is ephemeral), echo for
virtctl console, disks for disk hotplug and cloud-init or config drives,
id for boot order.`,
		Example: `  tinyvm-oci manifest ghcr.io/acme/512vm:qcow2 > vm.yaml
  tinyvm-oci manifest --resolve 127.0.0.1:5000/512vm:qcow2
  tinyvm-oci manifest --kind vmi --namespace ci 127.0.0.1:5000/512vm:qcow2
  tinyvm-oci manifest --run-strategy Once --name fixture ghcr.io/acme/512vm:qcow2
  tinyvm-oci manifest --firmware efi ghcr.io/acme/512vm:qcow2
  tinyvm-oci manifest --arch arm64 --kind vmi ghcr.io/acme/512vm:qcow2
  tinyvm-oci manifest --kind datavolume --pull-method node --size 1MiB ghcr.io/acme/512vm:qcow2
  tinyvm-oci manifest --kind datasource --namespace os-images --pvc 512vm`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var o kubevirt.Options
			var err error
			if o.Kind, err = kubevirt.ParseKind(kind); err != nil {
				return usagef("--kind: %w", err)
			}
			o.Name, o.Namespace, o.PVC = name, namespace, pvc
			if cmd.Flags().Changed("run-strategy") {
				if o.RunStrategy, err = kubevirt.ParseRunStrategy(runStrategy); err != nil {
					return usagef("--run-strategy: %w", err)
				}
			}
			if cmd.Flags().Changed("pull-method") {
				if o.PullMethod, err = kubevirt.ParsePullMethod(pullMethod); err != nil {
					return usagef("--pull-method: %w", err)
				}
			}
			if cmd.Flags().Changed("firmware") {
				if o.Firmware, err = kubevirt.ParseFirmware(firmware); err != nil {
					return usagef("--firmware: %w", err)
				}
			}
			if cmd.Flags().Changed("arch") {
				if o.Arch, err = kubevirt.ParseArch(arch); err != nil {
					return usagef("--arch: %w", err)
				}
			}
			if cmd.Flags().Changed("size") {
				if o.Size, err = build.ParseSize(size); err != nil {
					return usagef("--size: %w", err)
				}
			}
			if cmd.Flags().Changed("name") && strings.TrimSpace(name) == "" {
				return usagef("--name must not be empty: give a DNS-1123 label such as %s", kubevirt.DefaultName)
			}
			switch {
			case o.Kind == kubevirt.DataSource && len(args) > 0:
				return usagef("a datasource takes no REF: it points at a PVC (--pvc)")
			case o.Kind != kubevirt.DataSource && len(args) == 0:
				return usagef("kind %s needs the image reference REF", o.Kind)
			case len(args) > 0:
				o.Image = args[0]
				if err := remote.CheckReference(strings.TrimSpace(o.Image)); err != nil {
					return usageError{err} // before anything repeats the reference
				}
			}
			if resolve && o.Kind == kubevirt.DataSource {
				return usagef("--resolve: a datasource has no image to resolve")
			}
			if err := o.Validate(); err != nil {
				return usageError{err}
			}
			tagFormat, err := checkImage(o.Image, o.Kind)
			if err != nil {
				return err
			}
			if resolve {
				var recorded string
				if o.Image, recorded, err = kubevirt.ResolveFormat(cmd.Context(), o.Image); err != nil {
					return err
				}
				// What the image says it is beats what its tag says.
				if err := kubevirt.CheckFormat(o.Kind, recorded); err != nil {
					return usageError{err}
				}
				if recorded != "" {
					tagFormat = recorded
				}
			}
			if o.Kind == kubevirt.DataVolume {
				if o.FileSize, err = importSize(cmd, format, tagFormat, o.Size); err != nil {
					return err
				}
			}
			y, err := kubevirt.Generate(o)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(y)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "kind", string(kubevirt.VM), "vm, vmi, datavolume or datasource")
	f.StringVar(&name, "name", kubevirt.DefaultName, "metadata.name (a DNS-1123 label)")
	f.StringVar(&namespace, "namespace", "", "metadata.namespace (default: none, kubectl's current namespace)")
	f.StringVar(&runStrategy, "run-strategy", string(kubevirt.DefaultRunStrategy), "vm: Always, Once, Halted or Manual")
	f.StringVar(&pullMethod, "pull-method", string(kubevirt.DefaultPullMethod), "datavolume: pod (importer pod pulls) or node (kubelet pulls)")
	f.StringVar(&size, "size", "1MiB", "datavolume: the disk's virtual size; storage covers it and the image file, rounded up to whole MiB")
	f.StringVar(&format, "format", "", "datavolume: the image's disk format when the tag does not name one (default qcow2): the storage request covers its file, which CDI copies into scratch space")
	f.StringVar(&pvc, "pvc", "", "datasource: the PVC to point at (default: --name)")
	f.StringVar(&firmware, "firmware", "", "vm, vmi: bios or efi (default bios; efi on arm64, which has no BIOS)")
	f.StringVar(&arch, "arch", "", "vm, vmi: spec.architecture, amd64 or arm64 (default: none, the cluster's)")
	f.BoolVar(&resolve, "resolve", false, "look REF's digest up in the registry and pin it")
	return cmd
}

// checkImage refuses an image reference a VM or DataVolume cannot use:
// the disks artifact, which holds files, not a containerDisk. (A password
// or a bad port was refused earlier, by remote.CheckReference.)
func checkImage(image string, kind kubevirt.Kind) (string, error) {
	if image == "" {
		return "", nil
	}
	ref, err := remote.ParseReference(strings.TrimSpace(image))
	if err != nil {
		return "", usageError{err}
	}
	t, ok := ref.(name.Tag)
	if !ok {
		return "", nil
	}
	switch tag := t.TagStr(); tag {
	case oci.ArtifactTag, oci.VMTag:
		return "", usagef("%s is the %q artifact, which is not a containerDisk: use a format tag such as %s:qcow2", t.Context(), tag, t.Context())
	case "ova":
		return "", usagef("%s:ova: an ova is a tar archive, which qemu-img reads as a raw disk, so KubeVirt and CDI would take it and the VM would never boot; use %s:qcow2", t.Context(), t.Context())
	default:
		if _, err := formats.Lookup(tag); err != nil {
			return "", nil // a tag of the user's: --resolve reads the format
		}
		if err := kubevirt.CheckFormat(kind, tag); err != nil {
			return "", usageError{err}
		}
		return tag, nil
	}
}

// importSize is the size of the file a DataVolume's import copies into
// CDI's scratch space: the --format file (or the tag's format, or qcow2,
// push's default) built at the disk's virtual size.
func importSize(cmd *cobra.Command, flagFormat, tagFormat string, size int64) (int64, error) {
	name := tagFormat
	if cmd.Flags().Changed("format") {
		name = flagFormat
	}
	if name == "" {
		name = "qcow2"
	}
	f, err := formats.Lookup(name)
	if err != nil {
		return 0, usagef("--format: %w", err)
	}
	if tagFormat != "" && name != tagFormat {
		return 0, usagef("--format %s, but the image is %s: leave --format out", name, tagFormat)
	}
	return build.FileSize(build.Options{Size: size}, f)
}
