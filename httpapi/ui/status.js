"use strict";
// The status page: fetch /status every second and show it. Data reaches the
// DOM only through textContent and attributes, never as HTML.
(function () {
  const REFRESH_MS = 1000; // between the end of one fetch and the next
  const TIMEOUT_MS = 3000; // a fetch that takes longer counts as failed

  const $ = (id) => document.getElementById(id);

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
    return node("li", { class: "peer" },
      node("div", { class: "head" }, node("span", { class: "addr" }), node("span", { class: "state" })),
      node("dl", null,
        node("div", null, node("dt", null, "last seen"), node("dd", { class: "last-seen" })),
        node("div", null, node("dt", null, "behind"), node("dd", { class: "behind" }))));
  }

  function updatePeer(e, p, now) {
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
  }

  function makeCounter() {
    return node("tr", null, node("th", { scope: "row" }), node("td", { class: "value" }));
  }

  function updateCounter(e, [name, value]) {
    e.querySelector("th").textContent = name;
    e.querySelector(".value").textContent = String(value);
  }

  function render(st) {
    document.title = "countd " + st.node;
    $("node").textContent = st.node;
    $("replica").textContent = st.replica;
    $("uptime").textContent = duration(st.uptime_seconds);
    if (st.started) $("uptime").title = "since " + st.started;

    // The node's clock, so that "last seen" does not depend on this one's.
    const now = st.started ? Date.parse(st.started) + st.uptime_seconds * 1000 : Date.now();
    const peers = st.peers || [];
    sync($("peers"), peers, "peer", (p) => p.addr, makePeer, (e, p) => updatePeer(e, p, now));
    $("peers-empty").hidden = peers.length > 0;
    const byState = {};
    for (const p of peers) byState[p.state] = (byState[p.state] || 0) + 1;
    $("peers-summary").textContent = Object.keys(byState).sort()
      .map((s) => byState[s] + " " + s).join(", ");

    const counters = Object.entries(st.counters || {}).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    sync($("counters"), counters, "counter", (c) => c[0], makeCounter, updateCounter);
    $("counters-empty").hidden = counters.length > 0;
    $("counters").parentElement.hidden = counters.length === 0;
    $("counters-summary").textContent = counters.length ? "(" + counters.length + ")" : "";
  }

  // setFailure shows the banner with why the last fetch failed, or hides it.
  function setFailure(detail) {
    const failed = detail !== null;
    $("banner").hidden = !failed;
    $("banner-detail").textContent = failed ? detail : "";
    document.body.classList.toggle("stale", failed);
  }

  // load fetches /status; its error says, for the banner, why it failed.
  async function load() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    try {
      const resp = await fetch("status", { cache: "no-store", signal: abort.signal, headers: { Accept: "application/json" } });
      const text = await resp.text();
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

  async function refresh() {
    try {
      render(await load());
      $("updated").textContent = new Date().toLocaleTimeString();
      setFailure(null);
    } catch (err) {
      setFailure(String(err.message || err));
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
