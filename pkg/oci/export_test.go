package oci

// SetInflatedHook lets tests see how many bytes each containerDisk layer
// inflated to; nil removes the hook.
func SetInflatedHook(f func(int64)) { inflatedHook = f }
