package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one invocation measured; -json writes it and -from
// reads it back.
type Report struct {
	Machine Machine   `json:"machine"`
	Started time.Time `json:"started"`
	Args    []string  `json:"args"`
	Runs    []Result  `json:"runs"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUModel  string `json:"cpu_model"`
	Cores     int    `json:"cores"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// Result is one run: one combination of node count and client count in one
// mode. Figures that could not be measured (for example a metric the nodes
// do not expose) are null in JSON and "n/a" in text.
type Result struct {
	Mode      string   `json:"mode"`
	Nodes     int      `json:"nodes"`
	Clients   int      `json:"clients"`
	Target    string   `json:"target"`
	Counters  int      `json:"counters"`
	Memory    bool     `json:"memory"`
	External  bool     `json:"external"`
	NodeFlags []string `json:"node_flags,omitempty"`
	// Peer names the system the nodes ran when it was not countd (idle
	// mode's -idle-peer, e.g. "memberlist v0.7.0, DefaultLANConfig").
	Peer string `json:"peer,omitempty"`
	// Security is what the nodes demanded (-security: "key", "token+tls",
	// ...); empty for none.
	Security string `json:"security,omitempty"`

	// Countd is the load on the nodes; Bare the same load on the bare
	// server (load mode with -bare), and Ratio their throughputs' ratio.
	Countd Side     `json:"countd"`
	Bare   *Side    `json:"bare,omitempty"`
	Ratio  *float64 `json:"ratio_to_bare"`
	// Fsync is the same load on the fsync yardstick (load mode with -bare
	// and -fsync on durable nodes the tool started; absent otherwise);
	// FsyncRatioToBare is its throughput over bare's, what the disk allows
	// any durable server here, and RatioToFsync countd's over its, what
	// countd's code costs on top of that.
	Fsync            *Side    `json:"fsync,omitempty"`
	FsyncRatioToBare *float64 `json:"fsync_ratio_to_bare,omitempty"`
	RatioToFsync     *float64 `json:"ratio_to_fsync,omitempty"`
	// BareTLS is the same load on the bare server over HTTPS, with a
	// certificate from the same CA (runs with TLS and -bare), and
	// RatioToBareTLS countd's throughput over its.
	BareTLS *Side `json:"bare_tls,omitempty"`
	// WrkBare (-wrk) is wrk's throughput on the bare server, run in turn
	// with the other servers in slices of -chunk (at least 1s), and BareToWrk the load generator's bare figure over it:
	// near 1 when the load generator costs no more than wrk.
	WrkBare   *float64 `json:"wrk_bare_rps,omitempty"`
	BareToWrk *float64 `json:"bare_ratio_to_wrk,omitempty"`
	// Peers (-redis) are other servers loaded in the same run.
	Peers          []Peer   `json:"peers,omitempty"`
	RatioToBareTLS *float64 `json:"ratio_to_bare_tls,omitempty"`

	// AgreementMS is the time from the end of the load until every node
	// reported the same counters.
	AgreementMS *float64 `json:"agreement_ms"`
	// Counted is how much the sum of all counters grew over the run, as
	// the nodes agreed on it; with no loss and no double count it lies
	// between Countd.OK and Countd.OK + Countd.Unknown.
	Counted *int64 `json:"counted"`

	Replication Replication `json:"replication"`
	NodeStats   []NodeStat  `json:"node_stats"`

	Rounds *RoundsResult `json:"rounds,omitempty"`
	Idle   *IdleResult   `json:"idle,omitempty"`
	Create *CreateResult `json:"create,omitempty"`
	// Restart is the create mode's -restart-node figures.
	Restart *MemoryResult `json:"restart,omitempty"`
	Churn   *ChurnResult  `json:"churn,omitempty"`
	// Levels is the levels mode's load at each write level; Countd is
	// then all of them together.
	Levels []LevelSide `json:"levels,omitempty"`
	// RESP is the resp mode's figures; Countd is then empty.
	RESP *RESPResult `json:"resp,omitempty"`
	// Keys is the keys mode's baseline and what the nodes held; Countd is
	// then the keyed changes.
	Keys *KeysResult `json:"keys,omitempty"`

	// Notes are what went wrong without stopping the run.
	Notes []string `json:"notes,omitempty"`
}

// Side is the load one server took.
type Side struct {
	Requests   int64            `json:"requests"`
	OK         int64            `json:"ok"`
	Unknown    int64            `json:"unknown"`
	Seconds    float64          `json:"seconds"`
	Throughput float64          `json:"throughput_rps"`
	Latency    Latency          `json:"latency"`
	Errors     map[string]int64 `json:"errors"`
	FirstError string           `json:"first_error,omitempty"`
	// CPUUSPerChange is the server's CPU time (user plus system, from
	// /proc/PID/stat before and after each measured slice) over its 2xx
	// answers, in µs: for countd the sum over its nodes, each of which is
	// in NodeCPUUSPerChange (with more than one). Absent when unknown (an
	// external cluster).
	CPUUSPerChange     *float64  `json:"cpu_us_per_change,omitempty"`
	NodeCPUUSPerChange []float64 `json:"node_cpu_us_per_change,omitempty"`
}

// Latency is a request latency distribution in milliseconds; percentiles are
// histogram bucket upper bounds (within 0.8% above the exact value).
type Latency struct {
	P50MS  float64 `json:"p50_ms"`
	P99MS  float64 `json:"p99_ms"`
	P999MS float64 `json:"p999_ms"`
	MaxMS  float64 `json:"max_ms"`
	MeanMS float64 `json:"mean_ms"`
}

// Replication is what the nodes' /metrics say about the run: totals over
// all nodes, and per client change (a 200 answer to the load).
type Replication struct {
	Changes         *float64 `json:"changes"`
	Pushes          *float64 `json:"pushes"`
	PushFailures    *float64 `json:"push_failures"`
	PushBytes       *float64 `json:"push_bytes"`
	PushesPerChange *float64 `json:"pushes_per_change"`
	BytesPerChange  *float64 `json:"bytes_per_change"`
	EntriesPerPush  *float64 `json:"entries_per_push"`
}

// NodeStat is one node's resource use over the run. Source is "proc" for
// nodes the tool started (read from /proc) and "metrics" for -addrs nodes
// (process_cpu_seconds_total and process_resident_memory_bytes, which has
// no peak).
type NodeStat struct {
	Addr         string   `json:"addr"`
	PID          int      `json:"pid,omitempty"`
	Source       string   `json:"source"`
	CPUSeconds   *float64 `json:"cpu_seconds"`
	RSSBytes     *float64 `json:"rss_bytes"`
	PeakRSSBytes *float64 `json:"peak_rss_bytes"`
}

// RoundsResult is the rounds mode's time to agreement after each burst.
type RoundsResult struct {
	Rounds      int       `json:"rounds"`
	BurstMS     float64   `json:"burst_ms"`
	AgreementMS []float64 `json:"agreement_ms"`
	P50MS       float64   `json:"p50_ms"`
	P99MS       float64   `json:"p99_ms"`
	MaxMS       float64   `json:"max_ms"`
}

// IdleResult is the idle mode's CPU use of all nodes together.
type IdleResult struct {
	SettleSeconds    float64  `json:"settle_seconds"`
	Seconds          float64  `json:"seconds"`
	CPUSeconds       *float64 `json:"cpu_seconds"`
	CPUPercentOfCore *float64 `json:"cpu_percent_of_one_core"`
	// ReadySeconds is the time from the first node's start until every
	// node listed every other alive (0 for a cluster the tool did not start).
	ReadySeconds float64 `json:"ready_seconds"`
	// DetectSeconds (-detect) is the time from a SIGKILL of the last node
	// until every other node listed it down.
	DetectSeconds *float64 `json:"detect_seconds,omitempty"`
}

// CreateResult is the create mode's work.
type CreateResult struct {
	Counters       int     `json:"counters"`
	Seconds        float64 `json:"seconds"`
	AgreedCounters int     `json:"agreed_counters"`
}

// newSide summarises load statistics.
func newSide(s *loadStats) Side {
	return Side{
		Requests:   s.Outcomes.Total(),
		OK:         s.Outcomes.OK,
		Unknown:    s.Outcomes.Unknown,
		Seconds:    s.Elapsed.Seconds(),
		Throughput: s.rate(),
		Latency: Latency{
			P50MS:  ms(s.Hist.Quantile(0.50)),
			P99MS:  ms(s.Hist.Quantile(0.99)),
			P999MS: ms(s.Hist.Quantile(0.999)),
			MaxMS:  ms(s.Hist.Max),
			MeanMS: ms(s.Hist.Mean()),
		},
		Errors:     copyErrors(s.Errors),
		FirstError: s.FirstError,
	}
}

// ratio returns a's throughput over b's, or nil when b has none.
func ratio(a, b *Side) *float64 {
	if b.Throughput <= 0 {
		return nil
	}
	return ptr(a.Throughput / b.Throughput)
}

// machine describes this machine.
func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return m
}

// writeReport writes r as indented JSON to path.
func writeReport(path string, r *Report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// readReport reads a file that writeReport wrote.
func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Report
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("read results %s: %w", path, err)
	}
	return &r, nil
}

// printMachine prints the machine line that heads a report.
func printMachine(w io.Writer, m Machine) {
	fmt.Fprintf(w, "machine: %s, %d cores, %s, kernel %s, %s/%s\n",
		orNA(m.CPUModel), m.Cores, m.GoVersion, orNA(m.Kernel), m.OS, m.Arch)
}

// printResult prints one run for people.
func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "\n%s\n", describeRun(r))
	if r.RESP != nil {
		printRESP(w, r.RESP)
		return
	}
	defer printChurn(w, r.Churn) // after the lines above
	defer printKeys(w, r.Keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	c := &r.Countd
	if r.Mode != modeIdle {
		line := fmt.Sprintf("  throughput\t%s req/s (%s requests in %.1fs)", group(c.Throughput), group(float64(c.Requests)), c.Seconds)
		if r.Bare != nil {
			line += fmt.Sprintf("; bare %s req/s; ratio %s", group(r.Bare.Throughput), fmtFloat(r.Ratio, "%.2f"))
		}
		fmt.Fprintln(tw, line)
		if r.WrkBare != nil {
			fmt.Fprintf(tw, "  wrk on bare\t%s req/s; this tool's bare figure is %s of it\n",
				group(*r.WrkBare), fmtFloat(r.BareToWrk, "%.3f"))
		}
		if f := r.Fsync; f != nil {
			fmt.Fprintf(tw, "  fsync yardstick\t%s req/s (%s requests in %.1fs), %s of bare; countd's ratio to fsync %s\n",
				group(f.Throughput), group(float64(f.Requests)), f.Seconds,
				fmtFloat(r.FsyncRatioToBare, "%.2f"), fmtFloat(r.RatioToFsync, "%.2f"))
		}
		if b := r.BareTLS; b != nil {
			fmt.Fprintf(tw, "  bare over TLS\t%s req/s (%s requests in %.1fs); countd's ratio to it %s; latency %s\n",
				group(b.Throughput), group(float64(b.Requests)), b.Seconds,
				fmtFloat(r.RatioToBareTLS, "%.2f"), fmtLatency(b.Latency))
			if len(b.Errors) > 0 {
				fmt.Fprintf(tw, "  bare TLS errors\t%s\n", fmtErrors(b))
			}
		}
		for _, p := range r.Peers {
			fmt.Fprintf(tw, "  %s\t%s req/s (%s INCRs), %s of bare; p50 %s ms, p99 %s ms; CPU %s µs/change\n",
				p.Name, group(p.Throughput), group(float64(p.Requests)), fmtFloat(p.RatioToBare, "%.2f"),
				fmtFloat(p.P50MS, "%.2f"), fmtFloat(p.P99MS, "%.2f"), fmtFloat(p.CPUUSPerChange, "%.1f"))
		}
		if line, ok := cpuLine(r); ok {
			fmt.Fprintln(tw, line)
		}
		line = "  latency\t" + fmtLatency(c.Latency)
		if r.Bare != nil {
			line += "; bare " + fmtLatency(r.Bare.Latency)
		}
		fmt.Fprintln(tw, line)
		if r.Fsync != nil {
			fmt.Fprintf(tw, "  fsync latency\t%s\n", fmtLatency(r.Fsync.Latency))
		}
		fmt.Fprintf(tw, "  errors\t%s\n", fmtErrors(c))
		if r.Bare != nil && len(r.Bare.Errors) > 0 {
			fmt.Fprintf(tw, "  bare errors\t%s\n", fmtErrors(r.Bare))
		}
		if r.Fsync != nil && len(r.Fsync.Errors) > 0 {
			fmt.Fprintf(tw, "  fsync errors\t%s\n", fmtErrors(r.Fsync))
		}
		agreed := "  agreement\t" + fmtFloat(r.AgreementMS, "%.1f ms") + " after the load stopped"
		if r.Rounds != nil {
			agreed = "  agreement\tp99 " + fmtFloat(r.AgreementMS, "%.1f ms") + " after a burst"
		}
		if r.Counted != nil {
			agreed += fmt.Sprintf("; counted %s for %s acknowledged", group(float64(*r.Counted)), group(float64(c.OK)))
			if c.Unknown > 0 {
				agreed += fmt.Sprintf(" and %s unknown", group(float64(c.Unknown)))
			}
		}
		if r.Mode != modeChurn && r.Mode != modeKeys {
			fmt.Fprintln(tw, agreed)
		}
		rp := &r.Replication
		fmt.Fprintf(tw, "  replication\t%s pushes/change, %s bytes/change, %s entries/push; %s pushes, %s failed\n",
			fmtFloat(rp.PushesPerChange, "%.4f"), fmtFloat(rp.BytesPerChange, "%.2f"), fmtFloat(rp.EntriesPerPush, "%.1f"),
			fmtFloat(rp.Pushes, "%.0f"), fmtFloat(rp.PushFailures, "%.0f"))
	}
	if rr := r.Rounds; rr != nil {
		fmt.Fprintf(tw, "  rounds\t%d bursts of %.0f ms: agreement p50 %.1f ms, p99 %.1f ms, max %.1f ms\n",
			rr.Rounds, rr.BurstMS, rr.P50MS, rr.P99MS, rr.MaxMS)
	}
	if id := r.Idle; id != nil {
		fmt.Fprintf(tw, "  idle\t%s CPU seconds over %.1fs = %s of one core, all %d nodes together\n",
			fmtFloat(id.CPUSeconds, "%.3f"), id.Seconds, fmtFloat(id.CPUPercentOfCore, "%.2f%%"), r.Nodes)
		fmt.Fprintf(tw, "  ready	%.1fs from the first start until every node listed every other alive\n", id.ReadySeconds)
		if id.DetectSeconds != nil {
			fmt.Fprintf(tw, "  detect	%.1fs from a SIGKILL of one node until every other listed it down\n", *id.DetectSeconds)
		}
	}
	if cr := r.Create; cr != nil {
		fmt.Fprintf(tw, "  created\t%s counters in %.1fs; the nodes agree on %s counters\n",
			group(float64(cr.Counters)), cr.Seconds, group(float64(cr.AgreedCounters)))
	}
	printMemory(tw, r.Restart)
	tw.Flush()
	printLevels(w, r.Levels)
	printNodeStats(tw, r.NodeStats)
	for _, n := range r.Notes {
		fmt.Fprintf(tw, "  note\t%s\n", n)
	}
}

// printNodeStats prints one line per node, or one summary line for many.
func printNodeStats(tw io.Writer, stats []NodeStat) {
	if len(stats) > 8 {
		var rss, peak []float64
		for _, s := range stats {
			if s.RSSBytes != nil {
				rss = append(rss, *s.RSSBytes)
			}
			if s.PeakRSSBytes != nil {
				peak = append(peak, *s.PeakRSSBytes)
			}
		}
		fmt.Fprintf(tw, "  nodes\t%d: rss %s; peak rss %s\n", len(stats), spread(rss), spread(peak))
		return
	}
	for _, s := range stats {
		fmt.Fprintf(tw, "  node %s\tcpu %s s, rss %s, peak rss %s (%s)\n", s.Addr,
			fmtFloat(s.CPUSeconds, "%.2f"), fmtBytes(s.RSSBytes), fmtBytes(s.PeakRSSBytes), s.Source)
	}
}

// spread formats min/median/max of byte counts.
func spread(v []float64) string {
	if len(v) == 0 {
		return "n/a"
	}
	slices.Sort(v)
	return fmt.Sprintf("min %.1f MB, median %.1f MB, max %.1f MB", v[0]/1e6, v[len(v)/2]/1e6, v[len(v)-1]/1e6)
}

// describeRun is the heading of one run.
func describeRun(r *Result) string {
	if r.RESP != nil {
		return fmt.Sprintf("resp: redis-benchmark -t incr -c %d on the RESP port of a -memory and a durable countd node and on redis-server (no persistence; appendfsync always)", r.Clients)
	}
	store := "durable"
	if r.Memory {
		store = "memory"
	}
	if r.External {
		store = "external cluster"
	}
	if r.Peer != "" {
		store = r.Peer
	}
	what := "POST /increment"
	if r.Counters > 0 {
		what = fmt.Sprintf("%d named counters", r.Counters)
	}
	s := fmt.Sprintf("%s: %d node(s), %s", r.Mode, r.Nodes, store)
	if r.Mode != modeIdle {
		on := "the first node"
		if r.Target == "all" {
			on = "all nodes"
		}
		s += fmt.Sprintf(", %d client(s) on %s", r.Clients, on)
		switch {
		case r.Churn != nil:
			s += ", " + describeChurn(r.Churn)
		case r.Keys != nil:
			s += ", " + describeKeys(r.Keys)
		case r.Mode != modeCreate:
			s += ", " + what
		}
	}
	if len(r.NodeFlags) > 0 {
		s += ", node flags " + strings.Join(r.NodeFlags, " ")
	}
	if r.Security != "" {
		s += ", security " + r.Security
	}
	return s
}

// printSummary prints one table row per run, for sweeps: idle runs in a
// table of their own, the rest in one whose fsync yardstick columns
// appear only when some run measured it.
func printSummary(w io.Writer, runs []Result) {
	idle := slices.DeleteFunc(slices.Clone(runs), func(r Result) bool { return r.Mode != modeIdle })
	if len(idle) >= 2 {
		printIdleSummary(w, idle)
	}
	runs = slices.DeleteFunc(slices.Clone(runs), func(r Result) bool { return r.Mode == modeIdle || r.RESP != nil }) // resp runs are printed whole
	if len(runs) < 2 {
		return
	}
	withFsync := slices.ContainsFunc(runs, func(r Result) bool { return r.Fsync != nil })
	withSec := slices.ContainsFunc(runs, func(r Result) bool { return r.Security != "" })
	withTLS := slices.ContainsFunc(runs, func(r Result) bool { return r.BareTLS != nil })
	var peers []string // names of every peer some run measured, in order
	for _, r := range runs {
		for _, p := range r.Peers {
			if !slices.Contains(peers, p.Name) {
				peers = append(peers, p.Name)
			}
		}
	}
	fmt.Fprintln(w, "\nsummary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "mode\tnodes\tclients\treq/s\tbare req/s\tratio\t"
	if withFsync {
		head += "fsync req/s\tto fsync\t"
	}
	if withTLS {
		head += "bare TLS req/s\tto bare TLS\t"
	}
	for _, name := range peers {
		head += name + " req/s\tcpu µs\t"
	}
	if withSec {
		head = "security\t" + head
	}
	fmt.Fprintln(tw, head+"cpu µs/chg\tbare cpu\tp50 ms\tp99 ms\tp99.9 ms\terrors\tagree ms\tpush/chg\tB/chg\t")
	for _, r := range runs {
		bare := "-"
		if r.Bare != nil {
			bare = group(r.Bare.Throughput)
		}
		var errs int64
		for _, n := range r.Countd.Errors {
			errs += n
		}
		row := fmt.Sprintf("%s\t%d\t%d\t%s\t%s\t%s\t", r.Mode, r.Nodes, r.Clients,
			group(r.Countd.Throughput), bare, fmtFloat(r.Ratio, "%.2f"))
		if withFsync {
			fsync, toFsync := "-", "-"
			if r.Fsync != nil {
				fsync, toFsync = group(r.Fsync.Throughput), fmtFloat(r.RatioToFsync, "%.2f")
			}
			row += fsync + "\t" + toFsync + "\t"
		}
		if withTLS {
			bt, toBT := "-", "-"
			if r.BareTLS != nil {
				bt, toBT = group(r.BareTLS.Throughput), fmtFloat(r.RatioToBareTLS, "%.2f")
			}
			row += bt + "\t" + toBT + "\t"
		}
		for _, name := range peers {
			rps, cpu := "-", "-"
			if i := slices.IndexFunc(r.Peers, func(p Peer) bool { return p.Name == name }); i >= 0 {
				rps, cpu = group(r.Peers[i].Throughput), fmtFloat(r.Peers[i].CPUUSPerChange, "%.1f")
			}
			row += rps + "\t" + cpu + "\t"
		}
		if withSec {
			row = cmp.Or(r.Security, "none") + "\t" + row
		}
		bareCPU := "-"
		if r.Bare != nil {
			bareCPU = fmtFloat(r.Bare.CPUUSPerChange, "%.1f")
		}
		row += fmtFloat(r.Countd.CPUUSPerChange, "%.1f") + "\t" + bareCPU + "\t"
		fmt.Fprintf(tw, "%s%.2f\t%.2f\t%.2f\t%d\t%s\t%s\t%s\t\n", row,
			r.Countd.Latency.P50MS, r.Countd.Latency.P99MS, r.Countd.Latency.P999MS, errs,
			fmtFloat(r.AgreementMS, "%.1f"), fmtFloat(r.Replication.PushesPerChange, "%.4f"),
			fmtFloat(r.Replication.BytesPerChange, "%.1f"))
	}
	tw.Flush()
	printLevelsSummary(w, runs)
}

// printIdleSummary prints one row per idle run: which system, its CPU as
// a share of one core, and the times to ready and to detection.
func printIdleSummary(w io.Writer, runs []Result) {
	fmt.Fprintln(w, "\nidle summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "system\tnodes\tcpu % of one core\tcpu s\tover s\tready s\tdetect s\trss median MB\t")
	for _, r := range runs {
		system := "countd"
		if r.Peer != "" {
			system = r.Peer
		}
		var rss []float64
		for _, s := range r.NodeStats {
			if s.RSSBytes != nil {
				rss = append(rss, *s.RSSBytes)
			}
		}
		median := "n/a"
		if len(rss) > 0 {
			slices.Sort(rss)
			median = fmt.Sprintf("%.1f", rss[len(rss)/2]/1e6)
		}
		var id IdleResult
		if r.Idle != nil {
			id = *r.Idle
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%.1f\t%.1f\t%s\t%s\t\n", system, r.Nodes,
			fmtFloat(id.CPUPercentOfCore, "%.2f"), fmtFloat(id.CPUSeconds, "%.3f"), id.Seconds,
			id.ReadySeconds, fmtFloat(id.DetectSeconds, "%.1f"), median)
	}
	tw.Flush()
}

// cpuLine is the servers' CPU time per change, if any was measured.
func cpuLine(r *Result) (string, bool) {
	var parts []string
	if v := r.Countd.CPUUSPerChange; v != nil {
		p := fmt.Sprintf("countd %.1f", *v)
		if n := r.Countd.NodeCPUUSPerChange; len(n) > 0 {
			each := make([]string, len(n))
			for i, x := range n {
				each[i] = fmt.Sprintf("%.1f", x)
			}
			p += " (nodes " + strings.Join(each, ", ") + ")"
		}
		parts = append(parts, p)
	}
	for _, s := range []struct {
		name string
		side *Side
	}{{"bare", r.Bare}, {"fsync", r.Fsync}, {"bare TLS", r.BareTLS}} {
		if s.side != nil && s.side.CPUUSPerChange != nil {
			parts = append(parts, fmt.Sprintf("%s %.1f", s.name, *s.side.CPUUSPerChange))
		}
	}
	if len(parts) == 0 {
		return "", false
	}
	return "  server CPU\t" + strings.Join(parts, "; ") + " µs/change", true
}

func fmtLatency(l Latency) string {
	return fmt.Sprintf("p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms", l.P50MS, l.P99MS, l.P999MS, l.MaxMS)
}

func fmtErrors(s *Side) string {
	if len(s.Errors) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(s.Errors))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, s.Errors[k])
	}
	out := strings.Join(parts, ", ")
	if s.FirstError != "" {
		out += " (first: " + s.FirstError + ")"
	}
	return out
}

// fmtFloat formats *p, or "n/a" when it is nil.
func fmtFloat(p *float64, format string) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf(format, *p)
}

// fmtBytes formats a byte count in MB (10^6), or "n/a".
func fmtBytes(p *float64) string {
	if p == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MB", *p/1e6)
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

// group formats a number rounded to a whole, with thousands separators.
func group(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	s := strconv.FormatInt(int64(math.Round(f)), 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// ptr returns a pointer to v, for the optional figures.
func ptr[T any](v T) *T { return &v }
