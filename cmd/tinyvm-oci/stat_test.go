package main

import (
	"os"
	"syscall"
)

func diskUsage(st os.FileInfo) int64 {
	return st.Sys().(*syscall.Stat_t).Blocks * 512
}
