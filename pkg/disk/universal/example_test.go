package universal_test

import (
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/universal"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// The default 1 MiB disk: the BIOS program in the protective MBR, the EFI
// applications on the ESP, and data in three extents.
func Example() {
	s, err := sector.Build(sector.Options{Layout: sector.Partitioned})
	if err != nil {
		panic(err)
	}
	files := []fat.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: make([]byte, 364)},
		{Path: "EFI/BOOT/BOOTAA64.EFI", Data: make([]byte, 384)},
	}
	d, err := universal.New(s.Code(), files, 1<<20)
	if err != nil {
		panic(err)
	}
	for _, e := range d.Extents() {
		fmt.Printf("%7d %5d\n", e.Off, e.Len)
	}
	esp, err := universal.FindESP(d)
	fmt.Println(esp.Off, esp.Len, err)

	_, err = universal.New(s.Code(), files, 256<<10)
	fmt.Println(err)
	// Output:
	//       0 17408
	//   32768 32768
	// 1031680 16896
	// 32768 32768 <nil>
	// universal: disk too small: 262144 bytes; a disk that boots on UEFI needs at least 516096 bytes (504 KiB)
}
