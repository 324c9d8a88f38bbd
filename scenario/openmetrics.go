package scenario

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cascade-sre/cascade/internal/contract"
)

// store holds every series of a scenario until it is written, because
// OpenMetrics wants each family's samples together and each series' in
// time order, while the simulation produces them one instant at a time.
// Every exporter of a region (each cluster's, the shared components') adds
// its series to one store.
type store struct {
	families []*family
	byName   map[string]*family
}

type family struct {
	name, typ, help string
	series          []*series
}

type series struct {
	name   string // sample name: family name plus _total, _bucket…
	labels string // rendered, sorted, without braces
	ts     []int64
	values []float64
}

func newStore() *store { return &store{byName: map[string]*family{}} }

// family returns the family of a contract metric, added at its first use.
// OpenMetrics names a counter's family without its _total, which its
// samples carry.
func (st *store) family(m contract.Metric) *family {
	name := m.Name
	if m.Type == contract.Counter {
		name = strings.TrimSuffix(name, "_total")
	}
	if f, ok := st.byName[name]; ok {
		return f
	}
	f := &family{name: name, typ: string(m.Type), help: escape(m.Help)}
	st.families = append(st.families, f)
	st.byName[name] = f
	return f
}

// target is the labels Prometheus attaches to the series of one scrape
// target: region, cluster or shared (from the scrape config), instance and
// job, as pairs.
type target []string

// newSeries adds a series of the family with the target's labels and the
// given pairs.
func (f *family) newSeries(suffix string, tg target, pairs ...string) *series {
	all := append(append([]string{}, tg...), pairs...)
	type kv struct{ k, v string }
	var kvs []kv
	for i := 0; i+1 < len(all); i += 2 {
		kvs = append(kvs, kv{all[i], all[i+1]})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return strings.Compare(a.k, b.k) })
	var b strings.Builder
	for i, p := range kvs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.k)
		b.WriteString(`="`)
		b.WriteString(escape(p.v))
		b.WriteByte('"')
	}
	s := &series{name: f.name + suffix, labels: b.String()}
	f.series = append(f.series, s)
	return s
}

// escape escapes a label value or a HELP text as OpenMetrics wants.
var escape = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace

// add appends a sample at unix seconds t (kept to the millisecond).
func (s *series) add(t, v float64) {
	ms := int64(math.Round(t * 1000))
	if n := len(s.ts); n > 0 && ms <= s.ts[n-1] {
		ms = s.ts[n-1] + 1 // jitter never reorders a series
	}
	s.ts = append(s.ts, ms)
	s.values = append(s.values, v)
}

func (st *store) writeOpenMetrics(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	var line []byte
	for _, f := range st.families {
		if len(f.series) == 0 {
			continue
		}
		line = append(line[:0], "# HELP "...)
		line = append(line, f.name...)
		line = append(line, ' ')
		line = append(line, f.help...)
		line = append(line, "\n# TYPE "...)
		line = append(line, f.name...)
		line = append(line, ' ')
		line = append(line, f.typ...)
		line = append(line, '\n')
		if _, err := bw.Write(line); err != nil {
			return err
		}
		for _, s := range f.series {
			for i, ms := range s.ts {
				line = append(line[:0], s.name...)
				line = append(line, '{')
				line = append(line, s.labels...)
				line = append(line, "} "...)
				line = appendValue(line, s.values[i])
				line = append(line, ' ')
				line = strconv.AppendInt(line, ms/1000, 10)
				line = append(line, '.')
				frac := ms % 1000
				line = append(line, byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
				line = append(line, '\n')
				if _, err := bw.Write(line); err != nil {
					return err
				}
			}
		}
	}
	if _, err := bw.WriteString("# EOF\n"); err != nil {
		return err
	}
	return bw.Flush()
}

func appendValue(b []byte, v float64) []byte {
	switch {
	case math.IsInf(v, 1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}
