// anonstats public page: reads the latest public release of this origin
// and draws SVG bar charts with each figure's noise as an interval of
// ±2 sigma. No third-party code, no network beyond this origin. Every value
// is inserted with textContent or as an attribute, never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const c of children) node.append(c);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    for (const c of children) node.append(c);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) node.setAttribute(k, String(v));
    }
  }

  const fmt = new Intl.NumberFormat("en");
  const num = (v) => (v === null || v === undefined ? "–" : fmt.format(v));

  /// Horizontal bars with a ±2 sigma whisker: rows of {key, value, sigma}.
  function barChart(container, rows, id) {
    container.replaceChildren();
    if (!rows.length) {
      container.append(el("p", { class: "empty" }, "No figure of this release is above the threshold."));
      return;
    }
    const width = Math.max(280, container.clientWidth || 560);
    const longest = Math.max(...rows.map((r) => String(r.key).length));
    const labelWidth = Math.min(220, 12 + longest * 6.6);
    const valueWidth = 130;
    const rowH = 22;
    const height = rows.length * rowH + 4;
    const max = Math.max(...rows.map((r) => r.value + 2 * r.sigma)) || 1;
    const plot = width - labelWidth - valueWidth;
    const x = (v) => labelWidth + (Math.max(0, v) / max) * plot;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-chart": id });
    rows.forEach((r, i) => {
      const y = i * rowH + 2;
      const half = 2 * r.sigma;
      const label = `${num(r.value)} ± ${num(Math.round(half))}`;
      root.append(
        svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", class: "label" }, r.key),
        svg("rect", {
          x: labelWidth, y: y + 3, width: Math.max(1, x(r.value) - labelWidth), height: rowH - 8, rx: 3,
          class: "bar", "data-key": r.key, "data-value": r.value,
        }, svg("title", {}, `${r.key}: ${label} (±2 sigma)`)),
        svg("line", { x1: x(r.value - half), x2: x(r.value + half), y1: y + 10, y2: y + 10, class: "whisker", stroke: "currentColor" }),
        svg("text", { x: x(r.value + half) + 6, y: y + 14 }, label)
      );
    });
    container.append(root);
  }

  async function start() {
    const status = document.getElementById("status");
    const res = await fetch("/api/v1/public/releases/latest", { headers: { Accept: "application/json" } });
    if (res.status === 404) {
      status.textContent = "No release has been published yet.";
      document.body.dataset.ready = "true";
      return;
    }
    if (!res.ok) throw new Error(`latest release: ${res.statusText}`);
    const r = await res.json();
    const p = r.parameters;
    const s = p.sigma;
    status.textContent = `Release of ${r.date} for ${r.product}.`;
    document.getElementById("download-csv").href = `/api/v1/public/releases/${r.date}/release.csv`;
    document.getElementById("download-json").href = `/api/v1/public/releases/${r.date}`;
    document.getElementById("privacy").textContent =
      `Every figure is a true count plus discrete Gaussian noise of scale sigma = ${s.toFixed(2)} ` +
      `(zCDP, rho ${p.rho.toFixed(6)} for this release, ${p.budget_per_365_days} per 365 days). ` +
      `Bars show ±2 sigma. Counts below ${num(p.threshold)} (${p.threshold_sigmas} sigma) are not published.`;

    const cards = document.getElementById("summary");
    cards.replaceChildren(...r.active_installs.map((w) =>
      el("div", { class: "card" }, el("span", { class: "label" }, `Active in ${w.window_days} days`),
        el("strong", {}, w.installs === null ? "–" : `${num(w.installs)} ± ${num(Math.round(2 * s))}`))));

    barChart(document.getElementById("chart-versions"), r.versions.map((v) => ({ key: v.version, value: v.installs, sigma: s })), "versions");
    // Releases of format 1 have no upgrades and no updated figures.
    barChart(document.getElementById("chart-upgrades"),
      (r.upgrades || []).map((u) => ({ key: `${u.from_version} → ${u.to_version}`, value: u.installs, sigma: s })), "upgrades");
    barChart(document.getElementById("chart-features"),
      r.features.filter((f) => f.enabled !== null).map((f) => ({ key: f.feature, value: f.enabled, sigma: s })), "features");

    const attributes = document.getElementById("attributes");
    attributes.replaceChildren();
    for (const a of r.attributes) {
      const box = el("div", { class: "chart" });
      attributes.append(el("div", {}, el("h3", {}, a.attribute), box));
      barChart(box, a.values.map((v) => ({ key: v.value, value: v.installs, sigma: s })), `attribute-${a.attribute}`);
    }
    const counters = document.getElementById("counters");
    counters.replaceChildren();
    for (const c of r.counters) {
      const box = el("div", { class: "chart" });
      counters.append(el("div", {}, el("h3", {}, c.counter), box));
      barChart(box, c.histogram.map((b) => ({ key: b.bucket, value: b.installs, sigma: s })), `counter-${c.counter}`);
    }
    const monthly = r.events.monthly;
    barChart(document.getElementById("chart-first-seen"),
      monthly.filter((m) => m.first_seen !== null).map((m) => ({ key: m.period.slice(0, 7), value: m.first_seen, sigma: s })), "first-seen");
    barChart(document.getElementById("chart-last-seen"),
      monthly.filter((m) => m.last_seen !== null).map((m) => ({ key: m.period.slice(0, 7), value: m.last_seen, sigma: s })), "last-seen");
    barChart(document.getElementById("chart-updated"),
      monthly.filter((m) => m.updated != null).map((m) => ({ key: m.period.slice(0, 7), value: m.updated, sigma: s })), "updated");
    document.body.dataset.ready = "true";
  }

  start().catch((e) => {
    const pre = document.getElementById("errors");
    pre.textContent = String(e);
    pre.hidden = false;
  });
})();
