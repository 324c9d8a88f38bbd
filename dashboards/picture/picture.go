// Package picture draws a dashboard's panels from query results as one PNG
// with gonum/plot: the panels stacked on one time axis, the way the
// Grafana dashboard shows them, so the README can show what a dashboard
// looks like over an incident before anyone imports it.
package picture

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Point is one sample.
type Point struct {
	T time.Time
	V float64
}

// Series is one line (or one row of a state panel).
type Series struct {
	Name   string
	Points []Point
	Color  color.Color // nil: from the palette
	Dashed bool
	Dots   bool // draw points only (events such as OOM kills)
	// NoLegend leaves the series out of the legend (a repeat of the one
	// before, such as the limit of the next replica).
	NoLegend bool
}

// Kind is how a panel is drawn.
type Kind int

// Kinds of panel.
const (
	Lines   Kind = iota // one line per series
	Stacked             // series stacked on each other
	States              // one row per series, filled where the value is not 0
)

// Panel is one panel of the picture.
type Panel struct {
	Title  string
	YLabel string
	Kind   Kind
	Scale  float64 // values are divided by it (0: 1)
	Height float64 // share of the picture's height, relative to the others (0: 1)
	Series []Series
}

// Picture is a stack of panels over one time range.
type Picture struct {
	Title      string
	Start, End time.Time
	Location   *time.Location // of the time axis labels; nil: UTC
	Panels     []Panel
}

var palette = []color.Color{
	color.RGBA{0x37, 0x87, 0xd8, 0xff}, // blue
	color.RGBA{0x56, 0xa6, 0x4b, 0xff}, // green
	color.RGBA{0xf2, 0x95, 0x13, 0xff}, // orange
	color.RGBA{0x8f, 0x3b, 0xb8, 0xff}, // purple
	color.RGBA{0x1f, 0x9e, 0x9e, 0xff}, // teal
	color.RGBA{0x80, 0x80, 0x80, 0xff}, // grey
}

// Named colours, as the dashboards use them.
var (
	Red    color.Color = color.RGBA{0xe0, 0x2f, 0x44, 0xff}
	Green  color.Color = color.RGBA{0x56, 0xa6, 0x4b, 0xff}
	Orange color.Color = color.RGBA{0xf2, 0x95, 0x13, 0xff}
	Grey   color.Color = color.RGBA{0x60, 0x60, 0x60, 0xff}
	Purple color.Color = color.RGBA{0x8f, 0x3b, 0xb8, 0xff}
	Black  color.Color = color.RGBA{0x20, 0x20, 0x20, 0xff}
)

// WritePNG draws p as a PNG of the given size.
func WritePNG(w io.Writer, p Picture, width, height vg.Length) error {
	if len(p.Panels) == 0 {
		return errors.New("picture: no panels")
	}
	if !p.End.After(p.Start) {
		return errors.New("picture: empty time range")
	}
	loc := p.Location
	if loc == nil {
		loc = time.UTC
	}
	plots := make([]*plot.Plot, len(p.Panels))
	var total float64
	for i, panel := range p.Panels {
		pl, err := drawPanel(panel, p, loc, i == len(p.Panels)-1)
		if err != nil {
			return fmt.Errorf("picture: panel %q: %w", panel.Title, err)
		}
		plots[i] = pl
		total += heightOf(panel)
	}
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(96))
	dc := draw.New(img)
	top := vg.Length(8)
	if p.Title != "" {
		top = 46
		sty := plot.New().Title.TextStyle
		sty.Font.Size = 14
		sty.XAlign = draw.XCenter
		dc.FillText(sty, vg.Point{X: width / 2, Y: height - 20}, p.Title)
	}
	// One canvas per panel, heights by share, then the data areas aligned
	// on the left and right so that the panels share one time axis.
	const pad = vg.Length(6)
	body := draw.Crop(dc, 8, -12, 8, -top)
	avail := body.Max.Y - body.Min.Y
	y := body.Max.Y
	canvases := make([]draw.Canvas, len(plots))
	var maxLeft, maxRight vg.Length
	for i, panel := range p.Panels {
		h := vg.Length(heightOf(panel)/total) * avail
		c := draw.Crop(body, 0, 0, y-h-body.Min.Y, y-body.Max.Y)
		if i > 0 {
			c = draw.Crop(c, 0, 0, 0, -pad)
		}
		canvases[i] = c
		data := plots[i].DataCanvas(c)
		maxLeft = max(maxLeft, data.Min.X-c.Min.X)
		maxRight = max(maxRight, c.Max.X-data.Max.X)
		y -= h
	}
	for i, c := range canvases {
		data := plots[i].DataCanvas(c)
		c = draw.Crop(c, maxLeft-(data.Min.X-c.Min.X), -(maxRight - (c.Max.X - data.Max.X)), 0, 0)
		plots[i].Draw(c)
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

func heightOf(p Panel) float64 {
	if p.Height > 0 {
		return p.Height
	}
	return 1
}

func drawPanel(panel Panel, p Picture, loc *time.Location, last bool) (*plot.Plot, error) {
	pl := plot.New()
	pl.Title.Text = panel.Title
	pl.Title.TextStyle.Font.Size = 11
	pl.X.Min = float64(p.Start.Unix())
	pl.X.Max = float64(p.End.Unix())
	pl.X.Tick.Marker = timeTicks{loc: loc}
	if last {
		pl.X.Label.Text = "time (" + loc.String() + ")"
	} else {
		pl.X.Tick.Label.Font.Size = 0.001 // ticks without labels: one time axis for all
	}
	pl.Y.Label.Text = panel.YLabel
	pl.Legend.Top = true
	pl.Legend.Left = true
	pl.Legend.TextStyle.Font.Size = 8
	pl.Add(plotter.NewGrid())
	scale := panel.Scale
	if scale == 0 {
		scale = 1
	}
	switch panel.Kind {
	case States:
		return pl, drawStates(pl, panel)
	case Stacked:
		return pl, drawStacked(pl, panel, scale)
	}
	for i, s := range panel.Series {
		if len(s.Points) == 0 {
			continue
		}
		c := colorOf(s, i)
		xys := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			xys = append(xys, plotter.XY{X: float64(pt.T.Unix()), Y: pt.V / scale})
		}
		if s.Dots {
			sc, err := plotter.NewScatter(xys)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle = draw.GlyphStyle{Color: c, Radius: 4, Shape: draw.CircleGlyph{}}
			pl.Add(sc)
			if !s.NoLegend {
				pl.Legend.Add(s.Name, sc)
			}
			continue
		}
		for j, run := range runs(xys) {
			l, err := plotter.NewLine(run)
			if err != nil {
				return nil, err
			}
			l.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(1.2)}
			if s.Dashed {
				l.LineStyle.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			pl.Add(l)
			if j == 0 && !s.NoLegend {
				pl.Legend.Add(s.Name, l)
			}
		}
	}
	pl.Y.Min = math.Min(pl.Y.Min, 0)
	return pl, nil
}

// runs splits a series where a sample is missing (a gap of more than
// twice the usual step), as Grafana leaves a gap there.
func runs(xys plotter.XYs) []plotter.XYs {
	if len(xys) < 2 {
		return []plotter.XYs{xys}
	}
	step := math.Inf(1)
	for i := 1; i < len(xys); i++ {
		step = math.Min(step, xys[i].X-xys[i-1].X)
	}
	var out []plotter.XYs
	start := 0
	for i := 1; i < len(xys); i++ {
		if xys[i].X-xys[i-1].X > 2*step {
			out = append(out, xys[start:i])
			start = i
		}
	}
	return append(out, xys[start:])
}

// drawStacked fills each series on top of the ones before it.
func drawStacked(pl *plot.Plot, panel Panel, scale float64) error {
	base := map[int64]float64{}
	for i, s := range panel.Series {
		if len(s.Points) == 0 {
			continue
		}
		c := colorOf(s, i)
		var top, bottom plotter.XYs
		for _, pt := range s.Points {
			t := pt.T.Unix()
			b := base[t]
			v := b + pt.V/scale
			bottom = append(bottom, plotter.XY{X: float64(t), Y: b})
			top = append(top, plotter.XY{X: float64(t), Y: v})
			base[t] = v
		}
		for j := range runs(top) {
			tr, br := runs(top)[j], runs(bottom)[j]
			poly := make(plotter.XYs, 0, 2*len(tr))
			poly = append(poly, tr...)
			for k := len(br) - 1; k >= 0; k-- {
				poly = append(poly, br[k])
			}
			pg, err := plotter.NewPolygon(poly)
			if err != nil {
				return err
			}
			r, g, b, _ := c.RGBA()
			pg.Color = color.NRGBA{uint8(r >> 8), uint8(g >> 8), uint8(b >> 8), 0xa0}
			pg.LineStyle = draw.LineStyle{Color: c, Width: vg.Points(0.8)}
			pl.Add(pg)
			if j == 0 {
				pl.Legend.Add(s.Name, pg)
			}
		}
	}
	pl.Y.Min = 0
	return nil
}

// drawStates draws one row per series, filled where its value is not 0
// (red unless the series has a colour), like Grafana's state timeline.
func drawStates(pl *plot.Plot, panel Panel) error {
	n := len(panel.Series)
	pl.Y.Min, pl.Y.Max = -0.5, float64(n)-0.5
	var ticks []plot.Tick
	for i, s := range panel.Series {
		row := float64(n - 1 - i)
		ticks = append(ticks, plot.Tick{Value: row, Label: s.Name})
		c := s.Color
		if c == nil {
			c = Red
		}
		xys := make(plotter.XYs, 0, len(s.Points))
		for _, pt := range s.Points {
			if pt.V != 0 {
				xys = append(xys, plotter.XY{X: float64(pt.T.Unix()), Y: row})
			}
		}
		if len(xys) == 0 {
			continue
		}
		for _, run := range runs(xys) {
			x0, x1 := run[0].X, run[len(run)-1].X+15
			pg, err := plotter.NewPolygon(plotter.XYs{{X: x0, Y: row - 0.35}, {X: x1, Y: row - 0.35}, {X: x1, Y: row + 0.35}, {X: x0, Y: row + 0.35}})
			if err != nil {
				return err
			}
			pg.Color = c
			pg.LineStyle.Width = 0
			pl.Add(pg)
		}
	}
	pl.Y.Tick.Marker = plot.ConstantTicks(ticks)
	pl.Y.Tick.Label.Font.Size = 8
	pl.Legend = plot.NewLegend()
	return nil
}

func colorOf(s Series, i int) color.Color {
	if s.Color != nil {
		return s.Color
	}
	return palette[i%len(palette)]
}

// timeTicks labels the time axis every 10, 15 or 30 minutes, or every hour.
type timeTicks struct{ loc *time.Location }

func (tt timeTicks) Ticks(min, max float64) []plot.Tick {
	span := max - min
	step := 600.0
	for _, s := range []float64{600, 900, 1800, 3600, 7200} {
		step = s
		if span/s <= 10 {
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(min/step) * step; v <= max; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: time.Unix(int64(v), 0).In(tt.loc).Format("15:04")})
	}
	return ticks
}
