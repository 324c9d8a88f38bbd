package linedeflate

import (
	"bytes"
	"compress/flate"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// inflate decodes Append's output with the standard library's reader, an
// implementation written apart from this one. Append's output ends with a
// flush, not a final block, so the reader is handed a final empty block
// after it, as writeGzip ends a gzip member.
func inflate(t testing.TB, compressed []byte) []byte {
	t.Helper()
	stream := append(bytes.Clone(compressed), 0x01, 0x00, 0x00, 0xff, 0xff)
	out, err := io.ReadAll(flate.NewReader(bytes.NewReader(stream)))
	if err != nil {
		t.Fatalf("inflating %d bytes: %v", len(compressed), err)
	}
	return out
}

func roundTrip(t testing.TB, e *Encoder, src []byte) []byte {
	t.Helper()
	compressed := e.Append(nil, src)
	if got := inflate(t, compressed); !bytes.Equal(got, src) {
		t.Fatalf("round trip of %d bytes gave %d bytes back, first difference at %d", len(src), len(got), firstDifference(got, src))
	}
	return compressed
}

func firstDifference(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// renewLines is exposition text as the lease exporter writes it: n nodes'
// renew times, at any microsecond of the last 40 s, in the order of the
// nodes' names.
func renewLines(n int, rng *rand.Rand) []byte {
	names := make([]string, n)
	for i := range names {
		names[i] = "ip-10-0-" + strconv.Itoa(i/256) + "-" + strconv.Itoa(i%256) + ".eu-west-1.compute.internal"
	}
	slices.Sort(names)
	b := []byte("# HELP cascade_node_lease_renew_timestamp_seconds When the node's kubelet last renewed its lease.\n# TYPE cascade_node_lease_renew_timestamp_seconds gauge\n")
	for _, name := range names {
		b = append(b, `cascade_node_lease_renew_timestamp_seconds{node="`...)
		b = append(b, name...)
		b = append(b, `"} `...)
		us := 1764554526_000000 - rng.Int64N(40_000_000)
		b = strconv.AppendInt(b, us/1e6, 10)
		if frac := strings.TrimRight(strconv.FormatInt(1e6+us%1e6, 10)[1:], "0"); frac != "" {
			b = append(b, '.')
			b = append(b, frac...)
		}
		b = append(b, '\n')
	}
	return b
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 200_000) // several blocks, all literals
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	digits := make([]byte, 100_000) // ten symbols: short codes
	for i := range digits {
		digits[i] = '0' + byte(rng.IntN(10))
	}
	cases := map[string][]byte{
		"empty":              nil,
		"one byte":           []byte("x"),
		"one newline":        []byte("\n"),
		"no newline":         []byte("cascade_exporter_build_info 1"),
		"renew lines":        renewLines(1000, rng),
		"5000 renew lines":   renewLines(5000, rng),
		"random bytes":       random,
		"digits":             digits,
		"same line repeated": bytes.Repeat([]byte("go_threads 7\n"), 10_000),
		"one byte repeated":  bytes.Repeat([]byte{'a'}, 100_000),
		"empty lines":        bytes.Repeat([]byte{'\n'}, 5_000),
		// Lines longer than the window: the line before is out of reach.
		"long lines": bytes.Repeat(append(bytes.Repeat([]byte("0123456789"), 4000), '\n'), 3),
		// Lines of growing length: repeats counted from the end.
		"growing lines": func() []byte {
			var b []byte
			for i := range 2000 {
				b = append(b, `x{node="`...)
				b = append(b, strings.Repeat("n", i%37)...)
				b = append(b, `"} 1764554526.5`...)
				b = append(b, '\n')
			}
			return b
		}(),
	}
	var e Encoder // one encoder for every case: nothing carries over
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			compressed := roundTrip(t, &e, src)
			t.Logf("%d bytes -> %d", len(src), len(compressed))
		})
	}
}

// TestCompresses checks that the exposition is compressed about as well as
// by a general compressor at its fastest: repeats are found, and the
// Huffman codes fit the digits.
func TestCompresses(t *testing.T) {
	src := renewLines(1000, rand.New(rand.NewPCG(3, 4)))
	var e Encoder
	got := len(roundTrip(t, &e, src))

	var general bytes.Buffer
	fw, err := flate.NewWriter(&general, flate.BestSpeed)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(src)
	_ = fw.Flush()
	t.Logf("%d bytes: %d here, %d by compress/flate at BestSpeed", len(src), got, general.Len())
	if got > general.Len()*11/10 {
		t.Errorf("compressed to %d bytes, more than a tenth over compress/flate's %d", got, general.Len())
	}
}

// TestAppendsAfterDst checks that Append keeps what dst holds.
func TestAppendsAfterDst(t *testing.T) {
	var e Encoder
	src := []byte("a 1\na 2\n")
	out := e.Append([]byte("prefix"), src)
	if !bytes.HasPrefix(out, []byte("prefix")) {
		t.Fatalf("dst's bytes were not kept: %q", out)
	}
	if got := inflate(t, out[len("prefix"):]); !bytes.Equal(got, src) {
		t.Fatalf("got %q, want %q", got, src)
	}
}

// TestSkewedCounts forces a code longer than deflate's 15 bits: symbol
// counts growing as the Fibonacci numbers make the optimal tree a chain.
func TestSkewedCounts(t *testing.T) {
	var src []byte
	a, b := 1, 1
	for c := range 25 {
		src = append(src, bytes.Repeat([]byte{byte('A' + c)}, a)...)
		a, b = b, a+b
	}
	// Shuffled so that nothing repeats at the distances tried.
	rng := rand.New(rand.NewPCG(5, 6))
	rng.Shuffle(len(src), func(i, j int) { src[i], src[j] = src[j], src[i] })
	var h huffmanBuilder
	var freq [numLitLen]uint32
	for _, c := range src {
		freq[c]++
	}
	var lengths [numLitLen]uint8
	h.lengths(freq[:], maxCodeBits, lengths[:])
	kraft := 0
	for _, l := range lengths {
		if l > maxCodeBits {
			t.Fatalf("a code of %d bits", l)
		}
		if l > 0 {
			kraft += 1 << (maxCodeBits - l)
		}
	}
	if kraft != 1<<maxCodeBits {
		t.Fatalf("the code is not complete: Kraft sum %d of %d", kraft, 1<<maxCodeBits)
	}
	var e Encoder
	roundTrip(t, &e, src)
}

func TestAllocatesNothingWhenWarm(t *testing.T) {
	src := renewLines(1000, rand.New(rand.NewPCG(7, 8)))
	var e Encoder
	dst := e.Append(nil, src)
	allocs := testing.AllocsPerRun(20, func() { dst = e.Append(dst[:0], src) })
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}

// TestRoundTripRandom compresses thousands of random texts: lines built of
// a few words and digits, so that repeats start and end anywhere, with any
// byte values, long lines and a missing last newline among them.
func TestRoundTripRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	words := []string{"a", "node", "cascade_", `{node="`, `"} `, " ", ".", "\n", "ip-10-0-", "eu-west-1"}
	var e Encoder
	for range 3000 {
		var src []byte
		switch rng.IntN(4) {
		case 0: // any bytes from an alphabet of 1 to 256 values
			alphabet := 1 + rng.IntN(256)
			src = make([]byte, rng.IntN(5000))
			for i := range src {
				src[i] = byte(rng.IntN(alphabet))
			}
		default: // lines of words and numbers
			lines := rng.IntN(200)
			for range lines {
				for range rng.IntN(12) {
					if rng.IntN(3) == 0 {
						src = strconv.AppendInt(src, rng.Int64N(1e12), 10)
					} else {
						src = append(src, words[rng.IntN(len(words))]...)
					}
				}
				if rng.IntN(50) == 0 {
					src = append(src, bytes.Repeat([]byte("x"), rng.IntN(70_000))...)
				}
				src = append(src, '\n')
			}
			if len(src) > 0 && rng.IntN(2) == 0 {
				src = src[:len(src)-1-rng.IntN(min(len(src), 10))]
			}
		}
		roundTrip(t, &e, src)
	}
}

func FuzzRoundTrip(f *testing.F) {
	f.Add(renewLines(20, rand.New(rand.NewPCG(9, 10))))
	f.Add([]byte("a\nab\nabc\nabcd\n"))
	f.Add([]byte{})
	var e Encoder
	f.Fuzz(func(t *testing.T, src []byte) {
		roundTrip(t, &e, src)
	})
}

// TestAlphabets checks every length and distance against the symbol it is
// given: within the symbol's range, and 258 by its own symbol, 285, as RFC
// 1951 has it (284 with all extra bits set would also say 258 to a lenient
// decoder, but not to every one).
func TestAlphabets(t *testing.T) {
	for l := 3; l <= maxMatch; l++ {
		s := lengthSymbol[l-3]
		if base := int(lengthBase[s]) + 3; l < base || l >= base+1<<lengthExtra[s] {
			t.Fatalf("length %d given symbol %d, which says %d to %d", l, 257+int(s), base, base+1<<lengthExtra[s]-1)
		}
		if l == maxMatch && s != 28 {
			t.Fatalf("length 258 given symbol %d, want 285", 257+int(s))
		}
	}
	for d := 1; d <= maxDistance; d++ {
		s := distanceSymbol(d - 1)
		if base := int(distanceBase[s]) + 1; d < base || d >= base+1<<distanceExtra[s] {
			t.Fatalf("distance %d given symbol %d, which says %d to %d", d, s, base, base+1<<distanceExtra[s]-1)
		}
	}
}
