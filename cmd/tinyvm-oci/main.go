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
	// The first SIGINT or SIGTERM cancels ctx: the command cleans up and
	// exits 130. Then the default comes back, so a second one kills at
	// once (and the next run removes what that leaves).
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
