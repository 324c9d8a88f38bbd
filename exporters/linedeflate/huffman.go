package linedeflate

import (
	"math/bits"
	"slices"
)

// The length and distance alphabets of RFC 1951, 3.2.5. Lengths are kept
// as length-3 and distances as distance-1, as the tokens hold them.
var (
	lengthBase  = [29]uint32{0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 255}
	lengthExtra = [29]uint8{0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0}
	// lengthSymbol maps length-3 to its symbol less 257.
	lengthSymbol [256]uint8

	distanceBase  [numDist]uint32
	distanceExtra [numDist]uint8
)

func init() {
	for s := range lengthBase {
		for l := lengthBase[s]; l < lengthBase[s]+1<<lengthExtra[s] && l < 256; l++ {
			lengthSymbol[l] = uint8(s)
		}
	}
	lengthSymbol[255] = 28 // 258 has a symbol of its own (284 with 31 extra is not allowed)
	for s := range distanceBase {
		if s < 4 {
			distanceBase[s] = uint32(s)
			continue
		}
		extra := s/2 - 1
		distanceExtra[s] = uint8(extra)
		distanceBase[s] = uint32(2+s&1) << extra
	}
}

// distanceSymbol returns the symbol of distance d+1.
func distanceSymbol(d int) int {
	if d < 4 {
		return d
	}
	k := bits.Len32(uint32(d)) - 1
	return 2*k + d>>(k-1)&1
}

// huffmanBuilder computes the lengths of Huffman codes; its buffers are kept
// from one block to the next.
type huffmanBuilder struct {
	syms   []symbolCount
	weight []uint32
	parent []int32
	depth  []uint8
}

type symbolCount struct {
	sym   uint16
	count uint32
}

// lengths sets out[s] to the length of symbol s's code, for a code of at
// most maxBits bits built from freq: 0 for symbols never used, 1 for the
// only one used (a decoder accepts that single incomplete code), otherwise
// a complete prefix code. Where the optimal code would be longer than
// maxBits, the counts are halved until it is not: rare, and the cost is a
// slightly worse code for that block.
func (h *huffmanBuilder) lengths(freq []uint32, maxBits int, out []uint8) {
	clear(out)
	h.syms = h.syms[:0]
	for s, f := range freq {
		if f > 0 {
			h.syms = append(h.syms, symbolCount{uint16(s), f})
		}
	}
	switch len(h.syms) {
	case 0:
		return
	case 1:
		out[h.syms[0].sym] = 1
		return
	}
	slices.SortFunc(h.syms, func(a, b symbolCount) int {
		if a.count != b.count {
			return int(a.count) - int(b.count)
		}
		return int(a.sym) - int(b.sym)
	})
	for !h.tree(maxBits) {
		for i := range h.syms {
			h.syms[i].count = (h.syms[i].count + 1) / 2 // halving keeps the order
		}
	}
	for i, s := range h.syms {
		out[s.sym] = h.depth[i]
	}
}

// tree builds the Huffman tree of h.syms, sorted by count, and sets each
// leaf's depth; it reports false if a leaf is deeper than maxBits.
//
// The two-queue construction: leaves in count order and internal nodes
// in the order they are made (their weights never decrease), so the two
// lightest nodes are always at the head of one queue or the other.
// Nodes 0..n-1 are the leaves, n..2n-2 the internal nodes.
func (h *huffmanBuilder) tree(maxBits int) bool {
	n := len(h.syms)
	total := 2*n - 1
	h.weight = slices.Grow(h.weight[:0], total)[:total]
	h.parent = slices.Grow(h.parent[:0], total)[:total]
	h.depth = slices.Grow(h.depth[:0], total)[:total]
	for i, s := range h.syms {
		h.weight[i] = s.count
	}
	leaf, inner := 0, n // heads of the two queues
	lightest := func(made int) int {
		if leaf < n && (inner >= made || h.weight[leaf] <= h.weight[inner]) {
			leaf++
			return leaf - 1
		}
		inner++
		return inner - 1
	}
	for made := n; made < total; made++ {
		a := lightest(made)
		b := lightest(made)
		h.weight[made] = h.weight[a] + h.weight[b]
		h.parent[a], h.parent[b] = int32(made), int32(made)
	}
	// A parent is made after its children, so walking down from the root
	// sees each parent's depth before its children's.
	h.depth[total-1] = 0
	for i := total - 2; i >= 0; i-- {
		d := h.depth[h.parent[i]] + 1
		if int(d) > maxBits {
			return false
		}
		h.depth[i] = d
	}
	return true
}
