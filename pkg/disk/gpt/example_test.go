package gpt_test

import (
	"bytes"
	"fmt"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/disk/gpt"
)

// A table with one ESP on a 1 MiB disk, read back.
func ExampleTable_Build() {
	t := &gpt.Table{
		DiskGUID: gpt.HashGUID([]byte("example disk")),
		Partitions: []gpt.Partition{{
			Type: gpt.ESP, GUID: gpt.HashGUID([]byte("example ESP")),
			FirstLBA: 64, LastLBA: 127, Name: "EFI System",
		}},
	}
	const size = 1 << 20
	head, tail, err := t.Build(size, nil)
	if err != nil {
		panic(err)
	}
	img := make([]byte, size)
	copy(img, head)
	copy(img[size-len(tail):], tail)
	back, err := gpt.Read(bytes.NewReader(img), size)
	if err != nil {
		panic(err)
	}
	p, _ := back.Find(gpt.ESP)
	fmt.Println(len(head), len(tail), p.Type, p.Offset(), p.Size(), p.Name)
	// Output:
	// 17408 16896 C12A7328-F81F-11D2-BA4B-00A0C93EC93B 32768 32768 EFI System
}
