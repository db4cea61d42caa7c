// anonstats dashboard: reads the stats API of the collector that serves it
// and draws SVG charts. No third-party code, no network beyond this origin.
// Every value from the API is inserted with textContent or as an attribute,
// never as HTML.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const errors = [];

  function recordError(message) {
    errors.push(String(message));
    const pre = document.getElementById("errors");
    pre.textContent = errors.join("\n");
    pre.hidden = false;
  }
  window.addEventListener("error", (e) => recordError(e.message));
  window.addEventListener("unhandledrejection", (e) => recordError(e.reason));

  // ---------- small DOM helpers ----------

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

  function title(text) {
    return svg("title", {}, text);
  }

  const fmt = new Intl.NumberFormat("en");
  const fmt1 = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
  const pct = (share) => (share === null || share === undefined ? "–" : fmt1.format(share * 100) + "%");
  // Figures the server withholds (k-anonymity) arrive as null.
  const num = (v, f) => (v === null || v === undefined ? "–" : (f || fmt).format(v));

  // ---------- API ----------

  function rowsOf(resp) {
    return Array.isArray(resp) ? resp : resp.rows || [];
  }

  /// A sentence about groups hidden by k-anonymity, or "".
  function suppressionNote(resp, unit) {
    if (!resp || Array.isArray(resp)) return "";
    const s = resp.suppressed || {};
    const folded = s.folded || 0;
    const omitted = s.omitted || 0;
    const k = resp.k;
    const parts = [];
    if (folded) parts.push(`${fmt.format(folded)} group${folded > 1 ? "s" : ""} folded into "other"`);
    if (omitted) parts.push(`${fmt.format(omitted)} left out`);
    if (!parts.length) return "";
    return `${parts.join(", ")}: each backed by fewer than ${k} ${unit || "installs"} (k-anonymity).`;
  }

  async function api(path, params) {
    const query = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== "" && v !== undefined && v !== null) query.set(k, v);
    }
    const res = await fetch(`/api/v1/stats/${path}?${query}`, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (res.status === 401) {
      window.location.assign("/");
      throw new Error("signed out");
    }
    if (!res.ok) {
      let detail = res.statusText;
      try {
        detail = (await res.json()).detail || detail;
      } catch (_) {
        // keep the status text
      }
      throw new Error(`${path}: ${detail}`);
    }
    return res.json();
  }

  // ---------- charts ----------

  /// Horizontal bars: rows of {key, value, label, other}.
  function barChart(container, rows, opts) {
    container.replaceChildren();
    if (!rows.length) {
      container.append(el("p", { class: "empty" }, "No data in this window (or every group was below k)."));
      return;
    }
    // Drawn at the container's pixel width, so that text keeps its size.
    const width = Math.max(280, container.clientWidth || 560);
    const longest = Math.max(...rows.map((r) => String(r.key).length));
    const labelWidth = Math.min(opts.labelWidth || 220, 12 + longest * 6.6);
    const valueWidth = 110;
    const rowH = 22;
    const height = rows.length * rowH + 4;
    const max = Math.max(...rows.map((r) => r.value || 0), opts.max || 0) || 1;
    const plot = width - labelWidth - valueWidth;
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": opts.title, "data-chart": opts.id });
    rows.forEach((r, i) => {
      const y = i * rowH + 2;
      const w = Math.max(1, ((r.value || 0) / max) * plot);
      root.append(
        svg("text", { x: labelWidth - 6, y: y + 14, "text-anchor": "end", class: "label" }, r.key),
        svg(
          "rect",
          {
            x: labelWidth, y: y + 3, width: w, height: rowH - 8, rx: 3,
            class: r.other ? "bar other" : "bar",
            "data-key": r.key, "data-value": r.value,
          },
          title(`${r.key}: ${r.label}`)
        ),
        svg("text", { x: labelWidth + w + 6, y: y + 14 }, r.label)
      );
    });
    container.append(root);
  }

  /// Installs and updates per period, as two area+line series.
  function eventsChart(container, rows, interval) {
    container.replaceChildren();
    const periods = [...new Set(rows.map((r) => r.period))].sort();
    if (!periods.length) {
      container.append(el("p", { class: "empty" }, "No reports in this date range."));
      return;
    }
    const series = { install: new Map(), update: new Map() };
    for (const r of rows) {
      if (series[r.event]) series[r.event].set(r.period, (series[r.event].get(r.period) || 0) + r.reports);
    }
    const width = Math.max(400, container.clientWidth || 1100), height = 260, left = 48, right = 12, top = 10, bottom = 28;
    const max = Math.max(1, ...periods.map((p) => Math.max(series.install.get(p) || 0, series.update.get(p) || 0)));
    const x = (i) => left + (periods.length === 1 ? (width - left - right) / 2 : (i * (width - left - right)) / (periods.length - 1));
    const y = (v) => top + (height - top - bottom) * (1 - v / max);
    const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "Installs and updates over time", "data-chart": "events", "data-interval": interval });
    for (let t = 0; t <= 4; t++) {
      const v = (max * t) / 4;
      root.append(
        svg("line", { x1: left, x2: width - right, y1: y(v), y2: y(v), class: t ? "grid-line" : "axis" }),
        svg("text", { x: left - 6, y: y(v) + 4, "text-anchor": "end" }, fmt.format(Math.round(v)))
      );
    }
    const step = Math.max(1, Math.ceil(periods.length / 10));
    periods.forEach((p, i) => {
      if (i % step === 0 || i === periods.length - 1) {
        root.append(svg("text", { x: x(i), y: height - 8, "text-anchor": "middle" }, p));
      }
    });
    for (const event of ["install", "update"]) {
      const pts = periods.map((p, i) => [x(i), y(series[event].get(p) || 0)]);
      const line = pts.map(([a, b], i) => `${i ? "L" : "M"}${a.toFixed(1)},${b.toFixed(1)}`).join("");
      const area = `${line}L${pts[pts.length - 1][0].toFixed(1)},${y(0)}L${pts[0][0].toFixed(1)},${y(0)}Z`;
      root.append(svg("path", { d: area, class: `area-${event}` }), svg("path", { d: line, class: `series-${event}` }));
      periods.forEach((p, i) => {
        const v = series[event].get(p) || 0;
        root.append(
          svg("circle", { cx: pts[i][0], cy: pts[i][1], r: periods.length > 60 ? 1.5 : 3, class: `dot-${event}`, "data-period": p, "data-event": event, "data-value": v },
            title(`${p} ${event}: ${fmt.format(v)}`))
        );
      });
    }
    container.append(root, el("div", { class: "legend" }, el("span", { class: "install" }, "installs"), el("span", { class: "update" }, "updates")));
  }

  /// A counter's histogram plus its figures.
  function counterBlock(grid, row) {
    const block = el("div", { class: "chart", "data-counter": row.counter });
    grid.append(block);
    block.append(el("h3", {}, row.counter, el("small", {}, `${num(row.instances)} installs`)));
    const buckets = (row.histogram || []).map((b) => ({
      key: b.bucket ?? b.range ?? b.label,
      value: b.instances ?? b.count ?? 0,
      label: fmt.format(b.instances ?? b.count ?? 0),
      other: false,
    }));
    const chart = el("div", {});
    block.append(chart);
    barChart(chart, buckets, { id: `counter-${row.counter}`, title: `${row.counter} histogram` });
    const stats = el("table", { class: "stats", "data-counter-stats": row.counter },
      el("tr", {}, ...["total", "mean", "p50", "p90"].map((h) => el("th", {}, h))),
      el("tr", {},
        el("td", { "data-stat": "total", "data-value": row.total }, num(row.total)),
        el("td", { "data-stat": "mean", "data-value": row.mean }, num(row.mean, fmt1)),
        el("td", { "data-stat": "p50", "data-value": row.p50 }, num(row.p50)),
        el("td", { "data-stat": "p90", "data-value": row.p90 }, num(row.p90))));
    block.append(stats);
  }

  // ---------- page ----------

  const state = { interval: "month", catalog: null };

  function params(extra) {
    return Object.assign(
      {
        product: document.getElementById("product").value,
        from: document.getElementById("from").value,
        to: document.getElementById("to").value,
        active_days: document.getElementById("active_days").value,
      },
      extra || {}
    );
  }

  function card(label, value, key) {
    return el("div", { class: "card" }, el("div", { class: "value", "data-summary": key, "data-value": value }, num(value)), el("div", { class: "label" }, label));
  }

  function note(id, resp, unit) {
    document.getElementById(id).textContent = suppressionNote(resp, unit);
  }

  function shareRows(rows, keyField) {
    return rows.map((r) => ({
      key: r[keyField],
      value: r.instances,
      label: `${num(r.instances)} · ${pct(r.share)}`,
      other: r[keyField] === "other",
    }));
  }

  async function render() {
    const status = document.getElementById("status");
    document.body.dataset.ready = "false";
    status.className = "status";
    status.textContent = "Loading…";
    const p = params();
    const product = state.catalog.products[p.product] || { attributes: {} };
    try {
      const [summary, events, versions, features, counters, upgrades, ...attributes] = await Promise.all([
        api("summary", p),
        api("events", params({ interval: state.interval })),
        api("versions", p),
        api("features", p),
        api("counters", p),
        api("upgrades", p),
        ...Object.keys(product.attributes).map((name) => api(`attributes/${encodeURIComponent(name)}`, p)),
      ]);

      const ev = summary.events || {};
      document.getElementById("summary").replaceChildren(
        card(`active installs (last ${summary.active_days || p.active_days} days)`, summary.active_instances, "active_instances"),
        card("install reports", ev.install || 0, "install"),
        card("update reports", ev.update || 0, "update")
      );
      document.getElementById("privacy").textContent =
        `Groups backed by fewer than ${summary.k} installs (or reports) are never shown. ` +
        "Figures come from anonymised aggregates; no install can be seen on its own.";

      eventsChart(document.getElementById("chart-events"), rowsOf(events), state.interval);
      note("note-events", events, "reports");

      barChart(document.getElementById("chart-versions"), shareRows(rowsOf(versions), "version"), { id: "versions", title: "Versions" });
      note("note-versions", versions);

      barChart(
        document.getElementById("chart-features"),
        rowsOf(features).map((r) => ({ key: r.feature, value: r.share, label: `${pct(r.share)} · ${num(r.enabled)} of ${num(r.instances)}` })),
        { id: "features", title: "Feature adoption", max: 1 }
      );
      note("note-features", features);

      const attrGrid = document.getElementById("attributes");
      attrGrid.replaceChildren();
      Object.keys(product.attributes).forEach((name, i) => {
        const chart = el("div", {});
        const block = el("div", { class: "chart" }, el("h3", {}, name), chart);
        attrGrid.append(block);
        barChart(chart, shareRows(rowsOf(attributes[i]), "value"), { id: `attribute-${name}`, title: name });
        block.append(el("p", { class: "note" }, suppressionNote(attributes[i])));
      });

      const counterGrid = document.getElementById("counters");
      counterGrid.replaceChildren();
      for (const row of rowsOf(counters)) counterBlock(counterGrid, row);
      if (!rowsOf(counters).length) counterGrid.append(el("p", { class: "empty" }, "No counters to show."));
      const cn = suppressionNote(counters);
      if (cn) counterGrid.append(el("p", { class: "note" }, cn));

      barChart(
        document.getElementById("chart-upgrades"),
        rowsOf(upgrades).map((r) => ({ key: `${r.from} → ${r.to}`, value: r.reports, label: fmt.format(r.reports), other: r.from === "other" })),
        { id: "upgrades", title: "Upgrade paths" }
      );
      note("note-upgrades", upgrades, "reports");

      status.textContent = `${p.product} · ${p.from || "…"} to ${p.to || "today"} · k = ${summary.k}`;
    } catch (e) {
      status.className = "status error";
      status.textContent = `Could not load statistics: ${e.message}`;
      if (e.message !== "signed out") recordError(e.message);
    } finally {
      document.body.dataset.ready = "true";
    }
  }

  function setInterval_(interval) {
    state.interval = interval;
    for (const b of document.querySelectorAll("[data-interval]")) {
      b.setAttribute("aria-pressed", String(b.dataset.interval === interval));
    }
  }

  async function start() {
    const res = await fetch("/api/v1/catalog", { headers: { Accept: "application/json" } });
    state.catalog = await res.json();
    const select = document.getElementById("product");
    for (const name of Object.keys(state.catalog.products)) select.append(el("option", { value: name }, name));

    const url = new URLSearchParams(window.location.search);
    if (url.get("product")) select.value = url.get("product");
    // The range and window the collector itself applies, on its own UTC day:
    // the browser's clock and time zone play no part, so the page asks
    // exactly what the API, the CLI and the SQL views answer by default.
    const defaults = await api("summary", {
      product: select.value,
      from: url.get("from"),
      to: url.get("to"),
      active_days: url.get("active_days"),
    });
    document.getElementById("from").value = defaults.from;
    document.getElementById("to").value = defaults.to;
    document.getElementById("active_days").value = defaults.active_days;
    setInterval_(url.get("interval") || "month");

    document.getElementById("controls").addEventListener("change", render);
    document.getElementById("controls").addEventListener("submit", (e) => {
      e.preventDefault();
      render();
    });
    for (const b of document.querySelectorAll("[data-interval]")) {
      b.addEventListener("click", () => {
        setInterval_(b.dataset.interval);
        render();
      });
    }
    await render();
    let resizeTimer;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(render, 250);
    });
  }

  start().catch((e) => {
    recordError(e.message);
    document.body.dataset.ready = "true";
  });
})();
