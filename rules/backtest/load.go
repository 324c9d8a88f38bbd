package backtest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/textparse"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// chunkBytes is how much text is parsed at once: the input is never held
// whole, so hours of a 5,000-node fleet fit in memory.
const chunkBytes = 4 << 20

// commitEvery bounds an append transaction.
const commitEvery = 200_000

// LoadStats describe what was loaded.
type LoadStats struct {
	Lines, Series, Samples, StaleMarkers int
	MinTime, MaxTime                     int64 // milliseconds
}

// InputError is bad input, with the line it was found on.
type InputError struct {
	Line int
	Err  error
}

func (e *InputError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// loader reads OpenMetrics text into an appender, checking what promtool's
// backfill checks and what evaluation needs: every sample has a timestamp,
// each series' samples come in time order, the text ends with # EOF.
type loader struct {
	app       storage.Appendable
	staleGap  int64 // ms: a series silent for longer went stale
	interval  int64 // ms: the scrape interval
	last      map[uint64]*seen
	stats     LoadStats
	progress  func(LoadStats)
	pending   int
	appender  storage.Appender
	ctx       context.Context
	typeLine  []byte // the TYPE line in force, repeated at each chunk
	lineCount int
}

type seen struct {
	lset labels.Labels
	ref  storage.SeriesRef
	t    int64
}

// load reads r (OpenMetrics text, or a gzip of it) into app. A series
// silent for more than twice the scrape interval, in the middle or at the
// end of the data, gets a staleness marker one interval after its last
// sample, as Prometheus writes when a target stops exposing a series.
func load(ctx context.Context, r io.Reader, app storage.Appendable, scrapeInterval int64, progress func(LoadStats)) (LoadStats, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return LoadStats{}, fmt.Errorf("gzip: %w", err)
		}
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	l := &loader{
		app: app, ctx: ctx, interval: scrapeInterval, staleGap: 2 * scrapeInterval,
		last: map[uint64]*seen{}, progress: progress,
		stats: LoadStats{MinTime: math.MaxInt64, MaxTime: math.MinInt64},
	}
	l.appender = app.Appender(ctx)
	err := l.readChunks(br)
	if err == nil {
		err = l.endStale()
	}
	if err == nil {
		err = l.appender.Commit()
	} else {
		_ = l.appender.Rollback()
	}
	if l.stats.Samples == 0 && err == nil {
		err = errors.New("no samples in the data")
	}
	return l.stats, err
}

// readChunks cuts the text into chunks of whole lines and parses each as
// an OpenMetrics document of its own.
func (l *loader) readChunks(br *bufio.Reader) error {
	var chunk bytes.Buffer
	for {
		chunk.Reset()
		startLine := l.lineCount
		lines, eof := 0, false
		for chunk.Len() < chunkBytes {
			line, err := br.ReadSlice('\n')
			if errors.Is(err, bufio.ErrBufferFull) {
				return &InputError{Line: l.lineCount + 1, Err: errors.New("line longer than 1 MiB")}
			}
			if len(line) > 0 && err == nil {
				lines++
				l.lineCount++
				if bytes.Equal(line, []byte("# EOF\n")) {
					eof = true
					switch _, err := br.Peek(1); {
					case err == nil:
						return &InputError{Line: l.lineCount + 1, Err: errors.New("data after # EOF")}
					case err != io.EOF:
						return fmt.Errorf("read after # EOF: %w (is the file truncated?)", err)
					}
					break
				}
				chunk.Write(line)
				continue
			}
			if err == io.EOF {
				if l.lineCount == 0 && len(line) == 0 {
					return errors.New("the data is empty: not one line, not even # EOF")
				}
				if len(line) > 0 {
					return &InputError{Line: l.lineCount + 1, Err: errors.New("the file is truncated: its last line has no end")}
				}
				return &InputError{Line: l.lineCount, Err: errors.New("the file is truncated: it does not end with # EOF")}
			}
			if err != nil {
				return fmt.Errorf("read: %w", err)
			}
		}
		if err := l.parse(chunk.Bytes(), startLine); err != nil {
			return err
		}
		if l.progress != nil {
			l.progress(l.stats)
		}
		if eof {
			return nil
		}
		if err := l.ctx.Err(); err != nil {
			return err
		}
	}
}

func (l *loader) parse(text []byte, startLine int) error {
	// The family's TYPE line is repeated so a chunk starting inside a
	// family parses as the family it belongs to.
	doc := make([]byte, 0, len(l.typeLine)+len(text)+8)
	doc = append(doc, l.typeLine...)
	doc = append(doc, text...)
	doc = append(doc, "# EOF\n"...)
	line := startLine
	if len(l.typeLine) > 0 {
		line-- // the repeated line is not in the file
	}
	p := textparse.NewOpenMetricsParser(doc, labels.NewSymbolTable())
	var lset labels.Labels
	for {
		entry, err := p.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		line++
		if err != nil {
			return &InputError{Line: line, Err: err}
		}
		switch entry {
		case textparse.EntryType:
			name, typ := p.Type()
			l.typeLine = fmt.Appendf(l.typeLine[:0], "# TYPE %s %s\n", name, typ)
		case textparse.EntrySeries:
			_, ts, v := p.Series()
			if ts == nil {
				return &InputError{Line: line, Err: errors.New("sample without a timestamp")}
			}
			p.Labels(&lset)
			if err := l.append(lset, *ts, v, line); err != nil {
				return err
			}
		case textparse.EntryHistogram:
			return &InputError{Line: line, Err: errors.New("native histograms are not supported")}
		}
	}
	l.stats.Lines = l.lineCount
	return nil
}

func (l *loader) append(lset labels.Labels, t int64, v float64, line int) error {
	h := lset.Hash()
	s, ok := l.last[h]
	switch {
	case !ok:
		s = &seen{lset: lset.Copy()}
		l.last[h] = s
		l.stats.Series++
	case !labels.Equal(s.lset, lset):
		return &InputError{Line: line, Err: fmt.Errorf("series %s collides with %s by hash; rename one", lset, s.lset)}
	case t <= s.t:
		return &InputError{Line: line, Err: fmt.Errorf("sample of %s at %d is not after the previous one at %d: samples must be sorted by time within a series", lset, t, s.t)}
	case t-s.t > l.staleGap:
		if err := l.add(s, s.t+l.interval, math.Float64frombits(value.StaleNaN)); err != nil {
			return &InputError{Line: line, Err: err}
		}
		l.stats.StaleMarkers++
	}
	if err := l.add(s, t, v); err != nil {
		return &InputError{Line: line, Err: err}
	}
	s.t = t
	l.stats.Samples++
	l.stats.MinTime = min(l.stats.MinTime, t)
	l.stats.MaxTime = max(l.stats.MaxTime, t)
	return nil
}

func (l *loader) add(s *seen, t int64, v float64) error {
	ref, err := l.appender.Append(s.ref, s.lset, t, v)
	if err != nil {
		return fmt.Errorf("append %s: %w", s.lset, err)
	}
	s.ref = ref
	if l.pending++; l.pending >= commitEvery {
		if err := l.appender.Commit(); err != nil {
			return err
		}
		l.appender = l.app.Appender(l.ctx)
		l.pending = 0
	}
	return nil
}

// endStale marks stale every series that ended well before the data did.
func (l *loader) endStale() error {
	for _, s := range l.last {
		if l.stats.MaxTime-s.t > l.staleGap {
			if err := l.add(s, s.t+l.interval, math.Float64frombits(value.StaleNaN)); err != nil {
				return err
			}
			l.stats.StaleMarkers++
		}
	}
	return nil
}
