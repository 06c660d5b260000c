package httpapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"countd/actors"
)

// ui holds the status page: index.html with the placeholders {{css}} and
// {{js}}, which status.css and status.js fill. The page is one response
// because only GET / serves it; it loads nothing else but GET /status.
//
//go:embed ui
var ui embed.FS

// page is the assembled status page and the headers it is served with.
type page struct {
	body   []byte
	gzBody []byte // body, gzip-compressed once at start
	csp    string // allows the page's own inline style and script, by hash, and fetches to this origin
	etag   string // of body
	gzEtag string // of gzBody: etag with -gz, so a cache never takes one for the other
}

var statusPage = buildPage()

func buildPage() page {
	read := func(name string) string {
		b, err := ui.ReadFile("ui/" + name)
		if err != nil {
			panic("httpapi: embedded " + name + ": " + err.Error()) // embedded at build time
		}
		return string(b)
	}
	html, css, js := read("index.html"), read("status.css"), read("status.js")
	if strings.Count(html, "{{css}}") != 1 || strings.Count(html, "{{js}}") != 1 {
		panic("httpapi: ui/index.html must hold {{css}} and {{js}} once each")
	}
	body := strings.NewReplacer("{{css}}", css, "{{js}}", js).Replace(html)
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
	}
	sum := sha256.Sum256([]byte(body))
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression) // a valid level: no error
	zw.Write([]byte(body))                                  // a bytes.Buffer does not fail
	zw.Close()
	etag := hex.EncodeToString(sum[:8])
	return page{
		body:   []byte(body),
		gzBody: gz.Bytes(),
		csp: "default-src 'none'; script-src " + hash(js) + "; style-src " + hash(css) +
			"; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		etag:   `"` + etag + `"`,
		gzEtag: `"` + etag + `-gz"`,
	}
}

// handleStatusPage serves GET /, the status page for people. It carries no
// data; its script fetches GET /status every second.
func (s *Server) handleStatusPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "max-age=60")
	h.Set("Content-Security-Policy", statusPage.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Add("Vary", "Accept-Encoding")
	body, etag := statusPage.body, statusPage.etag
	if acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body, etag = statusPage.gzBody, statusPage.gzEtag
		h.Set("Content-Encoding", "gzip")
		// ServeContent leaves out the length of an encoded body, as if
		// something else compressed it on the way; this one is whole, so
		// say it, and serve it whole rather than in ranges.
		h.Set("Content-Length", strconv.Itoa(len(body)))
		r.Header.Del("Range")
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// acceptsGzip reports whether Accept-Encoding values accept gzip: named
// (or x-gzip), or covered by *, with a q-value above zero (RFC 9110 12.5.3).
func acceptsGzip(values []string) bool {
	gzipQ, starQ := -1.0, -1.0 // -1: not named
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			q := 1.0
			for _, p := range strings.Split(params, ";") {
				if k, val, ok := strings.Cut(strings.TrimSpace(p), "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
					if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
						q = f
					} else {
						q = 0
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				gzipQ = max(gzipQ, q)
			case "*":
				starQ = max(starQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// statusReply is the body of GET /status. handleStatus writes it in
// parts (writeCounters streams the counters): the fields before the
// counters, the counters, then the history.
type statusReply struct {
	statusHead
	Counters map[string]int64 `json:"counters"`
	// Expires holds the seconds left of the counters that expire.
	Expires map[string]int64 `json:"expires_in,omitempty"`
	// History is what the page charts: the last minutes of changes per
	// second and of each peer's behind, sampled while the server is open.
	// Only with ?history=1: it is a few KB, and for the page, not for
	// people reading /status.
	History *historyReply `json:"history,omitempty"`
}

// statusHead is the fields of statusReply before its counters.
type statusHead struct {
	Node    string `json:"node"`
	Replica string `json:"replica"`
	// Started is when the node started (RFC 3339, UTC); omitted, with
	// UptimeSeconds 0, when the server was not told.
	Started       string    `json:"started,omitempty"`
	UptimeSeconds int64     `json:"uptime_seconds"`
	Peers         []peerRow `json:"peers"`
}

// handleStatus serves GET /status, the JSON the status page shows: this
// node, its peers as GET /peers lists them, every counter, and with
// ?history=1 the history the page charts.
func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	withHistory := false
	switch h := r.URL.Query()["history"]; {
	case len(h) == 1 && h[0] == "1":
		withHistory = true
	case len(h) > 0:
		s.writeError(w, badRequest("history takes only the value 1 (history=1 adds the charts' history)"))
		return
	}
	var peers []actors.PeerInfo
	if s.cfg.Cluster != nil {
		var err error
		if peers, err = s.cfg.Cluster.Peers(r.Context()); err != nil {
			s.writeError(w, err)
			return
		}
	}
	head := statusHead{Node: s.cfg.Node, Replica: s.cfg.Replica, Peers: peerRows(peers)}
	if !s.cfg.Started.IsZero() {
		head.Started = s.cfg.Started.UTC().Format(time.RFC3339)
		head.UptimeSeconds = int64(max(time.Since(s.cfg.Started), 0) / time.Second)
	}
	// The bytes of json.Marshal(statusReply{...}), the counters streamed
	// between the fields before them and the history after.
	prefix, err := json.Marshal(head)
	if err != nil {
		s.writeError(w, err)
		return
	}
	prefix[len(prefix)-1] = ',' // the object goes on
	suffix := []byte{'}'}
	if withHistory {
		now := time.Now()
		s.hist.look(r.Context(), now)
		h, err := json.Marshal(s.hist.snapshot(now))
		if err != nil {
			s.writeError(w, err)
			return
		}
		suffix = append(append([]byte(`,"history":`), h...), '}')
	}
	w.Header().Set("Cache-Control", "no-store")
	s.writeCounters(w, r, prefix, suffix)
}
