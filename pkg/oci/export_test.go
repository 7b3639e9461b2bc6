package oci

// SetInflatedHook lets tests see how many bytes each containerDisk layer
// inflated to; nil removes the hook.
func SetInflatedHook(f func(int64)) { inflatedHook = f }

// Spool is spool, for tests of its failure path.
var Spool = spool
