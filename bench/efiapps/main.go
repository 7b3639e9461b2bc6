// Command efiapps writes the two x86-64 EFI applications bench/efi.sh
// times: the VM (--then poweroff) and a bare application that only calls
// ResetSystem(EfiResetShutdown), the floor any EFI program pays.
//
//	go run ./bench/efiapps DIR
//
// It writes DIR/vm/EFI/BOOT/BOOTX64.EFI and DIR/bare/EFI/BOOT/BOOTX64.EFI.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/efi"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/pe"
	"github.com/tinyvm-oci/tinyvm-oci/pkg/sector/x64"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: efiapps DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "efiapps:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	vm, err := efi.Build(sector.Options{Then: sector.PowerOff}, efi.AMD64)
	if err != nil {
		return err
	}
	bare, err := bareApp()
	if err != nil {
		return err
	}
	for name, b := range map[string][]byte{"vm": vm, "bare": bare} {
		path := filepath.Join(dir, name, filepath.FromSlash(efi.AMD64.BootPath()))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// bareApp is SystemTable->RuntimeServices->ResetSystem(EfiResetShutdown,
// 0, 0, NULL) and nothing else.
func bareApp() ([]byte, error) {
	a := x64.New()
	a.SubImm8(x64.RSP, 0x28)       // shadow space, RSP 16-aligned
	a.Load(x64.RAX, x64.RDX, 0x58) // RuntimeServices
	a.MovImm32(x64.RCX, 2)         // EfiResetShutdown
	a.Xor32(x64.RDX, x64.RDX)      //
	a.Xor32(x64.R8, x64.R8)        //
	a.Xor32(x64.R9, x64.R9)        //
	a.CallMem(x64.RAX, 0x68)       // ResetSystem
	code, err := a.Assemble()
	if err != nil {
		return nil, err
	}
	return pe.Write(pe.AMD64, code)
}
