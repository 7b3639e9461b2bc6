package sector_test

import (
	"fmt"
	"strings"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
)

// A fixture that prints a marker of its own and powers off.
func ExampleBuild() {
	serial := "READY"
	s, err := sector.Build(sector.Options{Then: sector.PowerOff, Serial: &serial})
	if err != nil {
		panic(err)
	}
	b := s.Bytes()
	fmt.Println(len(b), s.Used()+s.Free())
	fmt.Printf("% x\n", b[510:])
	// Output:
	// 512 510
	// 55 aa
}

// A message that does not fit says by how much.
func ExampleBuild_tooLong() {
	_, err := sector.Build(sector.Options{Message: strings.Repeat("x", 300)})
	fmt.Println(err)
	// Output:
	// sector: program does not fit in 510 bytes: 81 bytes over the budget; shorten the message or serial text
}

// The boot code of a GPT disk's protective MBR has 440 bytes: the disk
// signature and the partition table follow it.
func ExampleBuild_partitioned() {
	s, err := sector.Build(sector.Options{Layout: sector.Partitioned})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(s.Code()), s.Used()+s.Free())
	_, err = sector.Build(sector.Options{Layout: sector.Partitioned, Message: strings.Repeat("x", 200)})
	fmt.Println(err)
	// Output:
	// 440 440
	// sector: program does not fit in 440 bytes: 51 bytes over the budget; shorten the message or serial text
}
