package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metric names the nodes expose (see the countd README). Any of them may be
// missing, for example on an older node: every figure built from a missing
// one is reported as n/a.
const (
	mChanges      = "countd_changes_total"
	mPushes       = "countd_replication_pushes_total"
	mPushFailures = "countd_replication_push_failures_total"
	mPushBytes    = "countd_replication_push_bytes_total"
	mPushEntries  = "countd_replication_push_entries"
	mProcessCPU   = "process_cpu_seconds_total"
	mProcessRSS   = "process_resident_memory_bytes"
)

// maxMetricsBody bounds how much of a /metrics reply is read.
const maxMetricsBody = 32 << 20

// errNoMetrics means the node does not serve GET /metrics (404).
var errNoMetrics = errors.New("node serves no /metrics")

// Metrics is one scrape of a node's GET /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// parseMetrics decodes the Prometheus text exposition format. The text comes
// from outside, so it must fail cleanly on any input; FuzzParseMetrics checks
// that it never panics.
func parseMetrics(r io.Reader) (m Metrics, err error) {
	defer func() {
		// The parser is a third-party state machine over untrusted text: a
		// panic in it must be a bad scrape, not a crashed benchmark.
		if p := recover(); p != nil {
			m, err = nil, fmt.Errorf("parse metrics: parser panicked: %v", p)
		}
	}()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	return Metrics(fams), nil
}

// Sum returns the total of every sample of the counter, gauge or untyped
// family name whose labels include all the pairs in match ("key", "value",
// ...). ok is false when the family is absent, is a histogram or summary, or
// no sample matches.
func (m Metrics) Sum(name string, match ...string) (sum float64, ok bool) {
	mf := m[name]
	if mf == nil {
		return 0, false
	}
	for _, mt := range mf.GetMetric() {
		if !labelsMatch(mt, match) {
			continue
		}
		var v float64
		switch {
		case mt.Counter != nil:
			v = mt.GetCounter().GetValue()
		case mt.Gauge != nil:
			v = mt.GetGauge().GetValue()
		case mt.Untyped != nil:
			v = mt.GetUntyped().GetValue()
		default:
			continue
		}
		if math.IsNaN(v) {
			continue
		}
		sum += v
		ok = true
	}
	return sum, ok
}

// Hist returns the total sample count and sum of the histogram family name
// over every series whose labels include match; ok is false when there is
// no such histogram.
func (m Metrics) Hist(name string, match ...string) (count, sum float64, ok bool) {
	mf := m[name]
	if mf == nil {
		return 0, 0, false
	}
	for _, mt := range mf.GetMetric() {
		h := mt.GetHistogram()
		if h == nil || !labelsMatch(mt, match) {
			continue
		}
		count += float64(h.GetSampleCount())
		sum += h.GetSampleSum()
		ok = true
	}
	return count, sum, ok
}

// labelsMatch reports whether mt has every label pair in match; an odd
// trailing key matches nothing.
func labelsMatch(mt *dto.Metric, match []string) bool {
	if len(match)%2 != 0 {
		return false
	}
	for i := 0; i < len(match); i += 2 {
		found := false
		for _, lp := range mt.GetLabel() {
			if lp.GetName() == match[i] && lp.GetValue() == match[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// fetchMetrics scrapes GET /metrics at base ("http://host:port"). It returns
// errNoMetrics when the node has no such route.
func fetchMetrics(ctx context.Context, c *http.Client, base string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", base, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return nil, errNoMetrics
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("metrics of %s: status %d: %s", base, resp.StatusCode, strings.TrimSpace(string(msg)))
	}
	m, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("metrics of %s: %w", base, err)
	}
	return m, nil
}

// metricDelta returns the sum over nodes of after-before of Sum(name,
// match...). ok is false unless every node has the metric in both scrapes.
func metricDelta(before, after []Metrics, name string, match ...string) (float64, bool) {
	if len(before) != len(after) || len(before) == 0 {
		return 0, false
	}
	var total float64
	for i := range before {
		b, ok1 := before[i].Sum(name, match...)
		a, ok2 := after[i].Sum(name, match...)
		if !ok1 || !ok2 {
			return 0, false
		}
		total += a - b
	}
	return total, true
}

// histDelta returns the sums over nodes of after-before of the histogram's
// count and sum; ok is false unless every node has it in both scrapes.
func histDelta(before, after []Metrics, name string) (count, sum float64, ok bool) {
	if len(before) != len(after) || len(before) == 0 {
		return 0, 0, false
	}
	for i := range before {
		bc, bs, ok1 := before[i].Hist(name)
		ac, as, ok2 := after[i].Hist(name)
		if !ok1 || !ok2 {
			return 0, 0, false
		}
		count += ac - bc
		sum += as - bs
	}
	return count, sum, true
}
