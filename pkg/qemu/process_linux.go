package qemu

import (
	"os"
	"os/signal"
	"syscall"
	"unsafe"
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

// foreground makes QEMU's process group the foreground group of tty, the
// way a shell starts a job: the kernel then sends it the terminal's
// signals and lets it read, and stops us if we read.
func foreground(attr *syscall.SysProcAttr, tty *os.File) error {
	attr.Foreground = true
	attr.Ctty = int(tty.Fd()) // with Foreground, a descriptor of ours
	return nil
}

// takeTerminal makes our process group tty's foreground group again once
// QEMU is gone. From the background that would stop us (SIGTTOU) unless
// the signal is ignored meanwhile.
func takeTerminal(tty *os.File) {
	signal.Ignore(syscall.SIGTTOU)
	defer signal.Reset(syscall.SIGTTOU)
	pgrp := int32(syscall.Getpgrp())
	_, _, _ = syscall.Syscall(syscall.SYS_IOCTL, tty.Fd(), syscall.TIOCSPGRP, uintptr(unsafe.Pointer(&pgrp)))
}
