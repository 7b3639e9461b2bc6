// Package build runs the pipeline from options to disk files: it builds the
// boot sector, pads it to the virtual size, and writes each selected format
// to a directory, with SHA256SUMS, an OCI layout and KubeVirt manifests, as
// one all-or-nothing transaction.
package build

import (
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"

	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/tinyvm-oci/tinyvm-oci/internal/holes"
	"github.com/tinyvm-oci/tinyvm-oci/internal/parallel"
	"github.com/tinyvm-oci/tinyvm-oci/internal/txn"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/formats/iso"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/kubevirt"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/oci"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
)

// DefaultSize is the default virtual disk size: 1 MiB. SeaBIOS computes
// zero cylinders for disks under 1008 sectors and then boots them only
// from legacy IDE, not from virtio-blk or AHCI (KubeVirt's defaults).
const DefaultSize = 1 << 20

// MinBootableSize is the smallest disk that boots on every bus.
const MinBootableSize = 1008 * disk.SectorSize

// SumsFile is the checksum file written beside the disks.
const SumsFile = "SHA256SUMS"

// LayoutDir is the OCI image layout's directory inside the output.
const LayoutDir = "oci"

// maxHashSize is the largest file SHA256SUMS covers. Hashing reads every
// byte, holes included: a 1 GiB sparse raw takes seconds to hash and a
// 2 TiB one hours, while writing it is instant. Larger files (only raw
// and fixed VHD get that big) are left out, with a warning.
const maxHashSize = 256 << 20

// Options are everything a build needs.
type Options struct {
	// Sector chooses the built-in boot program.
	Sector sector.Options
	// SectorFile, when set, is the user's own 512-byte boot sector, used
	// instead of building one. It is BIOS only.
	SectorFile []byte
	// Firmware lists what the disk carries programs for (nil means BIOS
	// and UEFI: the universal disk; BIOS alone with SectorFile). BIOS
	// alone gives the classic bare 512-byte program padded with zeros.
	Firmware []Firmware
	// Arches lists the EFI applications the ESP holds (nil means every
	// one: amd64 and arm64). Only with UEFI.
	Arches []efi.Arch
	// SignKey and SignCert, when set, Authenticode-sign the EFI
	// applications (pe.Sign), so that Secure Boot with SignCert in its db
	// boots them. Unsigned applications are refused under Secure Boot.
	SignKey  crypto.Signer
	SignCert *x509.Certificate
	// Size is the virtual disk size in bytes (0 means DefaultSize).
	Size int64
	// Formats are the formats to write (nil means every format).
	Formats []formats.Format
	// Format holds the per-format options and the timestamp.
	Format formats.Options
	// OCILayout, when set, also writes an OCI image layout at dir/oci
	// holding every file's containerDisk and the artifact (oci.WriteLayout).
	OCILayout bool
	// Version is the tinyvm-oci version the OCI annotations record.
	Version string
	// Revision, when set, is the OCI revision annotation: the commit
	// tinyvm-oci was built from.
	Revision string
	// ImageRepo, when set, also writes KubeVirt and CDI manifests at
	// dir/kubevirt that reference the containerDisk in this repository
	// (for example registry.example.com/512vm), as push would publish it.
	ImageRepo string
}

// Result describes a finished build.
type Result struct {
	// Sector is the BIOS boot sector on the disk, nil for a UEFI-only
	// disk.
	Sector *sector.Sector
	// EFI are the EFI applications on the disk's ESP.
	EFI []EFIApp
	// Size is the virtual size.
	Size int64
	// Files are the disk files written, in table order.
	Files []File
	// Warnings are things the user should know, such as a disk too small
	// to boot from virtio.
	Warnings []string
	// Layout is the OCI image layout written, if any.
	Layout string
	// Manifests are the KubeVirt and CDI manifests written, if any.
	Manifests []string
}

// File is one disk file written by Files.
type File struct {
	Format formats.Format
	// Path is where the file was written.
	Path string
	// Size is the file's apparent size in bytes.
	Size int64
	// SHA256 is the hex digest, empty when the file was too large to hash.
	SHA256 string
}

func (o Options) size() int64 {
	if o.Size == 0 {
		return DefaultSize
	}
	return o.Size
}

func (o Options) formatList() []formats.Format {
	if o.Formats == nil {
		return formats.Types
	}
	return o.Formats
}

// Validate checks the options without building anything.
func (o Options) Validate() error {
	if o.Size < 0 || o.size()%disk.SectorSize != 0 {
		return fmt.Errorf("size %d is not a multiple of 512 bytes: use a size such as 512, 1MiB or 10GiB", o.Size)
	}
	if err := o.validateFirmware(); err != nil {
		return err
	}
	if o.SectorFile != nil {
		_, err := sector.Load(o.SectorFile)
		return err
	}
	return o.Sector.Validate()
}

// Disk builds the raw virtual disk: by default the universal GPT disk,
// whose protective MBR holds the BIOS program and whose ESP holds the EFI
// applications; with BIOS alone, the bare boot sector padded with zeros.
func Disk(o Options) (disk.Disk, *Programs, []string, error) {
	if err := o.Validate(); err != nil {
		return nil, nil, nil, err
	}
	p, files, err := o.Programs()
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := o.rawDisk(p, files)
	if err != nil {
		return nil, nil, nil, err
	}
	var warnings []string
	if d.Size() < MinBootableSize {
		warnings = append(warnings, fmt.Sprintf(
			"a %d-byte disk boots only from IDE on the pc machine: SeaBIOS sees 0 cylinders below %d bytes, so virtio and SATA (KubeVirt's q35 and virtio defaults) will not boot it; use --size 1MiB for those",
			d.Size(), MinBootableSize))
	}
	return d, p, warnings, nil
}

// Files is FilesContext without cancellation.
func Files(dir string, o Options) (*Result, error) {
	return FilesContext(context.Background(), dir, o)
}

// FilesContext writes every selected format into dir, then SHA256SUMS and,
// as o asks, the OCI layout (dir/oci) and the KubeVirt manifests
// (dir/kubevirt), as one transaction (see internal/txn): everything is
// written to temp names inside dir first and renamed into place only when
// all of it is complete. A failure, or ctx ending, leaves dir exactly as
// it was. Files replace earlier files of the same names; dir/oci replaces
// only an earlier OCI layout, and anything else there is an error.
func FilesContext(ctx context.Context, dir string, o Options) (res *Result, err error) {
	d, p, warnings, err := Disk(o)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("no output directory given")
	}
	if o.OCILayout {
		// Refuse before any work, not after it (Commit checks again).
		if _, err := os.Lstat(filepath.Join(dir, LayoutDir)); err == nil {
			if err := oci.CheckLayout(filepath.Join(dir, LayoutDir)); err != nil {
				return nil, err
			}
		}
	}
	tx, err := txn.Begin(dir)
	if err != nil {
		return nil, fmt.Errorf("create output directory: %w", err)
	}
	removeLegacyTemps(dir)
	defer func() {
		if err != nil {
			err = tx.Redact(err)
			tx.Rollback()
			if cerr := ctx.Err(); cerr != nil {
				err = cerr // a cancelled write may not wrap it
			}
		}
	}()
	res = &Result{Sector: p.Sector, EFI: p.EFI, Size: d.Size(), Warnings: warnings}
	staged := map[string]string{} // final path: where it is until Commit
	var sums strings.Builder
	var todo []formats.Format
	for _, f := range o.formatList() {
		if f.Type == iso.Type {
			if err := o.Sector.Probes.CheckReadOnly(iso.Type); err != nil {
				// Only a default format list gets here (Validate refuses
				// an explicit iso with bootcount).
				res.Warnings = append(res.Warnings, "iso left out: "+err.Error())
				continue
			}
		}
		todo = append(todo, f)
	}
	var lay *layoutJobs
	if o.OCILayout {
		if lay, err = newLayoutJobs(tx, o, len(todo)); err != nil {
			return nil, err
		}
	}
	var man manifests
	// Once every format is written: the artifact, and the KubeVirt
	// manifests, in the pool with the layout's last images. The
	// manifests go first: run last, they left a CPU idle beside them.
	done := func(pool *parallel.Pool, out []written) {
		if lay != nil {
			lay.addArtifact(pool, o, out)
		}
		if o.ImageRepo != "" && !failed(o, out) {
			tag := manifestTag(todo, out)
			pool.Go(math.MaxInt64, func() { man = makeManifests(tx, o, tag, d.Size()) })
		}
	}
	written := writeFormats(ctx, tx, d, o, todo, lay, done)
	for i, f := range todo {
		file, tmp, err := written[i].file, written[i].tmp, written[i].err
		if errors.Is(err, formats.ErrSize) && o.Formats == nil {
			// Asked for every format: write those that can hold this size.
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s left out: %v", f.Type, err))
			continue
		}
		if err != nil {
			return nil, err
		}
		file.Path = tx.Path(f.FileName())
		staged[file.Path] = tmp
		res.Files = append(res.Files, file)
		if file.SHA256 == "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s left out of %s: hashing a %d-byte file would read it all", f.FileName(), SumsFile, file.Size))
			continue
		}
		fmt.Fprintf(&sums, "%s  %s\n", file.SHA256, f.FileName())
	}
	if _, err := tx.File(SumsFile, func(w *os.File) error {
		_, err := io.WriteString(w, sums.String())
		return err
	}); err != nil {
		return nil, err
	}
	if o.OCILayout {
		if err := writeLayout(tx, res, todo, written, lay); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.ImageRepo != "" {
		if err := stageManifests(tx, res, man); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		res.Layout, res.Manifests = "", nil
		return nil, err
	}
	return res, nil
}

// legacyTemp matches the temp names of versions before internal/txn:
// .<output>.tmp-<digits> beside each output (os.CreateTemp's pattern),
// which a killed build left behind for good.
var legacyTemp = regexp.MustCompile(`^\.(` + regexp.QuoteMeta(formats.BaseName) + `\.[a-z0-9]+|` + SumsFile + `|` + LayoutDir + `|(vm|vmi|datavolume|datasource)\.yaml)\.tmp-[0-9]+$`)

// removeLegacyTemps removes such names from dir and dir/kubevirt.
func removeLegacyTemps(dir string) {
	for _, d := range []string{dir, filepath.Join(dir, kubevirt.SubDir)} {
		es, _ := os.ReadDir(d)
		for _, e := range es {
			if legacyTemp.MatchString(e.Name()) {
				os.RemoveAll(filepath.Join(d, e.Name()))
			}
		}
	}
}

// manifestTag is the containerDisk tag the KubeVirt manifests point at:
// qcow2 if it was written, else raw (virt-launcher boots only these), or
// "" if neither was.
func manifestTag(fs []formats.Format, out []written) string {
	for _, want := range []string{"qcow2", "raw"} {
		for i, f := range fs {
			if f.Type == want && out[i].err == nil {
				return want
			}
		}
	}
	return ""
}

// manifests is the KubeVirt manifests a job wrote, in a temp dir of the
// transaction, for stageManifests.
type manifests struct {
	paths   []string
	warning string
	err     error
}

// makeManifests writes dir/kubevirt/*.yaml for the containerDisk tag into
// a temp dir of tx. It runs in writeFormats' pool, once the formats are
// written, beside the layout's last images.
func makeManifests(tx *txn.Txn, o Options, tag string, size int64) manifests {
	if tag == "" {
		return manifests{warning: "KubeVirt manifests not written: KubeVirt boots only qcow2 or raw containerDisks; add --format qcow2"}
	}
	ko := kubevirt.DirOptions{Repo: o.ImageRepo, Tag: tag, Size: size}
	for _, a := range o.EFIArches() {
		ko.UEFI = append(ko.UEFI, kubevirt.Arch(a))
	}
	if !o.Has(BIOS) {
		ko.Firmware = kubevirt.EFI // vm.yaml and vmi.yaml too: nothing for a BIOS to run
	}
	if o.SectorFile == nil && o.Sector.Then == sector.PowerOff {
		// A VM that powers itself off runs to completion: the VMI ends
		// Succeeded instead of being restarted.
		ko.RunStrategy = kubevirtv1.RunStrategyOnce
	}
	scratch, err := tx.TempDir()
	if err != nil {
		return manifests{err: err}
	}
	paths, err := kubevirt.WriteDir(scratch, ko)
	return manifests{paths: paths, err: err}
}

// stageManifests stages what makeManifests wrote as dir/kubevirt/*.yaml.
// Other files in dir/kubevirt are left alone.
func stageManifests(tx *txn.Txn, res *Result, m manifests) error {
	if m.err != nil {
		return m.err
	}
	if m.warning != "" {
		res.Warnings = append(res.Warnings, m.warning)
	}
	for _, p := range m.paths {
		name := path.Join(kubevirt.SubDir, filepath.Base(p))
		if err := tx.Add(name, p, nil); err != nil {
			return err
		}
		res.Manifests = append(res.Manifests, tx.Path(name))
	}
	return nil
}

// layoutJobs makes the images of dir/oci while the formats are written:
// each file's own images (its containerDisk; the VM artifact for the raw
// disk) as soon as that file is complete, and the artifact once every
// file is, each compressed straight into its blob in the staged layout.
// So the CPUs that would wait for the slowest format do the layout's
// work, and what is left after the formats is writing the manifests.
type layoutJobs struct {
	tmp  string // the staged dir/oci
	opts []oci.Option
	per  [][]made // each format's own images, by format index
	art  made     // the artifact
}

// made is one image a job made.
type made struct {
	img oci.Tagged
	err error
}

func newLayoutJobs(tx *txn.Txn, o Options, n int) (*layoutJobs, error) {
	// Only staged as dir/oci (writeLayout) if some file was written; a
	// TempDir not added goes with the staging area.
	tmp, err := tx.TempDir()
	if err != nil {
		return nil, err
	}
	opts := append(o.ImageOptions(), oci.WithCreatedBy("tinyvm-oci build"), oci.WithBlobDir(oci.LayoutBlobDir(tmp)))
	return &layoutJobs{tmp: tmp, opts: opts, per: make([][]made, n)}, nil
}

// addFile queues the images of format i's file, w, just written. They
// open it by name (w.Name(), where it is staged), so they may run while w
// is still being hashed and closed.
func (l *layoutJobs) addFile(pool *parallel.Pool, i int, f formats.Format, w *os.File) error {
	st, err := w.Stat()
	if err != nil {
		return err
	}
	jobs := oci.FileJobs(oci.File{Path: w.Name(), Format: f}, st.Size(), l.opts...)
	l.per[i] = make([]made, len(jobs))
	for k, j := range jobs {
		pool.Go(j.Cost, func() { l.per[i][k].img, l.per[i][k].err = j.Run() })
	}
	return nil
}

// addArtifact queues the artifact of the files bound for the layout, once
// every format is written, unless the build has failed already.
func (l *layoutJobs) addArtifact(pool *parallel.Pool, o Options, out []written) {
	if failed(o, out) {
		return
	}
	var files []oci.File
	for _, w := range out {
		if w.err == nil {
			files = append(files, oci.File{Path: w.tmp, Format: w.file.Format})
		}
	}
	if len(files) == 0 {
		return
	}
	j := oci.ArtifactJob(files, l.opts...)
	pool.Go(j.Cost, func() { l.art.img, l.art.err = j.Run() })
}

// failed reports whether a format failed the build: any error but a
// default build's format too small for the size, which is left out.
func failed(o Options, out []written) bool {
	for _, w := range out {
		if w.err != nil && !(errors.Is(w.err, formats.ErrSize) && o.Formats == nil) {
			return true
		}
	}
	return false
}

// writeLayout stages dir/oci from the images the layout jobs made of the
// files in res, and writes its manifests and index.
func writeLayout(tx *txn.Txn, res *Result, fs []formats.Format, out []written, l *layoutJobs) error {
	if len(res.Files) == 0 {
		return nil
	}
	// Staged before its errors are read, so that they name dir/oci.
	if err := tx.Add(LayoutDir, l.tmp, oci.CheckLayout); err != nil {
		return err
	}
	var imgs []oci.Tagged
	for i := range fs {
		if out[i].err != nil {
			continue // a default build's format too small for the size
		}
		for _, m := range l.per[i] {
			if m.err != nil {
				return m.err
			}
			imgs = append(imgs, m.img)
		}
	}
	if l.art.err != nil {
		return l.art.err
	}
	imgs = append(imgs, l.art.img)
	oci.Sort(imgs)
	if err := oci.WriteLayoutDir(l.tmp, imgs); err != nil {
		return err
	}
	res.Layout = tx.Path(LayoutDir)
	return nil
}

// describe sizes and hashes a file just written.
func describe(ctx context.Context, f formats.Format, w *os.File) (File, error) {
	st, err := w.Stat()
	if err != nil {
		return File{}, err
	}
	file := File{Format: f, Size: st.Size()}
	if st.Size() <= maxHashSize {
		h := sha256.New()
		// The holes the writers left hash as zeros without being read.
		if _, err := holes.Copy(ctx, h, w, st.Size()); err != nil {
			return File{}, fmt.Errorf("hash %s: %w", f.FileName(), err)
		}
		file.SHA256 = hex.EncodeToString(h.Sum(nil))
	}
	return file, nil
}

// written is one format's file as writeFormats staged it.
type written struct {
	file File
	tmp  string // where it is until Commit
	err  error
}

// writeFormats stages every format's file from d, GOMAXPROCS at a time:
// each reads the same disk and writes its own file, so the results do
// not depend on the order. They come back in the order of fs. With lay,
// the layout's images are made in the same pool, each as soon as the
// files it reads are written; done queues what needs them all.
func writeFormats(ctx context.Context, tx *txn.Txn, d disk.Disk, o Options, fs []formats.Format, lay *layoutJobs, done func(*parallel.Pool, []written)) []written {
	out := make([]written, len(fs))
	var pool parallel.Pool
	var left atomic.Int64
	left.Store(int64(len(fs)))
	for i, f := range fs {
		// The formats before any image, in order.
		pool.Go(math.MaxInt64-int64(i), func() {
			if err := ctx.Err(); err != nil {
				out[i].err = err
			} else {
				out[i].tmp, out[i].err = tx.File(f.FileName(), func(w *os.File) error {
					cw := &ctxWriter{f: w, ctx: ctx}
					if err := f.Write(cw, d, o.Format); err != nil {
						return fmt.Errorf("write %s: %w", f.Type, err)
					}
					if err := cw.finish(); err != nil {
						return fmt.Errorf("write %s: %w", f.Type, err)
					}
					if lay != nil {
						// The file is complete: its images read it
						// while it is hashed.
						if err := lay.addFile(&pool, i, f, w); err != nil {
							return err
						}
					}
					var err error
					out[i].file, err = describe(ctx, f, w)
					return err
				})
			}
			if left.Add(-1) == 0 {
				done(&pool, out)
			}
		})
	}
	pool.Wait()
	return out
}

// WriteFileAtomic creates path by writing a temp file in the same
// directory and renaming it into place. On any error the temp file is
// removed and path is left as it was.
func WriteFileAtomic(path string, write func(*os.File) error) error {
	tx, err := txn.Begin(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.File(filepath.Base(path), write); err != nil {
		return err
	}
	return tx.Commit()
}

// ctxWriter is a file whose writes fail once ctx is done, so that a long
// write stops on a signal. It has Seek and Truncate, with which the
// writers make holes, and nothing else that could bypass Write.
//
// It also makes holes itself: past everything written so far, each
// holeMin-byte block of zeros a write holds becomes a seek, so a format
// that spells out
// its zeros (vhdx's 5 MiB for a 1 MiB disk) is as sparse on disk as the
// raw file, and what reads it back skips the holes. Such a write lands on
// bytes never written, so they are zeros already; finish extends the file
// over a hole at its end.
type ctxWriter struct {
	f   *os.File
	ctx context.Context
	off int64 // the file offset
	hi  int64 // the end of everything written or truncated to
	end int64 // the end of the last hole made by a write
}

// holeMin is the shortest zero write that ctxWriter turns into a hole: a
// file system block.
const holeMin = 4096

func (w *ctxWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	if len(p) < holeMin || w.off < w.hi {
		return w.write(p)
	}
	// Past everything written: write the data, skip the zero blocks.
	done := 0
	for done < len(p) {
		n := min(holeMin, len(p)-done)
		if n < holeMin || !disk.IsZero(p[done:done+n]) {
			k := done + n
			for k < len(p) && (len(p)-k < holeMin || !disk.IsZero(p[k:k+holeMin])) {
				k = min(k+holeMin, len(p))
			}
			m, err := w.write(p[done:k])
			if done += m; err != nil {
				return done, err
			}
			continue
		}
		off, err := w.f.Seek(int64(n), io.SeekCurrent)
		if err != nil {
			return done, err
		}
		w.off, w.end = off, off
		done += n
	}
	return done, nil
}

func (w *ctxWriter) write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	w.hi = max(w.hi, w.off)
	return n, err
}

func (w *ctxWriter) Seek(off int64, whence int) (int64, error) {
	n, err := w.f.Seek(off, whence)
	if err == nil {
		w.off = n
	}
	return n, err
}

func (w *ctxWriter) Truncate(size int64) error {
	if err := w.f.Truncate(size); err != nil {
		return err
	}
	w.hi = max(w.hi, size)
	w.end = min(w.end, size) // a hole past size is gone with it
	return nil
}

// finish extends the file over a hole the writes left at its end.
func (w *ctxWriter) finish() error {
	if w.end <= w.hi {
		return nil
	}
	return w.f.Truncate(w.end)
}
