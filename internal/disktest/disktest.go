// Package disktest checks partitioned disks and FAT volumes with the real
// tools: fsck.fat and mtools (dosfstools, mtools) for FAT, sgdisk and
// sfdisk (gdisk, fdisk) for GPT. A missing tool skips through tooltest, or
// fails under TINYVM_REQUIRE_TOOLS=1.
package disktest

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tinyvm-oci/tinyvm-oci/internal/tooltest"
)

// Install hints for the tools of this package.
const (
	Dosfstools = "apt-get install dosfstools"
	Mtools     = "apt-get install mtools"
	Gdisk      = "apt-get install gdisk"
	Fdisk      = "apt-get install fdisk"
)

// File is a file expected on a FAT volume.
type File struct {
	Path string // slash-separated from the root, as stored (upper case)
	Data []byte
}

// Fsck runs fsck.fat -n on a FAT image file and returns its used and total
// cluster counts. Any repair fsck.fat would make fails the test.
func Fsck(t testing.TB, path string) (used, total int) {
	t.Helper()
	tool := tooltest.Require(t, "fsck.fat", Dosfstools)
	out, err := exec.Command(tool, "-n", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("fsck.fat -n: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+) files, (\d+)/(\d+) clusters`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("fsck.fat printed no cluster count:\n%s", out)
	}
	used, _ = strconv.Atoi(string(m[2]))
	total, _ = strconv.Atoi(string(m[3]))
	for _, bad := range []string{"Reclaimed", "differ", "Free cluster summary wrong", "Correcting", "invalid", "Wrong"} {
		if bytes.Contains(out, []byte(bad)) {
			t.Errorf("fsck.fat found a problem (%q):\n%s", bad, out)
		}
	}
	return used, total
}

// ReadBack lists every directory holding files with mdir and copies every
// file out with mcopy; both must match files, byte for byte. image may
// carry mtools' @@offset suffix to name a partition inside a disk.
func ReadBack(t testing.TB, image string, files []File) {
	t.Helper()
	mdir := tooltest.Require(t, "mdir", Mtools)
	mcopy := tooltest.Require(t, "mcopy", Mtools)
	dirs := map[string][]string{}
	for _, f := range files {
		p := "::/" + f.Path
		dir := p[:strings.LastIndexByte(p, '/')]
		dirs[dir] = append(dirs[dir], p)
		out, err := exec.Command(mcopy, "-n", "-i", image, p, "-").Output()
		if err != nil {
			t.Fatalf("mcopy %s: %v", p, err)
		}
		if !bytes.Equal(out, f.Data) {
			t.Errorf("mcopy %s: %d bytes differ from the %d written", p, len(out), len(f.Data))
		}
	}
	for dir, want := range dirs {
		if dir == ":" {
			dir = "::/"
		}
		out, err := exec.Command(mdir, "-b", "-i", image, dir).Output()
		if err != nil {
			t.Fatalf("mdir %s: %v", dir, err)
		}
		var got []string
		for _, l := range strings.Fields(string(out)) {
			if !strings.HasSuffix(l, "/") { // subdirectories
				got = append(got, l)
			}
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("mdir %s = %v, want %v", dir, got, want)
		}
	}
}

// Table is the part of sfdisk --json's output the tests compare.
type Table struct {
	Label      string      `json:"label"`
	ID         string      `json:"id"`
	FirstLBA   uint64      `json:"firstlba"`
	LastLBA    uint64      `json:"lastlba"`
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition as sfdisk --json prints it.
type Partition struct {
	Start uint64 `json:"start"`
	Size  uint64 `json:"size"`
	Type  string `json:"type"`
	UUID  string `json:"uuid"`
	Name  string `json:"name"`
}

// VerifyGPT checks a disk image with sgdisk -v and sfdisk --verify, and
// returns the table sfdisk --json reads from it. Any warning of sgdisk
// fails the test.
func VerifyGPT(t testing.TB, path string) Table {
	t.Helper()
	sgdisk := tooltest.Require(t, "sgdisk", Gdisk)
	sfdisk := tooltest.Require(t, "sfdisk", Fdisk)
	out, err := exec.Command(sgdisk, "-v", path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("No problems found")) {
		t.Errorf("sgdisk -v: %v\n%s", err, out)
	}
	for _, warn := range []string{"Warning", "Caution", "invalid", "damaged", "corrupt"} {
		if bytes.Contains(out, []byte(warn)) {
			t.Errorf("sgdisk -v warns (%q):\n%s", warn, out)
		}
	}
	if out, err := exec.Command(sfdisk, "--verify", path).CombinedOutput(); err != nil {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}
	out, err = exec.Command(sfdisk, "--json", path).Output()
	if err != nil {
		t.Fatalf("sfdisk --json: %v", err)
	}
	var j struct {
		PartitionTable Table `json:"partitiontable"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		t.Fatalf("sfdisk --json: %v\n%s", err, out)
	}
	return j.PartitionTable
}
