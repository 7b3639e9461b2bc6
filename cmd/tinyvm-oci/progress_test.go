package main

import (
	"bytes"
	"os"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestProgress(t *testing.T) {
	ch := make(chan v1.Update, 3)
	ch <- v1.Update{Total: 100, Complete: 10}
	ch <- v1.Update{Total: 100, Complete: 100}
	close(ch)
	var b bytes.Buffer
	showProgress(&b, ch)
	if got := b.String(); got != "\rpushing: 10 of 100 bytes\rpushing: 100 of 100 bytes\n" {
		t.Errorf("progress %q", got)
	}
	// Only a terminal gets progress: a buffer or a regular file does not.
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(&b) || isTerminal(f) {
		t.Error("a buffer or a file counted as a terminal")
	}
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		if !isTerminal(tty) {
			t.Error("/dev/tty is not a terminal")
		}
	}
}
