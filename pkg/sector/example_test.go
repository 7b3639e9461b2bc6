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
	// sector: program does not fit in 510 bytes: 84 bytes over the budget; shorten the message or serial text
}
