package exporters

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/cascade-sre/cascade/exporters/linedeflate"
)

// appendGzip appends to dst one gzip member (RFC 1952) holding text
// followed by the text of every steady part, compressing only text: each
// part's deflate bytes were compressed once, when its text last changed.
//
// This works because a deflate stream (RFC 1951) is a sequence of blocks.
// The encoder ends the blocks it writes on a byte boundary (with an empty
// stored block, as a flush does) without marking any of them final, and
// refers back to nothing before their start, so pieces compressed apart
// can follow one another. A final empty block ends the stream, and the
// member's trailer holds the CRC-32 and length of all the text, the CRC-32
// combined from each piece's.
func appendGzip(dst []byte, enc *linedeflate.Encoder, text []byte, steady []*steadyText) []byte {
	dst = append(dst, gzipHeader[:]...)
	dst = enc.Append(dst, text)
	crc, size := crc32.ChecksumIEEE(text), uint32(len(text))
	for _, st := range steady {
		dst = append(dst, st.deflate...)
		crc = crc32Combine(crc, st.crc, int64(len(st.text)))
		size += uint32(len(st.text)) // the trailer holds the length modulo 2^32
	}
	dst = append(dst, finalBlock[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, crc)
	return binary.LittleEndian.AppendUint32(dst, size)
}

var (
	// gzipHeader: the magic bytes, deflate, no flags, no modification time,
	// no compression level claimed (XFL 0), unknown operating system.
	gzipHeader = [10]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255}
	// finalBlock is an empty stored block marked final.
	finalBlock = [5]byte{0x01, 0x00, 0x00, 0xff, 0xff}
)

// crc32Combine returns the CRC-32 (IEEE) of a followed by b, given the
// CRC-32 of a, the CRC-32 of b and b's length. The CRC of a message is
// its polynomial times x^32 modulo the CRC's polynomial P, so appending n
// bytes multiplies a's part by x^(8n) modulo P; with both CRCs' pre- and
// post-conditioning the rest of the conditioning cancels out, leaving
// crc(a)·x^(8n) + crc(b).
func crc32Combine(crcA, crcB uint32, lenB int64) uint32 {
	if lenB <= 0 {
		return crcA
	}
	return mulModP(xPow8n(lenB), crcA) ^ crcB
}

// Polynomials modulo P are 32-bit words in the reflected order CRC-32 uses:
// the coefficient of x^0 is the top bit, of x^31 the lowest.
const (
	reflectedIEEE = 0xedb88320 // P without its x^32 term
	polyOne       = 1 << 31    // the polynomial 1
)

// mulModP returns a·b modulo P.
func mulModP(a, b uint32) uint32 {
	var product uint32
	for m := uint32(polyOne); m != 0; m >>= 1 {
		if a&m != 0 {
			product ^= b
		}
		// b·x: shift towards higher powers, folding x^32 back in.
		if b&1 != 0 {
			b = b>>1 ^ reflectedIEEE
		} else {
			b >>= 1
		}
	}
	return product
}

// xPow8n returns x^(8n) modulo P, by squaring: x^8, x^16, x^32, ...
// multiplied in for each bit set in n.
func xPow8n(n int64) uint32 {
	result := uint32(polyOne)
	square := uint32(polyOne >> 8) // x^8
	for ; n > 0; n >>= 1 {
		if n&1 != 0 {
			result = mulModP(square, result)
		}
		square = mulModP(square, square)
	}
	return result
}
