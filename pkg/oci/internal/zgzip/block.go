package zgzip

import "io"

// The zero-run block (RFC 1951 section 3.2.7): a dynamic-Huffman block
// whose literal/length code has three symbols, literal 0 (code 10),
// end-of-block 256 (code 11) and length 258 (symbol 285, code 0), and
// whose distance code has distance 1 (code 0) and 2 (code 1), so each
// (258, 1) match is two zero bits.
//
// Its header, as the bits a decoder reads:
//
//	BFINAL 0, BTYPE 10
//	HLIT 29 (286 codes), HDIST 1 (2 codes), HCLEN 14 (18 code length codes)
//	code length code lengths in the order 16 17 18 0 8 7 9 6 10 5 11 4 12
//	3 13 2 14 1: 18 has length 1 (code 0), 2 and 1 have length 2 (codes 11
//	and 10), all others 0
//	the 288 code lengths: 2, 255 zeros (18+127, 18+106), 2, 28 zeros
//	(18+17), 1, then the distance code lengths 1, 1
type bitWriter struct {
	w   io.Writer
	acc uint64
	n   uint
	buf []byte
	err error
}

// bits appends the n low bits of v, least significant first, as deflate
// packs header fields and extra bits.
func (b *bitWriter) bits(v uint64, n uint) {
	b.acc |= v << b.n
	b.n += n
	for b.n >= 8 {
		b.buf = append(b.buf, byte(b.acc))
		b.acc >>= 8
		b.n -= 8
	}
}

// code appends a Huffman code of n bits, most significant bit first.
func (b *bitWriter) code(c uint64, n uint) {
	for i := int(n) - 1; i >= 0; i-- {
		b.bits(c>>uint(i)&1, 1)
	}
}

// zeroBits appends n zero bits without a loop per bit.
func (b *bitWriter) zeroBits(n uint64) {
	for n > 0 && b.n != 0 {
		b.bits(0, 1)
		n--
	}
	for n >= 8 {
		k := min(n/8, uint64(len(zeros)))
		if len(b.buf) > 0 {
			b.flush()
		}
		if b.err == nil {
			_, b.err = b.w.Write(zeros[:k])
		}
		n -= 8 * k
	}
	b.bits(0, uint(n))
}

func (b *bitWriter) flush() {
	if b.err == nil && len(b.buf) > 0 {
		_, b.err = b.w.Write(b.buf)
	}
	b.buf = b.buf[:0]
}

// The Huffman codes of the block, as (code, length).
const (
	clCode1, clCode2, clCode18 = 0b10, 0b11, 0b0 // code length alphabet
	litZero, litZeroLen        = 0b10, 2
	litEnd, litEndLen          = 0b11, 2
)

// writeZeroBlock writes one literal zero and then matches (258, 1)
// matches: 1+258*matches zero bytes. It ends with an empty stored block,
// so the output is byte-aligned again.
func writeZeroBlock(w io.Writer, matches int64) error {
	b := &bitWriter{w: w, buf: make([]byte, 0, 64)}
	b.bits(0, 1)  // BFINAL
	b.bits(2, 2)  // BTYPE: dynamic Huffman
	b.bits(29, 5) // HLIT: 257+29 = 286 literal/length codes
	b.bits(1, 5)  // HDIST: 1+1 = 2 distance codes
	b.bits(14, 4) // HCLEN: 4+14 = 18 code length codes
	// Code length code lengths, in RFC 1951's order.
	for _, sym := range []int{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1} {
		switch sym {
		case 18:
			b.bits(1, 3)
		case 1, 2:
			b.bits(2, 3)
		default:
			b.bits(0, 3)
		}
	}
	zeroRun := func(n uint64) { // n zero lengths, 11 to 138 each time
		for n > 0 {
			k := min(n, 138)
			b.code(clCode18, 1)
			b.bits(k-11, 7)
			n -= k
		}
	}
	b.code(clCode2, 2) // literal 0: length 2
	zeroRun(255)       // literals 1-255 unused
	b.code(clCode2, 2) // 256, end of block: length 2
	zeroRun(28)        // lengths 257-284 unused
	b.code(clCode1, 2) // 285, length 258: length 1
	b.code(clCode1, 2) // distance code 0 (distance 1): length 1
	b.code(clCode1, 2) // distance code 1: length 1, completing the code
	b.code(litZero, litZeroLen)
	b.zeroBits(2 * uint64(matches)) // each match: 285 (0), distance 1 (0)
	b.code(litEnd, litEndLen)
	// An empty stored block (BFINAL 0, BTYPE 00), LEN 0, NLEN 0xFFFF.
	b.bits(0, 3)
	if b.n > 0 {
		b.bits(0, 8-b.n)
	}
	b.bits(0xFFFF0000, 32)
	b.flush()
	return b.err
}
