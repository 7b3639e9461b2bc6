// Command tinyvm-oci builds the smallest real VM, a 512-byte boot sector,
// in every common disk format and ships it as KubeVirt containerDisks and
// OCI artifacts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// Set by the release build (-ldflags -X).
var (
	version = "devel"
	commit  = ""
	date    = ""
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
