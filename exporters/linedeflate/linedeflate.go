// Package linedeflate compresses text whose lines resemble the line before,
// as the Prometheus exposition format's do, into deflate blocks (RFC 1951)
// that any gzip reader decodes.
//
// A general compressor finds repeats through a hash table of every position
// it has seen (klauspost's fastest level keeps 128 KiB of one). Between two
// scrapes seconds apart other processes empty the processor's caches, and
// that table is then most of what a scrape waits for. Exposition lines need
// no table: a series' line repeats the one before it up to the label value
// that differs, and again after it, so this encoder only looks for a repeat
// at the same column of the line before, at the column that puts the two
// lines' values (after their last space) over each other, which is where
// the repeat resumes after label values of different lengths, and at the
// distance of the last repeat it found. All it touches besides the text is
// a token buffer and a few tables of a few hundred entries each.
//
// Each block carries Huffman codes built from its own symbols' counts, so
// the random digits of timestamps cost about what they would in any deflate
// stream.
package linedeflate

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
)

const (
	minMatch    = 4     // a repeat of 3 costs about what 3 literals do
	maxMatch    = 258   // the longest deflate can say
	maxDistance = 32768 // deflate's window
	// blockTokens is about how many tokens a block holds: the token buffer
	// stays at 64 KiB however long the text is.
	blockTokens = 1 << 14
	// maxLiteralRun is the longest run of literals one token stands for.
	maxLiteralRun = matchFlag - 1

	numLitLen = 286 // literals 0-255, end of block 256, lengths 257-285
	numDist   = 30
	endBlock  = 256

	maxCodeBits       = 15 // deflate's longest literal, length or distance code
	maxCodeLengthBits = 7  // its longest code for the code lengths

	matchFlag = 1 << 31
)

// Encoder compresses text into deflate blocks. Its buffers are kept from one
// call to the next, so a warm encoder allocates nothing but what dst needs
// to grow. It is not safe for concurrent use.
type Encoder struct {
	// tokens stand for the text from blockStart on: a run of that many
	// literal bytes, or matchFlag | (length-3)<<15 | (distance-1).
	tokens     []uint32
	src        []byte // the text being compressed, during Append
	blockStart int
	litFreq    [numLitLen]uint32
	distFreq   [numDist]uint32
	w          bitWriter

	// The current block's codes, and their lengths.
	litLen   [numLitLen]uint8
	distLen  [numDist]uint8
	litCode  [numLitLen]uint16
	distCode [numDist]uint16
	huff     huffmanBuilder
}

// Append appends src, compressed, to dst and returns the result: deflate
// blocks, none marked final, ending on a byte boundary with an empty stored
// block, as a flush of any deflate writer does. The caller ends the stream
// (with a final block) after this and whatever else it appends.
//
// Repeats are looked for within src only, so each call's output stands
// alone and pieces compressed by separate calls can follow one another.
func (e *Encoder) Append(dst, src []byte) []byte {
	e.w = bitWriter{out: dst}
	e.src, e.blockStart = src, 0
	e.tokens = e.tokens[:0]
	e.litFreq, e.distFreq = [numLitLen]uint32{}, [numDist]uint32{}

	prevStart, prevSpace := -1, -1 // the line before and its last space
	lastDist := 0
	for lineStart, p := 0, 0; p < len(src); {
		lineEnd := nextLineEnd(src, lineStart)
		space := lastSpace(src, lineStart, lineEnd)
		if p >= lineEnd { // a repeat ran over this whole line
			prevStart, prevSpace, lineStart = lineStart, space, lineEnd
			continue
		}
		// The distances to try in this line: the same column of the line
		// before, its value's column, the last repeat's. Each far enough
		// back for any position in the line and near enough for deflate.
		var dists [3]int
		nd := 0
		aligned := 0
		if space >= 0 && prevSpace >= 0 {
			aligned = space - prevSpace
		}
		for _, d := range [3]int{lineStart - prevStart, aligned, lastDist} {
			if prevStart >= 0 && d > 0 && d <= lineStart && d <= maxDistance && !slices.Contains(dists[:nd], d) {
				dists[nd] = d
				nd++
			}
		}
		literals := 0 // bytes since the last repeat, sent as literals
		for p < lineEnd {
			if p+8 > len(src) { // the last few bytes: not worth a repeat
				literals += lineEnd - p
				p = lineEnd
				break
			}
			// Where, within the next five positions, a repeat of four bytes
			// or more starts at one of the distances, and how long it is.
			start, length, dist := 5, 0, 0
			here := binary.LittleEndian.Uint64(src[p:])
			for _, d := range dists[:nd] {
				k := firstRunOfFour(here ^ binary.LittleEndian.Uint64(src[p-d:]))
				if k > start || k == 5 {
					continue
				}
				n := minMatch + matchLength(src[p+k+minMatch:min(len(src), p+k+maxMatch)], src[p+k-d+minMatch:])
				if k < start || n > length {
					start, length, dist = k, n, d
				}
			}
			start = min(start, lineEnd-p)
			literals += start
			p += start
			if length > 0 && p < lineEnd {
				e.addLiterals(src[p-literals : p])
				literals = 0
				e.addMatch(length, dist)
				lastDist = dist
				p += length
				if len(e.tokens) >= blockTokens {
					e.writeBlock(p)
				}
			}
		}
		e.addLiterals(src[p-literals : p])
		if len(e.tokens) >= blockTokens {
			e.writeBlock(p)
		}
		prevStart, prevSpace, lineStart = lineStart, space, lineEnd
	}
	if len(e.tokens) > 0 {
		e.writeBlock(len(src))
	}
	// An empty stored block: three header bits, zero padding to the byte,
	// then LEN 0 and its complement.
	e.w.write(0, 3)
	e.w.alignToByte()
	e.src = nil
	return append(e.w.out, 0, 0, 0xff, 0xff)
}

// lastSpace returns the index of the last space in src[start:end] (in a
// sample's line, the one before its value), or -1.
func lastSpace(src []byte, start, end int) int {
	if i := bytes.LastIndexByte(src[start:end], ' '); i >= 0 {
		return start + i
	}
	return -1
}

// nextLineEnd returns the index just past the newline ending the line that
// starts at start, or len(src) for an unterminated last line.
func nextLineEnd(src []byte, start int) int {
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		return start + i + 1
	}
	return len(src)
}

// firstRunOfFour returns the first k, at most 4, at which bytes k to k+3 of
// x (low byte first) are all zero: where two texts whose words were xored
// into x repeat for four bytes or more. It returns 5 when there is none.
func firstRunOfFour(x uint64) int {
	const low7 = 0x7f7f7f7f7f7f7f7f
	zero := ^((x&low7 + low7) | x | low7) // the top bit of each zero byte
	run := zero & (zero >> 8) & (zero >> 16) & (zero >> 24)
	if run == 0 {
		return 5
	}
	return bits.TrailingZeros64(run) / 8
}

// matchLength returns how many leading bytes a and b share, a being no
// longer than b; eight at a time.
func matchLength(a, b []byte) int {
	n := 0
	for len(a)-n >= 8 {
		if x := binary.LittleEndian.Uint64(a[n:]) ^ binary.LittleEndian.Uint64(b[n:]); x != 0 {
			return n + bits.TrailingZeros64(x)/8
		}
		n += 8
	}
	for n < len(a) && a[n] == b[n] {
		n++
	}
	return n
}

// addLiterals adds a token for a run of literal bytes, the next in src.
func (e *Encoder) addLiterals(run []byte) {
	for len(run) > 0 {
		n := min(len(run), maxLiteralRun)
		for _, c := range run[:n] {
			e.litFreq[c]++
		}
		e.tokens = append(e.tokens, uint32(n))
		run = run[n:]
	}
}

func (e *Encoder) addMatch(length, dist int) {
	e.tokens = append(e.tokens, matchFlag|uint32(length-3)<<15|uint32(dist-1))
	e.litFreq[257+int(lengthSymbol[length-3])]++
	e.distFreq[distanceSymbol(dist-1)]++
}

// writeBlock writes the tokens gathered, which stand for src from
// e.blockStart to end, as one block with dynamic Huffman codes (BTYPE 10),
// and starts the next block at end.
func (e *Encoder) writeBlock(end int) {
	e.litFreq[endBlock] = 1
	e.huff.lengths(e.litFreq[:], maxCodeBits, e.litLen[:])
	e.huff.lengths(e.distFreq[:], maxCodeBits, e.distLen[:])
	if lastUsed(e.distLen[:]) < 0 {
		// All literals: a decoder still wants one distance code.
		e.distLen[0] = 1
	}
	canonicalCodes(e.litLen[:], e.litCode[:])
	canonicalCodes(e.distLen[:], e.distCode[:])

	e.w.write(0b100, 3) // not final; BTYPE 10, written low bit first
	e.writeCodeLengths()

	w := e.w // a copy the compiler can keep in registers
	p := e.blockStart
	for _, t := range e.tokens {
		if t&matchFlag == 0 { // a run of t literals
			for _, c := range e.src[p : p+int(t)] {
				w.write(uint64(e.litCode[c]), uint(e.litLen[c]))
			}
			p += int(t)
			continue
		}
		l := t >> 15 & 0xff // length-3
		s := lengthSymbol[l]
		ls := 257 + int(s)
		w.write(uint64(e.litCode[ls])|uint64(l-lengthBase[s])<<e.litLen[ls], uint(e.litLen[ls]+lengthExtra[s]))
		d := t & 0x7fff // distance-1
		ds := distanceSymbol(int(d))
		w.write(uint64(e.distCode[ds])|uint64(d-distanceBase[ds])<<e.distLen[ds], uint(e.distLen[ds]+distanceExtra[ds]))
		p += int(l) + 3
	}
	if p != end {
		panic("linedeflate: a block's tokens do not cover its text")
	}
	w.write(uint64(e.litCode[endBlock]), uint(e.litLen[endBlock]))
	e.w = w

	e.tokens = e.tokens[:0]
	e.litFreq, e.distFreq = [numLitLen]uint32{}, [numDist]uint32{}
	e.blockStart = end
}

// codeLengthOrder is the order in which a block header gives the lengths of
// the code-length code (RFC 1951, 3.2.7).
var codeLengthOrder = [19]uint8{16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15}

// writeCodeLengths writes the header of a dynamic block after its first
// three bits: how many codes of each alphabet are sent, the code-length
// code, and the lengths of both codes run-length encoded with it.
func (e *Encoder) writeCodeLengths() {
	hlit := lastUsed(e.litLen[:]) + 1   // at least 257: the end of block is always used
	hdist := lastUsed(e.distLen[:]) + 1 // at least 1: writeBlock gives one distance a code

	// The lengths of both alphabets form one sequence, run-length encoded
	// as symbols 0-15 (a length), 16 (the last length 3-6 more times),
	// 17 (3-10 zeros) and 18 (11-138 zeros), each with its extra bits.
	var seq [numLitLen + numDist]uint8
	n := copy(seq[:], e.litLen[:hlit])
	n += copy(seq[n:], e.distLen[:hdist])
	var runs [numLitLen + numDist]codeLengthRun
	nruns := 0
	var clFreq [19]uint32
	add := func(sym, extra uint8) {
		runs[nruns] = codeLengthRun{sym, extra}
		nruns++
		clFreq[sym]++
	}
	for i := 0; i < n; {
		v, run := seq[i], 1
		for i+run < n && seq[i+run] == v {
			run++
		}
		i += run
		if v == 0 {
			for run >= 11 {
				r := min(run, 138)
				add(18, uint8(r-11))
				run -= r
			}
			if run >= 3 {
				add(17, uint8(run-3))
				run = 0
			}
		} else {
			add(v, 0)
			run--
			for run >= 3 {
				r := min(run, 6)
				add(16, uint8(r-3))
				run -= r
			}
		}
		for ; run > 0; run-- {
			add(v, 0)
		}
	}

	var clLen [19]uint8
	var clCode [19]uint16
	e.huff.lengths(clFreq[:], maxCodeLengthBits, clLen[:])
	canonicalCodes(clLen[:], clCode[:])
	hclen := 19
	for hclen > 4 && clLen[codeLengthOrder[hclen-1]] == 0 {
		hclen--
	}

	w := &e.w
	w.write(uint64(hlit-257)|uint64(hdist-1)<<5|uint64(hclen-4)<<10, 14)
	for _, sym := range codeLengthOrder[:hclen] {
		w.write(uint64(clLen[sym]), 3)
	}
	for _, r := range runs[:nruns] {
		w.write(uint64(clCode[r.sym]), uint(clLen[r.sym]))
		switch r.sym {
		case 16:
			w.write(uint64(r.extra), 2)
		case 17:
			w.write(uint64(r.extra), 3)
		case 18:
			w.write(uint64(r.extra), 7)
		}
	}
}

type codeLengthRun struct{ sym, extra uint8 }

// lastUsed returns the highest symbol with a code, or -1.
func lastUsed(lengths []uint8) int {
	for i := len(lengths) - 1; i >= 0; i-- {
		if lengths[i] != 0 {
			return i
		}
	}
	return -1
}

// canonicalCodes assigns the canonical Huffman code of RFC 1951, 3.2.2, for
// the given lengths, each bit-reversed: deflate sends a code's first bit
// first, and the bit writer sends low bits first.
func canonicalCodes(lengths []uint8, codes []uint16) {
	var count [maxCodeBits + 1]uint16
	for _, l := range lengths {
		count[l]++
	}
	count[0] = 0
	var next [maxCodeBits + 1]uint16
	code := uint16(0)
	for l := 1; l <= maxCodeBits; l++ {
		code = (code + count[l-1]) << 1
		next[l] = code
	}
	for sym, l := range lengths {
		if l == 0 {
			codes[sym] = 0
			continue
		}
		codes[sym] = bits.Reverse16(next[l]) >> (16 - l)
		next[l]++
	}
}

// bitWriter appends bits, low bit first, to out.
type bitWriter struct {
	out  []byte
	bits uint64
	n    uint // bits held, always below 32 between calls
}

// write appends the low nb bits of v; nb is at most 32.
func (w *bitWriter) write(v uint64, nb uint) {
	w.bits |= v << w.n
	w.n += nb
	if w.n >= 32 {
		w.out = binary.LittleEndian.AppendUint32(w.out, uint32(w.bits))
		w.bits >>= 32
		w.n -= 32
	}
}

// alignToByte writes the bits held, padded with zeros to a whole byte.
func (w *bitWriter) alignToByte() {
	for w.n > 0 {
		w.out = append(w.out, byte(w.bits))
		w.bits >>= 8
		w.n -= min(w.n, 8)
	}
	w.bits = 0
}
