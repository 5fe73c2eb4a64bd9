package bench

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// systemStyle gives each system one color; percentiles differ by dash and glyph.
var systemStyle = map[string]color.RGBA{
	"spillway": {R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	"naive":    {R: 0xd6, G: 0x27, B: 0x28, A: 0xff},
	"naive-20": {R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}, // the users' plan: a pool of 20
}

// styleOf is a system's color; one without a style of its own is drawn in gray, not invisibly.
func styleOf(system string) color.RGBA {
	if c, ok := systemStyle[system]; ok {
		return c
	}
	return color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}
}

// Plots draws the sweep into dir: latency percentiles versus offered rate (log scale, so that
// milliseconds and seconds fit on one chart), and acknowledged versus offered events/s. It
// returns the files' names.
func Plots(dir string, sweep []SweepPoint, title string) ([]string, error) {
	bySystem := map[string][]SweepPoint{}
	for _, p := range sweep {
		bySystem[p.System] = append(bySystem[p.System], p)
	}
	systems := make([]string, 0, len(bySystem))
	for s, pts := range bySystem {
		sort.Slice(pts, func(i, j int) bool { return pts[i].Offered < pts[j].Offered })
		systems = append(systems, s)
	}
	sort.Sort(sort.Reverse(sort.StringSlice(systems))) // spillway first
	if len(systems) == 0 {
		return nil, fmt.Errorf("plots: no sweep points")
	}

	lat := plot.New()
	lat.Title.Text = "Latency vs offered rate — " + title
	lat.X.Label.Text = "offered events/s (single-event requests)"
	lat.Y.Label.Text = "request latency, ms (log scale)"
	lat.Y.Scale = plot.LogScale{}
	lat.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	lat.Legend.Top = true
	lat.Legend.Left = true
	lat.Add(plotter.NewGrid())
	percentiles := []struct {
		name  string
		get   func(SweepPoint) float64
		dash  []vg.Length
		glyph draw.GlyphDrawer
	}{
		{"p50", func(p SweepPoint) float64 { return p.P50 }, nil, draw.CircleGlyph{}},
		{"p99", func(p SweepPoint) float64 { return p.P99 }, []vg.Length{vg.Points(6), vg.Points(3)}, draw.TriangleGlyph{}},
		{"p99.9", func(p SweepPoint) float64 { return p.P999 }, []vg.Length{vg.Points(2), vg.Points(2)}, draw.SquareGlyph{}},
	}
	for _, s := range systems {
		for _, pc := range percentiles {
			xys := make(plotter.XYs, 0, len(bySystem[s]))
			for _, p := range bySystem[s] {
				// A log axis cannot show 0; sub-0.1 ms latencies do not occur over HTTP anyway.
				xys = append(xys, plotter.XY{X: p.Offered, Y: math.Max(pc.get(p), 0.1)})
			}
			if err := addLine(lat, s+" "+pc.name, xys, styleOf(s), pc.dash, pc.glyph); err != nil {
				return nil, err
			}
		}
	}

	// Headroom above the data keeps the legend (top left) off the lines.
	lat.Y.Max *= 30

	thr := plot.New()
	thr.Title.Text = "Acknowledged vs offered events/s — " + title
	thr.X.Label.Text = "offered events/s"
	thr.Y.Label.Text = "acknowledged events/s"
	thr.Legend.Top = true
	thr.Legend.Left = true
	thr.Add(plotter.NewGrid())
	maxX := 0.0
	for _, s := range systems {
		xys := make(plotter.XYs, 0, len(bySystem[s]))
		for _, p := range bySystem[s] {
			xys = append(xys, plotter.XY{X: p.Offered, Y: p.Achieved})
			maxX = math.Max(maxX, p.Offered)
		}
		if err := addLine(thr, s, xys, styleOf(s), nil, draw.CircleGlyph{}); err != nil {
			return nil, err
		}
	}
	ideal, err := plotter.NewLine(plotter.XYs{{X: 0, Y: 0}, {X: maxX, Y: maxX}})
	if err != nil {
		return nil, err
	}
	ideal.Color = color.Gray{Y: 0x99}
	ideal.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
	thr.Add(ideal)
	thr.Legend.Add("offered", ideal)
	thr.Y.Min = 0
	thr.Y.Max = maxX * 1.35
	thr.Y.Tick.Marker = integerTicks{}

	names := []string{"latency-vs-rate.png", "throughput-vs-rate.png"}
	for i, p := range []*plot.Plot{lat, thr} {
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, names[i])); err != nil {
			return nil, fmt.Errorf("save %s: %w", names[i], err)
		}
	}
	return names, nil
}

func addLine(p *plot.Plot, name string, xys plotter.XYs, c color.Color, dashes []vg.Length, glyph draw.GlyphDrawer) error {
	l, s, err := plotter.NewLinePoints(xys)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
	s.Color, s.Shape, s.Radius = c, glyph, vg.Points(3)
	p.Add(l, s)
	p.Legend.Add(name, l, s)
	return nil
}

// integerTicks are the default ticks labelled without decimals (events/s).
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = fmt.Sprintf("%.0f", ts[i].Value)
		}
	}
	return ts
}
