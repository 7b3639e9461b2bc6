//go:build !linux

package qemu

import (
	"errors"
	"os"
	"syscall"
)

// sysProcAttr is Linux-only (process_linux.go): elsewhere QEMU is killed
// when ctx ends or Kill is called, but not if we are killed first.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	return p.Kill()
}

func foreground(*syscall.SysProcAttr, *os.File) error {
	return errors.New("qemu: the curses display is supported on Linux only")
}

func takeTerminal(*os.File) {}
