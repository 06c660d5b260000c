// Package metrics holds a node's Prometheus metrics.
//
// Each node has a registry of its own (tests run many nodes in one process),
// served by Handler. The recording methods are safe on a nil *Metrics, so a
// component built without metrics needs no checks of its own. No label takes
// a value a client chooses: counter names and peer addresses never become
// labels, so the number of series stays fixed.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Peer states, as the peers gauge labels them.
var peerStates = []string{"alive", "suspect", "down", "unauthorized", "left"}

// Outcomes of a client change, as the changes counter labels them.
const (
	OutcomeOK          = "ok"          // applied and durable
	OutcomeRejected    = "rejected"    // bad input or overflow: nothing changed
	OutcomeUnavailable = "unavailable" // timeout or store failure: outcome unknown
)

// Sources are read when Prometheus scrapes, not kept up to date.
type Sources struct {
	// PeerStates returns how many peers are in each state.
	PeerStates func() map[string]int
}

// Metrics is one node's set of metrics.
type Metrics struct {
	reg *prometheus.Registry

	changes        *prometheus.CounterVec
	changeOf       map[[2]string]prometheus.Counter // (op, outcome): resolved once, off the hot path
	requestOf      sync.Map                         // routeCode -> prometheus.Observer
	pushes         prometheus.Counter
	pushFailures   prometheus.Counter
	pushBytes      prometheus.Counter
	pushEntries    prometheus.Histogram
	heartbeatRTT   prometheus.Histogram
	httpDuration   *prometheus.HistogramVec
	commitBatch    prometheus.Histogram
	commitDuration prometheus.Histogram
	counters       prometheus.Gauge
	gossipIgnored  prometheus.Counter
	overLimit      prometheus.Counter
	mergesRefused  prometheus.Counter
	entries        prometheus.Gauge
	deleted        *prometheus.CounterVec
	collected      prometheus.Counter
	replays        prometheus.Counter
	keys           prometheus.Gauge
	keysRetired    prometheus.Counter
	respCommands   *prometheus.CounterVec
	respCommandOf  sync.Map // command name -> prometheus.Counter
	respConns      prometheus.Gauge
	respAccepted   prometheus.Counter
}

// New returns a node's metrics, with Go runtime and process metrics beside
// countd's own.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "countd_changes_total",
			Help: "Client increments and decrements, by operation and outcome (ok, rejected, unavailable).",
		}, []string{"op", "outcome"}),
		pushes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_replication_pushes_total",
			Help: "State pushes sent to peers (POST /replicate), failed ones included.",
		}),
		pushFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_replication_push_failures_total",
			Help: "State pushes that failed (no answer, or an error answer).",
		}),
		pushBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_replication_push_bytes_total",
			Help: "Bytes of state push bodies sent to peers.",
		}),
		pushEntries: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "countd_replication_push_entries",
			Help:    "Entries per state push.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7), // 1 .. 4096
		}),
		heartbeatRTT: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "countd_heartbeat_rtt_seconds",
			Help:    "Round-trip time of successful checks of peers: health checks, and the pushes that probe peers in sync.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 10), // 0.1 ms .. 0.4 s
		}),
		httpDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "countd_http_request_duration_seconds",
			Help:    "HTTP requests served, by route template and status code.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 10),
		}, []string{"route", "code"}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "countd_commit_batch_size",
			Help:    "Requests made durable by one group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10), // 1 .. 512
		}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "countd_commit_duration_seconds",
			Help:    "Time of one group commit's store write.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 10), // 50 µs .. 0.2 s
		}),
		counters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countd_counters",
			Help: "Named counters this node knows (not deleted; expired ones until the sweep deletes them).",
		}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countd_crdt_entries",
			Help: "Per-replica entries this node holds, in all counters, tombstones included.",
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "countd_counters_deleted_total",
			Help: "Counters deleted on this node, by reason: delete (a client's DELETE) or expire (the expiry passed).",
		}, []string{"reason"}),
		collected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_tombstones_collected_total",
			Help: "Deleted counters forgotten (memory and disk reclaimed) once every member held their deletion.",
		}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_idempotent_replays_total",
			Help: "Keyed changes (Idempotency-Key) answered as replays: the key had made this very change before, and nothing was counted again.",
		}),
		keys: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "countd_idempotency_keys",
			Help: "Key entries (idempotency keys) this node holds, retired ones not yet forgotten included.",
		}),
		keysRetired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_idempotency_keys_retired_total",
			Help: "Key entries this node retired once their -idempotency-window passed (their change moved into this node's own entry).",
		}),
		gossipIgnored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_gossip_ignored_total",
			Help: "Peer addresses from gossip or pushes ignored because the node has -max-peers peers.",
		}),
		overLimit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_replicated_counters_over_limit_total",
			Help: "Counters that replication created past -max-counters; kept, since nodes must not diverge.",
		}),
		mergesRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "countd_merges_refused_total",
			Help: "State pushes (POST /replicate) refused whole because a counter would hold more than -max-entries entries.",
		}),
	}
	m.respCommands = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "countd_resp_commands_total", Help: "RESP commands run, by command name (\"unknown\": a command countd does not have).",
	}, []string{"command"})
	m.respConns = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "countd_resp_connections", Help: "RESP connections open.",
	})
	m.respAccepted = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "countd_resp_connections_total", Help: "RESP connections accepted.",
	})
	m.reg.MustRegister(m.respCommands, m.respConns, m.respAccepted)
	m.reg.MustRegister(
		m.changes, m.pushes, m.pushFailures, m.pushBytes, m.pushEntries,
		m.heartbeatRTT, m.httpDuration, m.commitBatch, m.commitDuration, m.counters,
		m.gossipIgnored, m.overLimit, m.mergesRefused, m.entries, m.deleted, m.collected,
		m.replays, m.keys, m.keysRetired,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if src.PeerStates != nil {
		m.reg.MustRegister(peersCollector{src.PeerStates})
	}
	m.changeOf = make(map[[2]string]prometheus.Counter)
	for _, reason := range []string{"delete", "expire"} {
		m.deleted.WithLabelValues(reason)
	}
	for _, op := range []string{"increment", "decrement"} { // series exist from the start
		for _, o := range []string{OutcomeOK, OutcomeRejected, OutcomeUnavailable} {
			m.changeOf[[2]string{op, o}] = m.changes.WithLabelValues(op, o)
		}
	}
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Change counts a client change: op is "increment" or "decrement".
func (m *Metrics) Change(op, outcome string) {
	if m == nil {
		return
	}
	c, ok := m.changeOf[[2]string{op, outcome}]
	if !ok {
		c = m.changes.WithLabelValues(op, outcome)
	}
	c.Inc()
}

// Applied returns how many client changes, increments and decrements, this
// node has applied (outcome ok) since it started; 0 on a nil *Metrics. It
// reads the counters Change adds to, so the hot path pays nothing for it;
// the status page's history samples it once a second.
func (m *Metrics) Applied() uint64 {
	if m == nil {
		return 0
	}
	var total float64
	for _, op := range []string{"increment", "decrement"} {
		var d dto.Metric
		if err := m.changeOf[[2]string{op, OutcomeOK}].Write(&d); err == nil {
			total += d.GetCounter().GetValue()
		}
	}
	return uint64(total)
}

// Pushed records one state push of entries in a body of size bytes.
func (m *Metrics) Pushed(bytes, entries int, err error) {
	if m == nil {
		return
	}
	m.pushes.Inc()
	m.pushBytes.Add(float64(bytes))
	m.pushEntries.Observe(float64(entries))
	if err != nil {
		m.pushFailures.Inc()
	}
}

// GossipIgnored counts n peer addresses ignored because the membership
// table was full (-max-peers).
func (m *Metrics) GossipIgnored(n int) {
	if m != nil {
		m.gossipIgnored.Add(float64(n))
	}
}

// Heartbeat records the round trip of a successful health check.
func (m *Metrics) Heartbeat(rtt time.Duration) {
	if m != nil {
		m.heartbeatRTT.Observe(rtt.Seconds())
	}
}

// Request records an HTTP request served on route (a route template, such
// as /counters/{name}) with status code.
func (m *Metrics) Request(route string, code int, took time.Duration) {
	if m == nil {
		return
	}
	// Routes and codes are few and fixed: resolve each pair's series once.
	k := routeCode{route, code}
	o, ok := m.requestOf.Load(k)
	if !ok {
		o, _ = m.requestOf.LoadOrStore(k, m.httpDuration.WithLabelValues(route, strconv.Itoa(code)))
	}
	o.(prometheus.Observer).Observe(took.Seconds())
}

type routeCode struct {
	route string
	code  int
}

// Committed records a group commit that made requests durable.
func (m *Metrics) Committed(requests int, took time.Duration) {
	if m != nil {
		m.commitBatch.Observe(float64(requests))
		m.commitDuration.Observe(took.Seconds())
	}
}

// Counters sets how many named counters the node knows.
func (m *Metrics) Counters(n int) {
	if m != nil {
		m.counters.Set(float64(n))
	}
}

// CountersOverLimit counts n counters that replication created past the
// counter limit.
func (m *Metrics) CountersOverLimit(n int) {
	if m != nil {
		m.overLimit.Add(float64(n))
	}
}

// Entries sets how many per-replica entries the node holds.
func (m *Metrics) Entries(n int) {
	if m != nil {
		m.entries.Set(float64(n))
	}
}

// Deleted counts n counters deleted for reason ("delete" or "expire").
func (m *Metrics) Deleted(reason string, n int) {
	if m != nil {
		m.deleted.WithLabelValues(reason).Add(float64(n))
	}
}

// Collected counts n tombstones forgotten.
func (m *Metrics) Collected(n int) {
	if m != nil {
		m.collected.Add(float64(n))
	}
}

// Replayed counts a keyed change answered as a replay.
func (m *Metrics) Replayed() {
	if m != nil {
		m.replays.Inc()
	}
}

// Keys sets how many key entries the node holds.
func (m *Metrics) Keys(n int) {
	if m != nil {
		m.keys.Set(float64(n))
	}
}

// KeysRetired counts n key entries retired.
func (m *Metrics) KeysRetired(n int) {
	if m != nil {
		m.keysRetired.Add(float64(n))
	}
}

// MergeRefused counts a state push refused whole for the entry limit.
func (m *Metrics) MergeRefused() {
	if m != nil {
		m.mergesRefused.Inc()
	}
}

// peersCollector reports the peers gauge from the membership table when
// scraped, so the gauge can never disagree with GET /peers.
type peersCollector struct{ states func() map[string]int }

var peersDesc = prometheus.NewDesc("countd_peers", "Peers by state.", []string{"state"}, nil)

func (c peersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- peersDesc }

func (c peersCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.states()
	for _, s := range peerStates {
		ch <- prometheus.MustNewConstMetric(peersDesc, prometheus.GaugeValue, float64(n[s]), s)
	}
}

// RESPCommand counts one RESP command; name is a command countd knows, in
// lower case, or "unknown", so the label set stays bounded.
func (m *Metrics) RESPCommand(name string) {
	if m == nil {
		return
	}
	c, ok := m.respCommandOf.Load(name)
	if !ok {
		c, _ = m.respCommandOf.LoadOrStore(name, m.respCommands.WithLabelValues(name))
	}
	c.(prometheus.Counter).Inc()
}

// RESPConnection records a RESP connection opened (delta 1) or closed (-1).
func (m *Metrics) RESPConnection(delta int) {
	if m == nil {
		return
	}
	if delta > 0 {
		m.respAccepted.Inc()
	}
	m.respConns.Add(float64(delta))
}
