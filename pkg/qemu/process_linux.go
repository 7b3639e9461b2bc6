package qemu

import (
	"os"
	"syscall"
)

// sysProcAttr puts QEMU in a process group of its own, so that a terminal's
// SIGINT reaches only us (we stop it and clean up), and has the kernel
// SIGKILL it if we die, even by SIGKILL, so it is never orphaned.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup kills QEMU's process group: QEMU and anything it started.
func killGroup(p *os.Process) error {
	if p == nil {
		return nil
	}
	if err := syscall.Kill(-p.Pid, syscall.SIGKILL); err != nil {
		return p.Kill()
	}
	return nil
}
