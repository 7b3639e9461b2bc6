// Package fat writes small, reproducible FAT12 volumes: the EFI system
// partition of the universal disk and the El Torito EFI boot image of the
// ISO.
//
// The layout follows Microsoft's "FAT: General Overview of On-Disk Format"
// (version 1.03, 2000), the FAT that UEFI 2.10 §13.3 adopts for the EFI
// system partition. A volume holds only what it is given: a boot sector,
// two FATs, a root directory of 16 entries per sector and the clusters of
// the directories and files, one 512-byte sector per cluster unless the
// volume is large. Names are 8.3 and upper case, so there are no long-name
// entries. Every byte follows from the files and the options: the volume id
// is a hash of them, and every time stamp is the one time given.
package fat

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// File is one file of the volume.
type File struct {
	// Path is the slash-separated path from the root, each part an 8.3
	// name: "EFI/BOOT/BOOTX64.EFI". Lower-case letters are stored in upper
	// case, which FAT compares without case anyway.
	Path string
	// Data is the file's content.
	Data []byte
}

// Errors that Build returns, wrapped with details.
var (
	ErrName     = errors.New("fat: bad file name")
	ErrTooSmall = errors.New("fat: volume too small")
	ErrTooBig   = errors.New("fat: volume too big for FAT12")
)

// DefaultTime is the time stamp of every entry when WithTime is not given:
// SOURCE_DATE_EPOCH's default in this project, 2024-01-01T00:00:00Z.
var DefaultTime = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Option changes how Build writes the volume.
type Option func(*options)

type options struct {
	time   time.Time
	size   int64
	hidden uint32
}

// WithTime sets the creation, modification and access time of every entry.
// FAT counts from 1980 to 2107 in local-less two-second steps; a time
// outside that range is clamped to its ends, as zip does.
func WithTime(t time.Time) Option { return func(o *options) { o.time = t } }

// WithSize sets the volume's size in bytes, a multiple of 512. The space
// beyond the files is free clusters. Zero, the default, is the smallest
// volume that holds the files.
func WithSize(n int64) Option { return func(o *options) { o.size = n } }

// WithHiddenSectors records how many sectors precede the volume on its
// disk (BPB_HiddSec): the partition's first LBA. The default is 0, a volume
// of its own such as an El Torito image.
func WithHiddenSectors(n uint32) Option { return func(o *options) { o.hidden = n } }

// Geometry constants of every volume this package writes.
const (
	sectorSize      = 512
	reservedSectors = 1 // the boot sector
	numFATs         = 2 // the usual two copies; fsck.fat compares them
	entrySize       = 32
	entriesPerSec   = sectorSize / entrySize
	mediaFixed      = 0xF8
	// maxClusters is the most clusters a FAT12 volume has: from 4085 on,
	// readers take the volume for FAT16.
	maxClusters = 4084
	// maxSectorsPerCluster keeps clusters at 32 KiB, the spec's limit.
	maxSectorsPerCluster = 64
	// eoc marks the last cluster of a chain.
	eoc = 0xFFF
)

// Offsets in the boot sector (BPB and extended BPB).
const (
	offJump        = 0
	offOEMName     = 3
	offBytsPerSec  = 11
	offSecPerClus  = 13
	offRsvdSecCnt  = 14
	offNumFATs     = 16
	offRootEntCnt  = 17
	offTotSec16    = 19
	offMedia       = 21
	offFATSz16     = 22
	offSecPerTrk   = 24
	offNumHeads    = 26
	offHiddSec     = 28
	offTotSec32    = 32
	offDrvNum      = 36
	offBootSig     = 38
	offVolID       = 39
	offVolLab      = 43
	offFilSysType  = 54
	offBootCode    = 62
	offSignature   = 510
	extBootSig     = 0x29
	driveFixedDisk = 0x80
)

// Offsets in a directory entry.
const (
	offDirName     = 0
	offDirAttr     = 11
	offDirCrtTime  = 14
	offDirCrtDate  = 16
	offDirLstAcc   = 18
	offDirWrtTime  = 22
	offDirWrtDate  = 24
	offDirFstClus  = 26
	offDirFileSize = 28
	attrDirectory  = 0x10
	attrArchive    = 0x20
)

// stopCode is the volume's own boot code, reached only if a BIOS boots the
// volume by mistake: cli; hlt; jmp back to the hlt.
var stopCode = []byte{0xFA, 0xF4, 0xEB, 0xFD}

// node is a file or directory of the tree Build lays out.
type node struct {
	name     [11]byte // the 8.3 name as stored, space-padded
	dir      bool
	data     []byte
	children []*node
	cluster  uint32 // first cluster; 0 for the root and for empty files
	clusters uint32 // how many
}

// Build returns the bytes of a FAT12 volume holding files, with the
// directories their paths name.
func Build(files []File, opts ...Option) ([]byte, error) {
	o := options{time: DefaultTime}
	for _, opt := range opts {
		opt(&o)
	}
	root, err := tree(files)
	if err != nil {
		return nil, err
	}
	g, err := layout(root, o.size)
	if err != nil {
		return nil, err
	}
	return g.write(root, files, o), nil
}

// tree turns the paths into a tree of sorted directories.
func tree(files []File) (*node, error) {
	root := &node{dir: true}
	for _, f := range files {
		parts := strings.Split(f.Path, "/")
		dir := root
		for i, p := range parts {
			name, err := shortName(p)
			if err != nil {
				return nil, fmt.Errorf("%w %q: %v; use slash-separated 8.3 names like EFI/BOOT/BOOTX64.EFI", ErrName, f.Path, err)
			}
			last := i == len(parts)-1
			var next *node
			for _, c := range dir.children {
				if c.name == name {
					next = c
				}
			}
			switch {
			case next == nil:
				next = &node{name: name, dir: !last}
				if last {
					next.data = f.Data
				}
				dir.children = append(dir.children, next)
			case last || !next.dir:
				return nil, fmt.Errorf("%w %q: %s is already a %s", ErrName, f.Path, strings.Join(parts[:i+1], "/"), kind(next))
			}
			dir = next
		}
	}
	sortTree(root)
	return root, nil
}

func kind(n *node) string {
	if n.dir {
		return "directory"
	}
	return "file"
}

func sortTree(n *node) {
	slices.SortFunc(n.children, func(a, b *node) int { return bytes.Compare(a.name[:], b.name[:]) })
	for _, c := range n.children {
		sortTree(c)
	}
}

// shortName converts one path part to its stored 8.3 form.
func shortName(p string) ([11]byte, error) {
	var n [11]byte
	copy(n[:], "           ")
	base, ext, dot := strings.Cut(p, ".")
	switch {
	case p == "":
		return n, errors.New("empty part")
	case p == "." || p == "..":
		return n, fmt.Errorf("%q is not a name", p)
	case len(base) == 0 || len(base) > 8:
		return n, fmt.Errorf("%q has a base name of %d characters, want 1 to 8", p, len(base))
	case strings.Contains(ext, "."):
		return n, fmt.Errorf("%q has more than one '.'", p)
	case dot && (len(ext) == 0 || len(ext) > 3):
		return n, fmt.Errorf("%q has an extension of %d characters, want 1 to 3", p, len(ext))
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c != '.' && !validChar(c) {
			return n, fmt.Errorf("%q has %q, which 8.3 names do not allow", p, c)
		}
	}
	copy(n[:8], strings.ToUpper(base))
	copy(n[8:], strings.ToUpper(ext))
	return n, nil
}

// validChar reports whether c may appear in an 8.3 name (before upper-casing).
func validChar(c byte) bool {
	switch {
	case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'()-@^_`{}~", c) >= 0
}

// geometry is where everything goes on the volume.
type geometry struct {
	total      uint32 // sectors
	secPerClus uint32
	fatSecs    uint32
	rootSecs   uint32
	clusters   uint32 // data clusters the volume has
}

func (g geometry) fatStart() uint32  { return reservedSectors }
func (g geometry) rootStart() uint32 { return reservedSectors + numFATs*g.fatSecs }
func (g geometry) dataStart() uint32 { return g.rootStart() + g.rootSecs }

// fatSectors is how many sectors a FAT of n data clusters takes: 12 bits
// per entry, with the two reserved entries first.
func fatSectors(n uint32) uint32 { return ((n+2)*3/2 + (n+2)%2 + sectorSize - 1) / sectorSize }

// need counts the clusters the tree needs with spc sectors per cluster,
// assigning each node its share.
func need(n *node, spc uint32) uint32 {
	var total uint32
	for _, c := range n.children {
		size := uint32(len(c.data))
		if c.dir {
			size = uint32(2+len(c.children)) * entrySize // with . and ..
		}
		c.clusters = (size + spc*sectorSize - 1) / (spc * sectorSize)
		total += c.clusters
		if c.dir {
			total += need(c, spc)
		}
	}
	return total
}

// layout chooses the geometry: the smallest volume, or the given size with
// the smallest cluster that keeps it FAT12.
func layout(root *node, size int64) (geometry, error) {
	g := geometry{rootSecs: max(1, (uint32(len(root.children))+entriesPerSec-1)/entriesPerSec)}
	if size < 0 || size%sectorSize != 0 {
		return g, fmt.Errorf("%w: size %d is not a multiple of 512 bytes", ErrTooSmall, size)
	}
	if size == 0 {
		g.secPerClus = 1
		n := max(1, need(root, 1)) // readers refuse a volume without data clusters
		if n > maxClusters {
			return g, fmt.Errorf("%w: the files need %d clusters, at most %d fit", ErrTooBig, n, maxClusters)
		}
		g.clusters, g.fatSecs = n, fatSectors(n)
		g.total = g.dataStart() + n
		return g, nil
	}
	if size/sectorSize > 1<<32-1 {
		return g, fmt.Errorf("%w: %d bytes", ErrTooBig, size)
	}
	g.total = uint32(size / sectorSize)
	for spc := uint32(1); spc <= maxSectorsPerCluster; spc *= 2 {
		g.secPerClus = spc
		// The FAT's size depends on the cluster count and the other way
		// round; grow the FAT until it covers what is left.
		for g.fatSecs = 1; ; g.fatSecs++ {
			if g.dataStart() >= g.total {
				g.clusters = 0
				break
			}
			g.clusters = (g.total - g.dataStart()) / spc
			if fatSectors(g.clusters) <= g.fatSecs {
				break
			}
		}
		if g.clusters > maxClusters {
			continue
		}
		if n := need(root, spc); g.clusters < n || g.dataStart() >= g.total {
			minimum, _ := layout(root, 0)
			return g, fmt.Errorf("%w: %d bytes do not hold the files; at least %d bytes are needed", ErrTooSmall, size, int64(minimum.total)*sectorSize)
		}
		return g, nil
	}
	return g, fmt.Errorf("%w: %d bytes need more than %d clusters of 32 KiB; use at most %d bytes", ErrTooBig, size, maxClusters, int64(maxClusters)*maxSectorsPerCluster*sectorSize)
}

// write lays out the volume.
func (g geometry) write(root *node, files []File, o options) []byte {
	img := make([]byte, int64(g.total)*sectorSize)
	le := binary.LittleEndian

	// Clusters in depth-first order: a directory, then what it holds.
	fat := make([]byte, g.fatSecs*sectorSize)
	setFAT(fat, 0, 0xF00|mediaFixed)
	setFAT(fat, 1, eoc)
	next := uint32(2)
	var assign func(n *node)
	assign = func(n *node) {
		for _, c := range n.children {
			if c.clusters > 0 {
				c.cluster = next
				for i := range c.clusters {
					link := next + i + 1
					if i == c.clusters-1 {
						link = eoc
					}
					setFAT(fat, next+i, link)
				}
				next += c.clusters
			}
			if c.dir {
				assign(c)
			}
		}
	}
	assign(root)

	date, clock := stamp(o.time)
	entry := func(b []byte, name [11]byte, attr byte, cluster, size uint32) {
		copy(b[offDirName:], name[:])
		b[offDirAttr] = attr
		le.PutUint16(b[offDirCrtTime:], clock)
		le.PutUint16(b[offDirCrtDate:], date)
		le.PutUint16(b[offDirLstAcc:], date)
		le.PutUint16(b[offDirWrtTime:], clock)
		le.PutUint16(b[offDirWrtDate:], date)
		le.PutUint16(b[offDirFstClus:], uint16(cluster))
		le.PutUint32(b[offDirFileSize:], size)
	}
	clusterAt := func(c uint32) []byte {
		off := int64(g.dataStart()+(c-2)*g.secPerClus) * sectorSize
		return img[off:]
	}
	var fill func(dir []byte, n *node)
	fill = func(dir []byte, n *node) {
		for i, c := range n.children {
			b := dir[i*entrySize:]
			if c.dir {
				entry(b, c.name, attrDirectory, c.cluster, 0)
				sub := clusterAt(c.cluster)
				entry(sub, dotName("."), attrDirectory, c.cluster, 0)
				entry(sub[entrySize:], dotName(".."), attrDirectory, n.cluster, 0)
				fill(sub[2*entrySize:], c)
				continue
			}
			entry(b, c.name, attrArchive, c.cluster, uint32(len(c.data)))
			if len(c.data) > 0 {
				copy(clusterAt(c.cluster), c.data)
			}
		}
	}
	fill(img[int64(g.rootStart())*sectorSize:], root)

	for i := range uint32(numFATs) {
		copy(img[int64(g.fatStart()+i*g.fatSecs)*sectorSize:], fat)
	}

	bs := img[:sectorSize]
	copy(bs[offJump:], []byte{0xEB, offBootCode - 2, 0x90}) // jmp short to the code; nop
	copy(bs[offOEMName:], "TINYVM  ")
	le.PutUint16(bs[offBytsPerSec:], sectorSize)
	bs[offSecPerClus] = byte(g.secPerClus)
	le.PutUint16(bs[offRsvdSecCnt:], reservedSectors)
	bs[offNumFATs] = numFATs
	le.PutUint16(bs[offRootEntCnt:], uint16(g.rootSecs*entriesPerSec))
	if g.total <= 0xFFFF {
		le.PutUint16(bs[offTotSec16:], uint16(g.total))
	} else {
		le.PutUint32(bs[offTotSec32:], g.total)
	}
	bs[offMedia] = mediaFixed
	le.PutUint16(bs[offFATSz16:], uint16(g.fatSecs))
	le.PutUint16(bs[offSecPerTrk:], 63) // the usual translated geometry;
	le.PutUint16(bs[offNumHeads:], 255) // nothing reads it on these disks
	le.PutUint32(bs[offHiddSec:], o.hidden)
	bs[offDrvNum] = driveFixedDisk
	bs[offBootSig] = extBootSig
	le.PutUint32(bs[offVolID:], volumeID(files, o, g))
	copy(bs[offVolLab:], "NO NAME    ") // no label: none in the root either
	copy(bs[offFilSysType:], "FAT12   ")
	copy(bs[offBootCode:], stopCode)
	bs[offSignature], bs[offSignature+1] = 0x55, 0xAA
	return img
}

func dotName(s string) [11]byte {
	var n [11]byte
	copy(n[:], "           ")
	copy(n[:], s)
	return n
}

// setFAT sets the 12-bit FAT entry of cluster n: two entries share three
// bytes, the even one in the low 12 bits.
func setFAT(fat []byte, n, v uint32) {
	off := n * 3 / 2
	if n%2 == 0 {
		fat[off] = byte(v)
		fat[off+1] = fat[off+1]&0xF0 | byte(v>>8)&0x0F
	} else {
		fat[off] = fat[off]&0x0F | byte(v<<4)
		fat[off+1] = byte(v >> 4)
	}
}

// stamp encodes t as a FAT date and time, clamped to 1980-2107.
func stamp(t time.Time) (date, clock uint16) {
	t = t.UTC()
	if lo := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC); t.Before(lo) {
		t = lo
	}
	if hi := time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC); t.After(hi) {
		t = hi
	}
	date = uint16(t.Year()-1980)<<9 | uint16(t.Month())<<5 | uint16(t.Day())
	clock = uint16(t.Hour())<<11 | uint16(t.Minute())<<5 | uint16(t.Second()/2)
	return date, clock
}

// volumeID is the volume serial number: the first four bytes of a SHA-256
// of everything the volume holds, so equal inputs give equal ids and a
// change anywhere gives another.
func volumeID(files []File, o options, g geometry) uint32 {
	h := sha256.New()
	var n [8]byte
	put := func(v uint64) { binary.LittleEndian.PutUint64(n[:], v); h.Write(n[:]) }
	sorted := slices.Clone(files)
	slices.SortFunc(sorted, func(a, b File) int { return strings.Compare(strings.ToUpper(a.Path), strings.ToUpper(b.Path)) })
	for _, f := range sorted {
		put(uint64(len(f.Path)))
		h.Write([]byte(strings.ToUpper(f.Path)))
		put(uint64(len(f.Data)))
		h.Write(f.Data)
	}
	put(uint64(o.time.Unix()))
	put(uint64(g.total))
	put(uint64(o.hidden))
	return binary.LittleEndian.Uint32(h.Sum(nil))
}
