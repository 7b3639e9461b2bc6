package qemu

import (
	"bytes"
	"regexp"
	"sync"
	"time"
)

// Capture is an io.Writer for Options.Serial that collects the guest's
// output and lets a caller wait for a line to appear.
type Capture struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

// NewCapture returns an empty capture.
func NewCapture() *Capture { return &Capture{changed: make(chan struct{})} }

// Write appends guest output.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(p)
	close(c.changed)
	c.changed = make(chan struct{})
	return len(p), nil
}

// String returns everything captured so far.
func (c *Capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// WaitFor waits until the output contains s, or the timeout passes, or
// done is closed. It reports whether s appeared.
func (c *Capture) WaitFor(s string, timeout time.Duration, done <-chan struct{}) bool {
	return c.wait(func(b []byte) bool { return bytes.Contains(b, []byte(s)) }, timeout, done)
}

// WaitForMatch is WaitFor for a regular expression.
func (c *Capture) WaitForMatch(re *regexp.Regexp, timeout time.Duration, done <-chan struct{}) bool {
	return c.wait(re.Match, timeout, done)
}

func (c *Capture) wait(found func([]byte) bool, timeout time.Duration, done <-chan struct{}) bool {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		ok := found(c.buf.Bytes())
		changed := c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-done:
			return found([]byte(c.String()))
		case <-deadline:
			return false
		}
	}
}
