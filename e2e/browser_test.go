package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"countd/internal/apiclient"
	"countd/internal/proc"
)

// longName is a counter name near the 128-character limit with no place
// where a line may break (no space or hyphen).
var longName = strings.Repeat("long_name", 14)

// Browser test timings.
const (
	pageTimeout = 20 * time.Second // for the page to show a state; it refreshes every second
	evalTimeout = 5 * time.Second  // one read of the page
	closeWait   = 10 * time.Second // for the browser to exit after a close
)

// TestStatusPageInBrowser opens node0's status page (GET /) in headless
// Chromium, at a phone's size, while a real three-node cluster runs, and
// checks what a person would see: the node, its replica id, every counter
// with the value the API gives, each peer alive; a chart of node0's changes
// per second that shows the changes made on it, and one of each peer's
// behind, each with a text alternative; nothing shifted as the data came
// in. A peer killed with SIGKILL turns down, in another colour; in the dark
// scheme as in the light one every text is readable (WCAG contrast). The
// peer is alive again once restarted on its port and data dir; a change
// made on it after the restart shows up; and when node0 itself dies the page
// says it cannot reach it and keeps the last data.
func TestStatusPageInBrowser(t *testing.T) {
	chrome := findChromium(t)

	ports := freePorts(t, 3)
	nodes := meshNodes(t, ports)
	n0, n1, n2 := nodes[0], nodes[1], nodes[2]
	startAll(t, nodes...)
	c := newClient(t, 2)

	// A few changes, on every node; node0 shows them once they replicate.
	for _, ch := range []struct {
		node    *clusterNode
		counter string
		delta   int64
	}{
		{n0, "apples", 3},
		{n1, "apples", 4},
		{n2, "pears", -2},
		{n1, "default", 1},
		// Past 2^53 a JavaScript number is not exact; the page must show every digit.
		{n2, "big", 1 << 53},
		{n2, "big", 12345},
		// A long name must wrap, not widen the page past a phone's screen.
		{n0, longName, 1},
	} {
		change(t, c, ch.node, ch.counter, ch.delta)
	}
	want := map[string]int64{"apples": 7, "pears": -2, "default": 1, "big": 1<<53 + 12345, longName: 1}
	api := awaitCounters(t, c, n0, want)

	replica, err := apiclient.Client{HTTP: c}.Replica(t.Context(), n0.url())
	if err != nil {
		t.Fatal(err)
	}

	b := openBrowser(t, chrome)
	start := time.Now()
	b.navigate(n0.url() + "/")

	// Everything as the API says, every peer alive.
	first := b.await("node0's page with its counters and both peers alive", func(v pageView) error {
		return errors.Join(
			match("node", v.Node, n0.addr), match("replica", v.Replica, replica), match("banner", v.Banner, false),
			match("peers", v.states(), map[string]string{n1.addr: "alive", n2.addr: "alive"}),
			match("counters", v.values(), api), match("wider than the window", v.Overflow, false))
	})
	t.Logf("page showed the cluster %v after loading", time.Since(start).Round(time.Millisecond))
	if v := first.Peers[n2.addr]; v.Shown != "alive" || v.Behind == "" || v.LastSeen == "" {
		t.Errorf("peer %s shown as %+v, want its state, behind and last seen as text", n2.addr, v)
	}
	if first.Title != "countd "+n0.addr {
		t.Errorf("title %q, want %q", first.Title, "countd "+n0.addr)
	}
	if shift := b.layoutShift(); shift >= 0.1 {
		t.Errorf("layout shift %.3f while the page loaded, want under 0.1 (Lighthouse's good)", shift)
	} else {
		t.Logf("layout shift while the page loaded: %.4f", shift)
	}

	// The charts: node0's changes per second and each peer's behind. The
	// server samples only while the page looks (httpapi/history.go), so the
	// changes above came before the first sample: one made now is what the
	// rate chart must show.
	change(t, c, n0, "apples", 1)
	want["apples"]++
	charts := b.await("the charts, drawn and described", func(v pageView) error {
		errs := []error{
			match("changes per second shown above zero", v.Rate.Above, true),
			match("changes per second described", strings.Contains(v.Rate.Name, "Changes per second") &&
				strings.Contains(v.Rate.Name, "peak"), true),
		}
		for _, n := range []*clusterNode{n1, n2} {
			p := v.Peers[n.addr]
			errs = append(errs, match(n.name+"'s behind drawn", p.Spark.Drawn, true),
				match(n.name+"'s behind described", strings.Contains(p.Spark.Name, n.addr) && strings.Contains(p.Spark.Name, "Behind"), true))
		}
		return errors.Join(errs...)
	})
	t.Logf("changes per second chart: %q", charts.Rate.Name)

	// Kill node2: the page turns it down, in another colour.
	n2.proc.Kill()
	killed := time.Now()
	down := b.await(n2.name+" shown down", func(v pageView) error {
		return errors.Join(match(n2.name+" state", v.Peers[n2.addr].State, "down"), match(n2.name+" text", v.Peers[n2.addr].Shown, "down"),
			match(n1.name+" state", v.Peers[n1.addr].State, "alive"), match("banner", v.Banner, false))
	})
	t.Logf("%s shown down %v after SIGKILL", n2.name, time.Since(killed).Round(time.Millisecond))
	if a, d := first.Peers[n2.addr].Colour, down.Peers[n2.addr].Colour; a == d || a == "" {
		t.Errorf("state badge colour alive %q, down %q: want two different colours", a, d)
	}

	// Both colour schemes, with a peer alive and one down: every text
	// readable, and the dark scheme dark.
	light := b.await("a light page with "+n2.name+" down", func(v pageView) error {
		return errors.Join(match("scheme", v.Dark, false), match(n2.name+" state", v.Peers[n2.addr].State, "down"))
	})
	b.setScheme("dark")
	dark := b.await("a dark page with "+n2.name+" down", func(v pageView) error {
		return errors.Join(match("scheme", v.Dark, true), match(n2.name+" state", v.Peers[n2.addr].State, "down"))
	})
	for _, v := range []pageView{light, dark} {
		scheme := map[bool]string{false: "light", true: "dark"}[v.Dark]
		t.Logf("%s scheme: lowest text contrast %.2f:1 (%q), of %d texts", scheme, v.Contrast.Ratio, v.Contrast.Text, v.Contrast.Texts)
		if v.Contrast.Ratio < 4.5 {
			t.Errorf("%s scheme: %q is %s on %s, contrast %.2f:1; want every text at least 4.5:1",
				scheme, v.Contrast.Text, v.Contrast.Fg, v.Contrast.Bg, v.Contrast.Ratio)
		}
		if v.Contrast.Texts < 20 {
			t.Errorf("%s scheme: contrast checked on %d texts; the page shows more", scheme, v.Contrast.Texts)
		}
	}
	if light.Background == dark.Background || light.Peers[n1.addr].Colour == dark.Peers[n1.addr].Colour {
		t.Errorf("background %s and alive badge %s in the light scheme, %s and %s in the dark: want both to differ",
			light.Background, light.Peers[n1.addr].Colour, dark.Background, dark.Peers[n1.addr].Colour)
	}

	// Restart it on the same port and data dir: alive again, and a change
	// made on it now reaches node0's page.
	startAll(t, n2)
	restarted := time.Now()
	b.await(n2.name+" shown alive after its restart", func(v pageView) error {
		return errors.Join(match(n2.name+" state", v.Peers[n2.addr].State, "alive"), match(n2.name+" text", v.Peers[n2.addr].Shown, "alive"))
	})
	t.Logf("%s shown alive %v after its restart", n2.name, time.Since(restarted).Round(time.Millisecond))
	change(t, c, n2, "plums", 5)
	want["plums"] = 5
	api = awaitCounters(t, c, n0, want)
	b.await("the change made on the restarted "+n2.name, func(v pageView) error { return match("counters", v.values(), api) })

	// Kill node0, the page's own node: a banner says so, the data stays.
	n0.proc.Kill()
	stale := b.await("the node-unreachable banner", func(v pageView) error { return match("banner", v.Banner, true) })
	if !strings.Contains(strings.ToLower(stale.BannerText), "unreachable") {
		t.Errorf("banner text %q does not say the node is unreachable", stale.BannerText)
	}
	if !maps.Equal(stale.values(), api) || stale.Node != n0.addr || len(stale.Peers) != 2 {
		t.Errorf("after node0 died the page shows %+v, want the last data kept: counters %v", stale, api)
	}

	b.close()
	b.assertNoPageErrors()
	n1.proc.Stop()
	n2.proc.Stop()
}

// findChromium returns the path of a Chromium or Chrome binary, or skips the
// test when there is none.
func findChromium(t *testing.T) string {
	t.Helper()
	if st, err := os.Stat("/usr/bin/chromium"); err == nil && !st.IsDir() {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium or Chrome found (/usr/bin/chromium, or chromium, chromium-browser, google-chrome on PATH); " +
		".ci/run installs Debian's chromium when it runs as root")
	return ""
}

// pageView is what the status page shows, read from its DOM.
type pageView struct {
	Dark       bool                `json:"dark"` // prefers-color-scheme: dark
	Background string              `json:"background"`
	Title      string              `json:"title"`
	Node       string              `json:"node"`
	Replica    string              `json:"replica"`
	Banner     bool                `json:"banner"` // the node-unreachable banner is visible
	BannerText string              `json:"bannerText"`
	Peers      map[string]peerView `json:"peers"`
	Counters   map[string]string   `json:"counters"` // name -> the value's text
	Overflow   bool                `json:"overflow"` // the page is wider than the window: it scrolls sideways
	Rate       chartView           `json:"rate"`     // the changes per second chart
	Contrast   contrastView        `json:"contrast"`
}

// chartView is one chart as the page shows it.
type chartView struct {
	Name  string `json:"name"`  // its accessible name, the text alternative
	Drawn bool   `json:"drawn"` // it has a line
	Above bool   `json:"above"` // some of the line is above zero
}

// contrastView is the visible text with the lowest contrast against what it
// sits on, of Texts checked.
type contrastView struct {
	Text  string  `json:"text"`
	Fg    string  `json:"fg"`
	Bg    string  `json:"bg"`
	Ratio float64 `json:"ratio"`
	Texts int     `json:"texts"`
}

type peerView struct {
	State    string    `json:"state"`  // data-state
	Shown    string    `json:"shown"`  // the state's text
	Colour   string    `json:"colour"` // the state badge's computed background colour
	LastSeen string    `json:"lastSeen"`
	Behind   string    `json:"behind"`
	Spark    chartView `json:"spark"` // its behind over time
}

// readPage is the script that builds a pageView.
const readPage = `(() => {
	const text = (id) => document.getElementById(id).textContent;
	const banner = document.getElementById("banner");
	// chart reads an svg chart: its name (aria-label, or the text of the
	// elements aria-labelledby names), whether it has a line, and whether
	// the line rises above the bottom of its 100-high viewBox.
	const chart = (svg) => {
		const by = svg.getAttribute("aria-labelledby");
		const name = by ? by.split(" ").map((id) => document.getElementById(id).textContent).join(" ")
			: svg.getAttribute("aria-label") || "";
		const d = svg.querySelector(".line").getAttribute("d") || "";
		const ys = d.split(/[ML]/).filter((p) => p.trim()).map((p) => Number(p.trim().split(" ")[1]));
		return { name, drawn: d !== "" && d !== "M0 0", above: ys.some((y) => y < 98) };
	};
	const peers = {}, counters = {};
	for (const e of document.querySelectorAll("[data-peer]")) {
		const badge = e.querySelector(".state");
		peers[e.dataset.peer] = {
			state: e.dataset.state, shown: badge.textContent, colour: getComputedStyle(badge).backgroundColor,
			lastSeen: e.querySelector(".last-seen").textContent, behind: e.querySelector(".behind").textContent,
			spark: chart(e.querySelector(".spark svg")),
		};
	}
	for (const e of document.querySelectorAll("[data-counter]")) {
		counters[e.dataset.counter] = e.querySelector(".value").textContent;
	}
	return {
		dark: matchMedia("(prefers-color-scheme: dark)").matches, background: getComputedStyle(document.body).backgroundColor,
		title: document.title, node: text("node"), replica: text("replica"),
		banner: !banner.hidden && banner.offsetParent !== null, bannerText: banner.textContent.trim().replace(/\s+/g, " "),
		peers, counters, overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth,
		rate: chart(document.getElementById("rate-chart")), contrast: lowestContrast(),
	};

	// lowestContrast finds the visible text with the lowest WCAG contrast
	// against the first opaque background behind it.
	function lowestContrast() {
		const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
		const lum = (c) => {
			const [r, g, b] = rgb(c).slice(0, 3).map((v) => {
				v /= 255;
				return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
			});
			return 0.2126 * r + 0.7152 * g + 0.0722 * b;
		};
		const opaque = (c) => { const v = rgb(c); return v.length === 3 || v[3] === 1; };
		let worst = { text: "", fg: "", bg: "", ratio: 21, texts: 0 };
		const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
		for (let t = walk.nextNode(); t; t = walk.nextNode()) {
			const e = t.parentElement;
			if (!t.textContent.trim() || !e.getClientRects().length || e.closest("svg, script, style, template, noscript")) continue;
			const st = getComputedStyle(e);
			if (st.visibility !== "visible") continue;
			let bg = "rgb(255, 255, 255)";
			for (let a = e; a; a = a.parentElement) {
				const c = getComputedStyle(a).backgroundColor;
				if (opaque(c)) { bg = c; break; }
			}
			const [hi, lo] = [lum(st.color), lum(bg)].sort((x, y) => y - x);
			const ratio = (hi + 0.05) / (lo + 0.05);
			worst.texts++;
			if (ratio < worst.ratio) worst = { text: t.textContent.trim().slice(0, 60), fg: st.color, bg, ratio, texts: worst.texts };
		}
		return worst;
	}
})()`

// states maps each peer's address to its data-state.
func (v pageView) states() map[string]string {
	out := make(map[string]string, len(v.Peers))
	for a, p := range v.Peers {
		out[a] = p.State
	}
	return out
}

// values parses the counters' text; a value that is not a whole number
// makes the map differ from any the API gives.
func (v pageView) values() map[string]int64 {
	out := make(map[string]int64, len(v.Counters))
	for name, s := range v.Counters {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return map[string]int64{"unparsable " + name: 0}
		}
		out[name] = n
	}
	return out
}

// browser is one headless Chromium with one tab, and what its page wrote to
// the console.
type browser struct {
	t      *testing.T
	ctx    context.Context // the tab's chromedp context
	closed bool

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// openBrowser starts headless Chromium and closes it when the test ends.
// chromedp gives it a temporary user data dir, which it removes, and kills
// any helper process of that browser left behind.
func openBrowser(t *testing.T, path string) *browser {
	t.Helper()
	out := proc.NewOutput()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // tests run as root in CI, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.WindowSize(412, 915), // a phone's width
		chromedp.Flag("no-proxy-server", true),
		// Nothing but 127.0.0.1: no name resolves, no background requests.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx,
		chromedp.WithLogf(func(string, ...any) {}),
		chromedp.WithErrorf(func(f string, args ...any) { fmt.Fprintf(out, "chromedp: "+f+"\n", args...) }))
	b := &browser{t: t, ctx: ctx}

	// Subscribing starts the browser and opens the tab.
	console := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range console {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		b.close()
		cancelTab()
		cancelAlloc()
		wg.Wait()
		if t.Failed() {
			lines := out.Lines()
			t.Logf("browser output (last %d of %d lines):\n%s",
				min(len(lines), 40), len(lines), strings.Join(lines[max(0, len(lines)-40):], "\n"))
			b.mu.Lock()
			for _, m := range b.console {
				t.Logf("page console: %s", m)
			}
			b.mu.Unlock()
		}
	})
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int]("1")); err != nil {
		t.Fatalf("starting %s: %v\n%s", path, err, out)
	}
	return b
}

func (b *browser) navigate(url string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, pageTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		b.t.Fatalf("opening %s: %v", url, err)
	}
}

// read reads the page once.
func (b *browser) read() (pageView, error) {
	ctx, cancel := context.WithTimeout(b.ctx, evalTimeout)
	defer cancel()
	return chromedp.Run(ctx, chromedp.Evaluate[pageView](readPage))
}

// layoutShift returns the page's layout shift so far: the sum of every
// shift not caused by input, an upper bound of Lighthouse's cumulative
// layout shift.
func (b *browser) layoutShift() float64 {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, evalTimeout)
	defer cancel()
	shift, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
		const po = new PerformanceObserver(() => {});
		po.observe({ type: "layout-shift", buffered: true });
		const sum = po.takeRecords().filter((e) => !e.hadRecentInput).reduce((s, e) => s + e.value, 0);
		po.disconnect();
		return sum;
	})()`))
	if err != nil {
		b.t.Fatalf("reading the layout shift: %v", err)
	}
	return shift
}

// setScheme makes the page see prefers-color-scheme as scheme, light or
// dark.
func (b *browser) setScheme(scheme string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, evalTimeout)
	defer cancel()
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return err
	}))
	if err != nil {
		b.t.Fatalf("emulating prefers-color-scheme: %s: %v", scheme, err)
	}
}

// await reads the page until cond returns nil, and returns that view; at
// pageTimeout it fails the test with cond's last complaint.
func (b *browser) await(what string, cond func(pageView) error) pageView {
	b.t.Helper()
	var v pageView
	var err error
	if poll(pageTimeout, func() bool {
		if v, err = b.read(); err != nil {
			err = fmt.Errorf("reading the page: %w", err)
			return false
		}
		err = cond(v)
		return err == nil
	}) {
		return v
	}
	b.t.Fatalf("no %s within %v: %v\nthe page shows %+v", what, pageTimeout, err, v)
	return v
}

// match returns nil if got equals want, else an error naming what differs.
func match[T any](what string, got, want T) error {
	if reflect.DeepEqual(got, want) {
		return nil
	}
	return fmt.Errorf("%s: got %v, want %v", what, got, want)
}

// close closes the browser gracefully and waits for it to exit.
func (b *browser) close() {
	if b.closed {
		return
	}
	b.closed = true
	ctx, cancel := context.WithTimeout(b.ctx, closeWait)
	defer cancel()
	if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
		b.t.Logf("closing the browser: %v", err)
	}
}

// assertNoPageErrors fails the test if the page threw an exception or the
// browser blocked something on it (a Content-Security-Policy violation).
func (b *browser) assertNoPageErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		if m.IsException() || m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
			b.t.Errorf("the page reported: %s (%s:%d)", m, m.URL, m.Line)
		}
	}
}

// change adds delta to counter on n; n must answer 200 with a good body.
func change(t *testing.T, c *http.Client, n *clusterNode, counter string, delta int64) {
	t.Helper()
	if r := (apiclient.Client{HTTP: c}).Change(n.url(), counter, delta); r.Status != http.StatusOK || r.Err != nil {
		t.Fatalf("%s: %s %+d: status %d: %v", n.name, counter, delta, r.Status, r.Err)
	}
}

// awaitCounters waits until n's GET /counters reports want (every counter,
// no other), and returns what it reported.
func awaitCounters(t *testing.T, c *http.Client, n *clusterNode, want map[string]int64) map[string]int64 {
	t.Helper()
	var got map[string]int64
	var err error
	if !poll(agreeTimeout, func() bool {
		got, err = apiclient.Client{HTTP: c}.Counters(context.Background(), n.url())
		return err == nil && maps.Equal(got, want)
	}) {
		t.Fatalf("%s's counters are %v (error %v), want %v within %v", n.name, got, err, want, agreeTimeout)
	}
	return got
}
