package main

import (
	"errors"
	"fmt"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// drawChurn writes one PNG of four panels from the churn-mode runs, each
// against the seconds since the first create: RSS, the data file (its
// size, and dashed the part bbolt's tree uses), live counters and CRDT
// entries. Each run (and each node of it) is one line.
func drawChurn(path string, runs []Result) error {
	var churn []Result
	for _, r := range runs {
		if r.Churn != nil && len(r.Churn.Samples) > 0 {
			churn = append(churn, r)
		}
	}
	if len(churn) == 0 {
		return errors.New("draw charts: no churn-mode runs to draw")
	}
	mb := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		return ptr(*p / 1e6)
	}
	panels := [][]*plot.Plot{
		{
			churnPanel(churn, "Resident memory", "MB", func(f *ChurnFigures) []*float64 { return []*float64{mb(f.RSSBytes)} }, ""),
			churnPanel(churn, "Data file (dashed: in use by bbolt)", "MB",
				func(f *ChurnFigures) []*float64 { return []*float64{mb(f.FileBytes), mb(f.BoltInUseBytes)} }, " in use"),
		},
		{
			churnPanel(churn, "Live counters", "counters", func(f *ChurnFigures) []*float64 { return []*float64{f.Counters} }, ""),
			churnPanel(churn, "CRDT entries (tombstones included)", "entries", func(f *ChurnFigures) []*float64 { return []*float64{f.Entries} }, ""),
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

// churnPanel draws the figures y picks against time: a line per run and
// node for the first figure, and for a second one (named by suffix) a
// dashed line of the same colour.
func churnPanel(runs []Result, title, yLabel string, y func(*ChurnFigures) []*float64, suffix string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds since the first create"
	p.Y.Label.Text = yLabel
	p.X.Min, p.Y.Min = 0, 0
	p.Legend.Top = true
	p.Legend.Left = true
	style := 0
	for _, r := range runs {
		cr := r.Churn
		name := "no ttl"
		if cr.TTLSeconds > 0 {
			name = fmt.Sprintf("ttl=%ds", cr.TTLSeconds)
		}
		for node := range len(cr.Samples[0].Nodes) {
			label := name
			if r.Nodes > 1 {
				label += fmt.Sprintf(" node %d", node+1)
			}
			var lines []plotter.XYs
			for _, s := range cr.Samples {
				if node >= len(s.Nodes) {
					continue
				}
				for k, v := range y(&s.Nodes[node]) {
					for len(lines) <= k {
						lines = append(lines, nil)
					}
					if v != nil {
						lines[k] = append(lines[k], plotter.XY{X: s.Seconds, Y: *v})
					}
				}
			}
			for k, pts := range lines {
				if len(pts) == 0 {
					continue
				}
				l, err := plotter.NewLine(pts)
				if err != nil {
					return nil
				}
				l.Color = plotutil.Color(style)
				if k > 0 {
					l.Dashes = plotutil.Dashes(1)
				}
				p.Add(l)
				if k == 0 {
					p.Legend.Add(label, l)
				} else {
					p.Legend.Add(label+suffix, l)
				}
			}
			style++
		}
	}
	return p
}
