package fat_test

import (
	"fmt"
	"time"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/fat"
)

// The smallest volume for two EFI applications: boot sector, two FATs,
// the root directory, EFI, EFI/BOOT and one cluster per file.
func ExampleBuild() {
	img, err := fat.Build([]fat.File{
		{Path: "EFI/BOOT/BOOTX64.EFI", Data: make([]byte, 364)},
		{Path: "EFI/BOOT/BOOTAA64.EFI", Data: make([]byte, 384)},
	}, fat.WithTime(time.Unix(1704067200, 0)))
	fmt.Println(len(img), err)

	_, err = fat.Build([]fat.File{{Path: "EFI/BOOT/BOOTX64.EFI.bak"}})
	fmt.Println(err)
	// Output:
	// 4096 <nil>
	// fat: bad file name "EFI/BOOT/BOOTX64.EFI.bak": "BOOTX64.EFI.bak" has more than one '.'; use slash-separated 8.3 names like EFI/BOOT/BOOTX64.EFI
}
