package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// writeLevels are the values of a change's ?wait= (docs/design.md, section
// 6, "Write and read levels"), in the order the API lists them: local (the
// default: answered once durable on the node that took it), quorum (and
// held by a majority of the members) and all (and by every member not
// left). The tool speaks the HTTP API only, so it names them itself.
var writeLevels = []string{"local", "quorum", "all"}

// LevelSide is the load one write level took in a levels-mode run, and its
// latency over local's in the same run (nil when local was not measured or
// this is local itself).
type LevelSide struct {
	Level      string   `json:"level"`
	Side       Side     `json:"side"`
	P50ToLocal *float64 `json:"p50_to_local,omitempty"`
	P99ToLocal *float64 `json:"p99_to_local,omitempty"`
}

// levelLeg is one level a levels-mode run drives in turn.
type levelLeg struct {
	level string
	url   urlFunc
	stats loadStats
}

// runLevels is the levels mode: -duration of changes at each of -levels,
// every one on the first node (or, with -target=all, spread as in the load
// mode), alternating in -chunk slices so that the machine's noise falls on
// every level alike. Each round starts at the next level (local, quorum,
// all; then quorum, all, local; ...), so that no level always follows the
// same one. Then the time until the nodes agree, as the load mode.
func (b *bench) runLevels(ctx context.Context, cl *cluster, clients int) (*Result, error) {
	res := b.newResult(modeLevels, cl, clients)
	client := newLoadClient(clients, cl.auth)
	defer client.CloseIdleConnections()
	bases := cl.auth.bases(targets(cl.addrs, b.cfg.Target))
	legs := make([]*levelLeg, len(b.cfg.Levels))
	for i, l := range b.cfg.Levels {
		legs[i] = &levelLeg{level: l, url: withWait(incrementURLs(bases, b.cfg.Counters), l)}
		warmUp(ctx, client, cl.auth.token, clients, legs[i].url)
	}
	ag0 := b.agreeBefore(ctx, cl, res)
	before := b.snapshot(ctx, cl, res, false)

	prog := b.progress(cl, clients)
	rounds := max(1, int((b.cfg.Duration+b.cfg.Chunk/2)/b.cfg.Chunk))
	slice := b.cfg.Duration / time.Duration(rounds)
	for r := range rounds {
		for i := range legs {
			l := legs[(r+i)%len(legs)]
			prog.setPhase(l.level)
			st := drive(ctx, driveSpec{client: client, token: cl.auth.token, clients: clients, url: l.url,
				until: time.Now().Add(slice), meter: &prog.countd})
			l.stats.add(&st)
		}
		if ctx.Err() != nil {
			prog.stop()
			return nil, ctx.Err()
		}
	}
	loadEnd := time.Now()
	prog.setPhase("agree")
	var all loadStats
	for _, l := range legs {
		all.add(&l.stats)
	}
	res.Countd = newSide(&all)
	_, err := b.agreeAfter(ctx, cl, res, ag0, loadEnd, "after the load")
	prog.stop()
	if err != nil {
		return nil, err
	}
	after := b.snapshot(ctx, cl, res, true)
	res.Levels = levelSides(legs)
	b.fillStats(res, cl, before, after)
	return res, nil
}

// levelSides summarises each level's load, with its latency over local's.
func levelSides(legs []*levelLeg) []LevelSide {
	out := make([]LevelSide, len(legs))
	for i, l := range legs {
		out[i] = LevelSide{Level: l.level, Side: newSide(&l.stats)}
	}
	i := slices.IndexFunc(out, func(s LevelSide) bool { return s.Level == "local" })
	if i < 0 {
		return out
	}
	local := out[i].Side.Latency
	for j := range out {
		if j == i {
			continue
		}
		lat := out[j].Side.Latency
		if local.P50MS > 0 {
			out[j].P50ToLocal = ptr(lat.P50MS / local.P50MS)
		}
		if local.P99MS > 0 {
			out[j].P99ToLocal = ptr(lat.P99MS / local.P99MS)
		}
	}
	return out
}

// withWait adds ?wait=level to every URL of u; local, the default, is sent
// too, so that every level's requests are the same size.
func withWait(u urlFunc, level string) urlFunc {
	return func(client int, seq uint64) (string, bool) {
		s, ok := u(client, seq)
		return s + "?wait=" + level, ok
	}
}

// printLevels prints a levels-mode run's table: one line per level.
func printLevels(w io.Writer, levels []LevelSide) {
	if len(levels) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  \tlevel\treq/s\tp50 ms\tp99 ms\tp99.9 ms\tp50/local\tp99/local\terrors\t")
	for _, l := range levels {
		fmt.Fprintf(tw, "  \t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\t%s\t%d\t\n", l.Level, group(l.Side.Throughput),
			l.Side.Latency.P50MS, l.Side.Latency.P99MS, l.Side.Latency.P999MS,
			fmtFloat(l.P50ToLocal, "%.2f"), fmtFloat(l.P99ToLocal, "%.2f"), errorCount(&l.Side))
	}
	tw.Flush()
	for _, l := range levels {
		if len(l.Side.Errors) > 0 {
			fmt.Fprintf(w, "  %s errors: %s\n", l.Level, fmtErrors(&l.Side))
		}
	}
}

// printLevelsSummary prints one row per level of every levels-mode run
// among runs, if there are any: the table BENCHMARKS.md quotes.
func printLevelsSummary(w io.Writer, runs []Result) {
	if !slices.ContainsFunc(runs, func(r Result) bool { return len(r.Levels) > 0 }) {
		return
	}
	fmt.Fprintln(w, "\nwrite levels")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "nodes\tstore\tclients\tlevel\treq/s\tp50 ms\tp99 ms\tp50/local\tp99/local\terrors\t")
	for _, r := range runs {
		store := "durable"
		if r.Memory {
			store = "memory"
		}
		if r.External {
			store = "external"
		}
		for _, l := range r.Levels {
			fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%.2f\t%.2f\t%s\t%s\t%d\t\n", r.Nodes, store, r.Clients, l.Level,
				group(l.Side.Throughput), l.Side.Latency.P50MS, l.Side.Latency.P99MS,
				fmtFloat(l.P50ToLocal, "%.2f"), fmtFloat(l.P99ToLocal, "%.2f"), errorCount(&l.Side))
		}
	}
	tw.Flush()
}

// errorCount is how many of a side's requests failed or have no known
// outcome.
func errorCount(s *Side) int64 {
	var n int64
	for _, v := range s.Errors {
		n += v
	}
	return n
}

// levelList is a flag.Value for -levels: distinct write levels, comma
// separated.
type levelList struct{ dst *[]string }

func (l levelList) String() string {
	if l.dst == nil {
		return ""
	}
	return strings.Join(*l.dst, ",")
}

func (l levelList) Set(v string) error {
	var out []string
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(writeLevels, f) {
			return fmt.Errorf("want comma-separated write levels from %s, got %q", strings.Join(writeLevels, ", "), f)
		}
		if slices.Contains(out, f) {
			return fmt.Errorf("level %s is given twice", f)
		}
		out = append(out, f)
	}
	*l.dst = out
	return nil
}
