package main

import (
	"cmp"
	"errors"
	"fmt"
	"image/color"
	"maps"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// drawCharts writes one PNG of four panels from the load-mode runs:
// throughput and p99 latency against the client count (a line per node
// count, the bare server's throughput dashed and the fsync yardstick's
// dotted), and against the node count (a line per client count).
// Without load-mode runs, it draws the churn-mode runs instead (drawChurn).
func drawCharts(path string, runs []Result) error {
	if !slices.ContainsFunc(runs, func(r Result) bool { return r.Mode == modeLoad }) &&
		slices.ContainsFunc(runs, func(r Result) bool { return r.Churn != nil }) {
		return drawChurn(path, runs)
	}
	var load []Result
	for _, r := range runs {
		if r.Mode == modeLoad && r.Countd.Requests > 0 {
			load = append(load, r)
		}
	}
	if len(load) == 0 {
		return errors.New("draw charts: no load-mode runs to draw")
	}
	throughput := func(r *Result) float64 { return r.Countd.Throughput }
	p99 := func(r *Result) float64 { return r.Countd.Latency.P99MS }
	byClients := func(r *Result) (x, series int) { return r.Clients, r.Nodes }
	byNodes := func(r *Result) (x, series int) { return r.Nodes, r.Clients }

	panels := [][]*plot.Plot{
		{
			panel(load, "Throughput by clients", "clients", "req/s", "nodes=%d", byClients, throughput, true),
			panel(load, "p99 latency by clients", "clients", "ms", "nodes=%d", byClients, p99, false),
		},
		{
			panel(load, "Throughput by nodes", "nodes", "req/s", "clients=%d", byNodes, throughput, false),
			panel(load, "p99 latency by nodes", "nodes", "ms", "clients=%d", byNodes, p99, false),
		},
	}
	for _, row := range panels {
		for _, p := range row {
			if p == nil {
				return errors.New("draw charts: could not build a panel")
			}
		}
	}
	return writePanels(path, panels)
}

// writePanels lays panels out in a grid and writes them as one PNG.
func writePanels(path string, panels [][]*plot.Plot) error {
	img := vgimg.New(vg.Points(1000), vg.Points(750))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(panels), Cols: len(panels[0]), PadX: vg.Points(20), PadY: vg.Points(20),
		PadTop: vg.Points(10), PadBottom: vg.Points(10), PadLeft: vg.Points(10), PadRight: vg.Points(10)}
	canvases := plot.Align(panels, tiles, dc)
	for i, row := range panels {
		for j, p := range row {
			p.Draw(canvases[i][j])
		}
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("draw charts: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("draw charts: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("draw charts: %w", err)
	}
	return nil
}

// panel draws y against x, one line per series value. With withBare, the
// yardstick servers' throughput by x is added in grey (see yardstickLines).
// The x axis is logarithmic when x spans a factor of 4 or more, with a
// tick at every x measured.
func panel(runs []Result, title, xLabel, yLabel, seriesName string,
	key func(*Result) (x, series int), y func(*Result) float64, withBare bool) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true

	series := map[int]plotter.XYs{}
	var xs []int
	for i := range runs {
		x, s := key(&runs[i])
		series[s] = append(series[s], plotter.XY{X: float64(x), Y: y(&runs[i])})
		if !slices.Contains(xs, x) {
			xs = append(xs, x)
		}
	}
	slices.Sort(xs)
	var args []any
	for _, s := range slices.Sorted(maps.Keys(series)) {
		pts := series[s]
		slices.SortFunc(pts, func(a, b plotter.XY) int { return cmp.Compare(a.X, b.X) })
		args = append(args, fmt.Sprintf(seriesName, s), pts)
	}
	if err := plotutil.AddLinePoints(p, args...); err != nil {
		return nil
	}
	if withBare {
		for _, yl := range yardstickLines(runs, key) {
			if l, err := plotter.NewLine(yl.pts); err == nil {
				l.Color = color.Gray{Y: 100}
				l.Dashes = yl.dashes
				p.Add(l)
				p.Legend.Add(yl.name, l)
			}
		}
	}

	ticks := make(plot.ConstantTicks, len(xs))
	for i, x := range xs {
		ticks[i] = plot.Tick{Value: float64(x), Label: strconv.Itoa(x)}
	}
	p.X.Tick.Marker = ticks
	if len(xs) > 1 && xs[0] > 0 && xs[len(xs)-1] >= 4*xs[0] {
		p.X.Scale = plot.LogScale{}
		p.X.Min, p.X.Max = float64(xs[0])/1.3, float64(xs[len(xs)-1])*1.3
	} else {
		p.X.Min, p.X.Max = float64(xs[0])-0.5, float64(xs[len(xs)-1])+0.5
	}
	return p
}

// yardstickLine is one yardstick server's throughput in a panel.
type yardstickLine struct {
	name   string
	pts    plotter.XYs
	dashes []vg.Length
}

// yardsticks are the servers drawn beside countd: bare dashed, the fsync
// yardstick dotted.
var yardsticks = []struct {
	name   string
	side   func(*Result) *Side
	dashes []vg.Length
}{
	{"bare net/http", func(r *Result) *Side { return r.Bare }, []vg.Length{vg.Points(4), vg.Points(3)}},
	{"fsync yardstick", func(r *Result) *Side { return r.Fsync }, []vg.Length{vg.Points(1), vg.Points(2)}},
}

// yardstickLines returns a line per yardstick some run measured: its
// throughput by x, averaged over the runs at that x (over every series).
func yardstickLines(runs []Result, key func(*Result) (x, series int)) []yardstickLine {
	var out []yardstickLine
	for _, ys := range yardsticks {
		byX := map[int][]float64{}
		for i := range runs {
			if s := ys.side(&runs[i]); s != nil {
				x, _ := key(&runs[i])
				byX[x] = append(byX[x], s.Throughput)
			}
		}
		if len(byX) == 0 {
			continue
		}
		var pts plotter.XYs
		for _, x := range slices.Sorted(maps.Keys(byX)) {
			var sum float64
			for _, t := range byX[x] {
				sum += t
			}
			pts = append(pts, plotter.XY{X: float64(x), Y: sum / float64(len(byX[x]))})
		}
		out = append(out, yardstickLine{ys.name, pts, ys.dashes})
	}
	return out
}
