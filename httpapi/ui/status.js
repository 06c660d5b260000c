"use strict";
// The status page: fetch /status every second and show it, with charts of
// the history it carries. Data reaches the DOM only through textContent and
// attributes, never as HTML.
(function () {
  const REFRESH_MS = 1000; // between the end of one fetch and the next
  const TIMEOUT_MS = 3000; // a fetch that takes longer counts as failed

  const $ = (id) => document.getElementById(id);

  // The client token (-client-token-file) is asked for on a 401 and kept
  // for the tab only: sessionStorage, never localStorage or a cookie.
  const TOKEN_KEY = "countd.token";
  function storedToken() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function storeToken(token) {
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* storage off: ask again next time */ }
  }
  let token = storedToken();

  // parse is JSON.parse that keeps integers past 2^53 (counter values are
  // int64) as their exact digits where the browser gives the source text.
  function parse(text) {
    return JSON.parse(text, function (key, value, ctx) {
      if (typeof value === "number" && !Number.isSafeInteger(value) && ctx && typeof ctx.source === "string") {
        return ctx.source;
      }
      return value;
    });
  }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    const d = Math.floor(seconds / 86400), h = Math.floor(seconds / 3600) % 24;
    const m = Math.floor(seconds / 60) % 60, s = seconds % 60;
    if (d > 0) return d + "d " + h + "h " + m + "m";
    if (h > 0) return h + "h " + m + "m " + s + "s";
    if (m > 0) return m + "m " + s + "s";
    return s + "s";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  // node makes an element with attributes and text or element children.
  function node(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    e.append(...children);
    return e;
  }

  // sync makes container's children match items, in order, keeping the
  // element of each key (its data-<attr>) so that updates do not flicker.
  function sync(container, items, attr, keyOf, make, update) {
    const old = new Map();
    for (const e of Array.from(container.children)) old.set(e.dataset[attr], e);
    items.forEach((item, i) => {
      const key = keyOf(item);
      let e = old.get(key);
      if (e) {
        old.delete(key);
      } else {
        e = make(key);
        e.dataset[attr] = key;
      }
      update(e, item);
      if (container.children[i] !== e) container.insertBefore(e, container.children[i] || null);
    });
    for (const e of old.values()) e.remove();
  }

  function makePeer() {
    return $("peer-card").content.firstElementChild.cloneNode(true);
  }

  function updatePeer(e, p, now, history) {
    e.dataset.state = p.state;
    e.querySelector(".addr").textContent = p.addr;
    e.querySelector(".state").textContent = p.state;
    const seen = e.querySelector(".last-seen");
    if (p.last_seen) {
      seen.textContent = duration((now - Date.parse(p.last_seen)) / 1000) + " ago";
      seen.title = p.last_seen;
    } else {
      seen.textContent = "never";
      seen.removeAttribute("title");
    }
    const behind = e.querySelector(".behind");
    behind.textContent = plural(p.behind, "change");
    behind.title = "changes on this node that " + p.addr + " has not acknowledged";

    const series = history.behind[p.addr] || [];
    const sum = summary(series);
    const svg = e.querySelector(".spark svg");
    draw(svg, series, sum.peak);
    const text = sum.known ? "Behind over the last " + history.window + ": peak " + compact(sum.peak) + "." : "No history yet.";
    e.querySelector(".spark figcaption").textContent = text;
    svg.setAttribute("aria-label", p.addr + ": " + text);
  }

  // compact writes a number short: 1234 as 1.2K.
  const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 1 }).format;

  // summary returns a series' last known value, peak and mean; known is
  // false when it holds no value at all.
  function summary(series) {
    let last = 0, peak = 0, sum = 0, n = 0;
    for (const v of series) {
      if (v === null) continue;
      last = Number(v); // a behind past 2^53 arrives as text: near enough to draw
      peak = Math.max(peak, last);
      sum += last;
      n++;
    }
    return { known: n > 0, last, peak, mean: n ? sum / n : 0 };
  }

  // scaleTop rounds a peak up to 1, 2 or 5 times a power of ten, so the
  // chart's top reads as a round number.
  function scaleTop(peak) {
    if (!(peak > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(peak)));
    return [1, 2, 5, 10].find((m) => peak <= m * p) * p;
  }

  // draw draws series (one value per step, oldest first, null where
  // unknown) across svg's 300 by 100 viewBox, scaled so that peak is near
  // the top: a line, broken where values are unknown, and the area under
  // it. It returns the value at the top.
  function draw(svg, series, peak) {
    const W = 300, H = 100, top = scaleTop(peak), n = series.length;
    const dx = n > 1 ? W / (n - 1) : W;
    let line = "", area = "";
    let run = []; // [x, y] of the known values since the last unknown one
    const flush = () => {
      if (run.length === 1) run.push([run[0][0] + dx / 2, run[0][1]]); // a lone value: a short dash
      if (run.length > 0) {
        const pts = run.map(([x, y]) => x.toFixed(1) + " " + y.toFixed(1)).join("L");
        line += "M" + pts;
        area += "M" + run[0][0].toFixed(1) + " " + H + "L" + pts + "L" + run[run.length - 1][0].toFixed(1) + " " + H + "Z";
      }
      run = [];
    };
    series.forEach((v, i) => {
      if (v === null) return flush();
      run.push([i * dx, H - 1 - (Math.min(Number(v), top) / top) * (H - 2)]);
    });
    flush();
    svg.querySelector(".line").setAttribute("d", line || "M0 0");
    svg.querySelector(".area").setAttribute("d", area || "M0 0");
    return top;
  }

  // windowText says how long n steps of step seconds are.
  function windowText(n, step) {
    const s = n * step;
    return s >= 120 ? Math.round(s / 60) + " minutes" : Math.round(s) + " seconds";
  }

  // renderRate draws the node's changes per second.
  function renderRate(history) {
    const series = history.rate;
    const sum = summary(series);
    const top = draw($("rate-chart"), series, sum.peak);
    $("rate-max").textContent = compact(top) + "/s";
    $("rate-from").textContent = series.length ? history.window + " ago" : "";
    const rate = (v) => compact(v) + "/s";
    $("rate-text").textContent = sum.known
      ? "Client changes made on this node: now " + rate(sum.last) + ", peak " + rate(sum.peak) +
        ", mean " + rate(sum.mean) + " over the last " + history.window + "."
      : "No history yet: the node samples once a second.";
  }

  function makeCounter() {
    return node("tr", null, node("th", { scope: "row" }), node("td", { class: "value" }), node("td", { class: "expires" }));
  }

  // updateCounter shows a counter's value and, if it has an expiry, the
  // time left: left is /status's expires_in for it (whole seconds, rounded
  // up), now the node's clock (ms).
  function updateCounter(e, [name, value], left, now) {
    e.querySelector("th").textContent = name;
    e.querySelector(".value").textContent = String(value);
    const exp = e.querySelector(".expires");
    if (typeof left === "number") {
      exp.textContent = "in " + duration(left);
      exp.title = "deleted at " + new Date(now + left * 1000).toISOString() + " by the node's clock, unless changed first";
    } else {
      exp.textContent = "";
      exp.removeAttribute("title");
    }
  }

  function render(st) {
    const h = st.history || {};
    const rate = h.changes_per_second || [];
    const history = { rate, behind: h.behind || {}, window: windowText(rate.length, h.step_seconds || 1) };
    document.title = "countd " + st.node;
    $("node").textContent = st.node;
    $("replica").textContent = st.replica;
    $("uptime").textContent = duration(st.uptime_seconds);
    if (st.started) $("uptime").title = "since " + st.started;

    // The node's clock, so that "last seen" does not depend on this one's.
    const now = st.started ? Date.parse(st.started) + st.uptime_seconds * 1000 : Date.now();
    const peers = st.peers || [];
    sync($("peers"), peers, "peer", (p) => p.addr, makePeer, (e, p) => updatePeer(e, p, now, history));
    $("peers-empty").hidden = peers.length > 0;
    const byState = {};
    for (const p of peers) byState[p.state] = (byState[p.state] || 0) + 1;
    $("peers-summary").textContent = Object.keys(byState).sort()
      .map((s) => byState[s] + " " + s).join(", ");

    const counters = Object.entries(st.counters || {}).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const expiresIn = st.expires_in || {};
    sync($("counters"), counters, "counter", (c) => c[0], makeCounter, (e, c) => updateCounter(e, c, expiresIn[c[0]], now));
    $("counters-empty").hidden = counters.length > 0;
    $("counters-table").hidden = counters.length === 0;
    $("counters-table").classList.toggle("no-expiry", !counters.some((c) => c[0] in expiresIn));
    $("counters-summary").textContent = counters.length ? "(" + counters.length + ")" : "";

    renderRate(history);
    $("main").hidden = false;
    $("footer").hidden = false;
  }

  // setFailure shows the banner with why the last fetch failed, or hides it.
  function setFailure(detail) {
    const failed = detail !== null;
    $("banner").hidden = !failed;
    $("banner-detail").textContent = failed ? detail : "";
  }

  // load fetches /status; its error says, for the banner, why it failed.
  async function load() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const headers = { Accept: "application/json" };
      if (token) headers.Authorization = "Bearer " + token;
      const resp = await fetch("status?history=1", { cache: "no-store", signal: abort.signal, headers: headers });
      const text = await resp.text();
      if (resp.status === 401) {
        const err = new Error("GET /status answered 401");
        err.unauthorized = true;
        throw err;
      }
      if (!resp.ok) {
        let msg = text;
        try { msg = JSON.parse(text).error || text; } catch (e) { /* not JSON: show the text */ }
        throw new Error("GET /status answered " + resp.status + ": " + msg);
      }
      return parse(text);
    } catch (err) {
      if (err.name === "AbortError") throw new Error("No answer within " + TIMEOUT_MS / 1000 + " s.");
      if (err instanceof TypeError) throw new Error("Could not connect (" + err.message + ").");
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // askToken shows the token form and stops refreshing until it is sent.
  function askToken() {
    $("token-why").textContent = token
      ? "This node did not accept the client token. Enter another."
      : "This node needs a client token to show its status.";
    $("token-form").hidden = false;
    $("token").focus();
  }

  $("token-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    token = $("token").value.trim();
    if (!token) return;
    storeToken(token);
    $("token").value = "";
    $("token-form").hidden = true;
    refresh();
  });

  async function refresh() {
    try {
      render(await load());
      $("updated").textContent = new Date().toLocaleTimeString();
      setFailure(null);
    } catch (err) {
      if (err.unauthorized) {
        setFailure(null);
        askToken();
        return; // until the form is sent
      }
      setFailure(String(err.message || err));
    }
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();
