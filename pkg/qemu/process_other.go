//go:build !linux

package qemu

import (
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
