// Command tinyvm-oci builds the smallest real VM, a 512-byte boot sector,
// in every common disk format and ships it as KubeVirt containerDisks and
// OCI artifacts.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tinyvm-oci/tinyvm-oci/internal/gcstart"
)

// Set by the release build (-ldflags -X).
var (
	version = "devel"
	commit  = ""
	date    = ""
)

// startHeap is the memory at which the first garbage collection runs. A
// build of every output, of 1 MiB or of 1 TiB, stays under it without
// collecting, at 20 to 24 MB resident as with the default collector.
const startHeap = 64 << 20

func main() {
	gcstart.Delay(startHeap)
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
