// Package qcow2 writes and inspects QEMU copy-on-write images, version 3.
//
// The layout follows the qcow2 specification as of QEMU 7.2, the QEMU that
// Debian 12 ships and that the tests run against:
//
//	https://gitlab.com/qemu-project/qemu/-/blob/v7.2.0/docs/interop/qcow2.txt
//
// (QEMU later converted the same text to docs/interop/qcow2.rst; at the
// v7.2.0 tag it is still qcow2.txt.)
//
// A written image is, in file order:
//
//	cluster 0        header (112 bytes, compression_type 0), the end of
//	                 the header extension area, zeros to the end of the cluster
//	refcount table   one or more clusters, pointing at the refcount blocks
//	refcount blocks  16-bit counts (refcount_order 4) for every host cluster
//	L1 table         size_to_l1(virtual size) entries
//	L2 tables        only those that map at least one stored cluster
//	data             the non-zero guest clusters, in guest order
//
// Clusters that are all zero are not stored, so the file grows with the data,
// not with the virtual size: a 1 TiB disk holding one boot sector is six
// 64 KiB clusters. Without compression every cluster the image references
// has refcount 1 and its L1 or L2 entry carries the COPIED flag, as
// qemu-img check requires.
//
// With Options.Compress, guest clusters are stored as qemu-img convert -c
// stores them: raw deflate (no zlib header) of the whole cluster, the last
// partial cluster zero-padded so that each one inflates to exactly
// cluster_size bytes, packed back to back without alignment and described by
// compressed cluster descriptors. A cluster whose deflate output is not
// smaller than a cluster is stored uncompressed instead. Every host cluster
// that a compressed descriptor's sectors touch counts one reference per
// descriptor, and compressed entries never carry COPIED.
//
// compress/flate refers back up to 32 KiB, while QEMU opens its inflater
// with a 4 KiB window (-12). That is safe: QEMU inflates each cluster in a
// single call into a cluster-sized buffer, and zlib accepts any distance
// into output it has already produced; the tests prove it with qemu-img.
//
// The writer needs the layout of every table before it writes the header, so
// in compressed mode it deflates each stored cluster twice (once to learn its
// size, once to write it) instead of holding compressed data in memory.
package qcow2
