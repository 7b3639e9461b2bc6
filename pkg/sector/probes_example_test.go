package sector_test

import (
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// --probe's list, its canonical form, and what a bad one says.
func ExampleParseProbes() {
	p, err := sector.ParseProbes("id,heartbeat=500ms,bootcount")
	fmt.Println(p, err)
	_, err = sector.ParseProbes("heartbeat,uptime")
	fmt.Println(err)
	_, err = sector.ParseProbes("heartbeat=5ms")
	fmt.Println(err)
	// Output:
	// heartbeat=500ms,bootcount,id <nil>
	// sector: unknown probe "uptime": use heartbeat, echo, disks, bootcount, id (heartbeat takes =INTERVAL)
	// sector: heartbeat interval out of range: 5ms; use 100ms to 59m0s
}

// With probes the sector is a loader; the disk must carry the pieces
// Reserved lists: on the universal disk, with universal.WithReserved.
func ExampleSector_Reserved() {
	p, _ := sector.ParseProbes("bootcount,id")
	s, err := sector.Build(sector.Options{Layout: sector.Partitioned, Probes: p})
	if err != nil {
		panic(err)
	}
	for _, r := range s.Reserved() {
		fmt.Printf("LBA %d: %d bytes\n", r.LBA, len(r.Data))
	}
	fmt.Println(s.MinDiskSize())
	fmt.Println(p.CheckReadOnly("iso"))
	// Output:
	// LBA 34: 1024 bytes
	// LBA 63: 512 bytes
	// 32768
	// sector: probe bootcount needs a writable disk: iso is read-only; drop bootcount or use a disk format
}
