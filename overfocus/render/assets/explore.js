// overfocus explorer: one epoch slider over every probe image, run and method. No library, no network.
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("explorer-data").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var SVGNS = "http://www.w3.org/2000/svg";
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"];
  var DASHES = ["", "5 3", "2 2", "8 3 2 3"];
  var nEpochs = D.epochs.length;
  var state = { t: 0, layout: D.runs.length > 1 ? "runs" : "methods", run: 0, runA: 0, runB: Math.min(1, D.runs.length - 1),
                cls: "", correct: "all", chosen: null, timer: null };
  var photos = [];      // per probe: HTMLImageElement
  var sprites = [];     // [run][method][probe] -> {values: Uint8Array, colour: canvas, w, h}
  var diffs = {};       // "a|b|m|p" -> canvas (diverging colours, all epochs stacked)
  var cursors = [];     // SVG cursor lines of every curve and sparkline

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var k in attrs || {}) { if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]); }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    for (var k in attrs || {}) { if (attrs[k] !== undefined && attrs[k] !== null) e.setAttribute(k, attrs[k]); }
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function methodIndex(name) { for (var i = 0; i < D.methods.length; i++) { if (D.methods[i].name === name) return i; } return -1; }
  function pct(v) { return v === null || v === undefined ? "n/a" : (100 * v).toFixed(0) + "%"; }
  function fmt(v) { return v === null || v === undefined ? "n/a" : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3)); }

  // ---- decoding: photos and the stacked grayscale maps, coloured once with the page's lookup table ----
  function loadImage(src) {
    return new Promise(function (resolve, reject) {
      var img = new Image();
      img.onload = function () { resolve(img); };
      img.onerror = function () { reject(new Error("an embedded image did not decode")); };
      img.src = src;
    });
  }
  function toSprite(img) {
    var c = document.createElement("canvas");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    var ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(img, 0, 0);
    var rgba = ctx.getImageData(0, 0, c.width, c.height);
    var n = c.width * c.height, values = new Uint8Array(n), lut = D.lut;
    var px = rgba.data;
    for (var i = 0; i < n; i++) {
      var v = px[4 * i]; values[i] = v;
      px[4 * i] = lut[3 * v]; px[4 * i + 1] = lut[3 * v + 1]; px[4 * i + 2] = lut[3 * v + 2]; px[4 * i + 3] = 255;
    }
    ctx.putImageData(rgba, 0, 0);
    return { values: values, colour: c, w: c.width, h: c.height / nEpochs };
  }
  function diffSprite(a, b, m, p) {
    var key = a + "|" + b + "|" + m + "|" + p;
    if (diffs[key]) return diffs[key];
    var A = sprites[a][m][p], B = sprites[b][m][p];
    var c = document.createElement("canvas");
    c.width = A.w; c.height = A.h * nEpochs;
    var ctx = c.getContext("2d");
    var out = ctx.createImageData(c.width, c.height), px = out.data, lut = D.diff_lut;
    for (var i = 0; i < A.values.length; i++) {
      var idx = Math.round((A.values[i] - B.values[i] + 255) / 2);   // -1..1 -> 0..255
      px[4 * i] = lut[3 * idx]; px[4 * i + 1] = lut[3 * idx + 1]; px[4 * i + 2] = lut[3 * idx + 2]; px[4 * i + 3] = 255;
    }
    ctx.putImageData(out, 0, 0);
    diffs[key] = c;
    return c;
  }
  function decodeAll() {
    var jobs = D.probes.map(function (p, i) { return loadImage(p.image).then(function (img) { photos[i] = img; }); });
    D.runs.forEach(function (run, r) {
      sprites[r] = D.methods.map(function () { return []; });
      D.methods.forEach(function (m, k) {
        run.sprites[m.name].forEach(function (src, p) {
          jobs.push(loadImage(src).then(function (img) { sprites[r][k][p] = toSprite(img); }));
        });
      });
    });
    return Promise.all(jobs);
  }

  // ---- the image cells ------------------------------------------------------------------------------
  var panels = [];  // {canvas, ctx, kind: "map"|"diff", run, runB, m, p}
  var captions = []; // {node, run, p}
  function panelSize(p) {
    var s = D.probes[p].size, w = D.panel;
    return [w, Math.max(1, Math.round(w * s[1] / s[0]))];
  }
  function addPanel(grid, p, kind, r, m, rb) {
    var wh = panelSize(p);
    var c = el("canvas", { width: wh[0], height: wh[1], "data-run": r, "data-method": D.methods[m].name, "data-probe": p,
                           "data-kind": kind, "aria-label": D.probes[p].id });
    c.style.width = wh[0] + "px"; c.style.height = wh[1] + "px";
    grid.appendChild(c);
    panels.push({ canvas: c, ctx: c.getContext("2d"), kind: kind, run: r, runB: rb, m: m, p: p });
  }
  function addCaption(grid, r, p, span) {
    var node = el("div", { "class": "caption" });
    if (span > 1) node.style.gridColumn = "span " + span;
    grid.appendChild(node);
    captions.push({ node: node, run: r, p: p });
  }
  function buildCells() {
    var box = $("images");
    box.textContent = ""; panels = []; captions = [];
    D.probes.forEach(function (probe, p) {
      var cell = el("div", { "class": "cell", "data-probe": p });
      var title = el("div", { "class": "cell-title", title: probe.id });
      title.appendChild(document.createTextNode(probe["class"] + " "));
      title.appendChild(el("span", { "class": "muted" }, probe.id));
      cell.appendChild(title);
      var grid = el("div", { "class": "grid" });
      var wh = panelSize(p), cols;
      if (state.layout === "runs") {
        cols = D.methods.length;
        grid.style.gridTemplateColumns = "14px repeat(" + cols + ", " + wh[0] + "px)";
        grid.appendChild(el("div"));
        D.methods.forEach(function (m) { grid.appendChild(el("div", { "class": "col-head" }, m.title)); });
        D.runs.forEach(function (run, r) {
          grid.appendChild(el("div", { "class": "row-head", title: run.label }, run.label));
          D.methods.forEach(function (m, k) { addPanel(grid, p, "map", r, k); });
          grid.appendChild(el("div"));
          addCaption(grid, r, p, cols);
        });
      } else if (state.layout === "methods") {
        cols = D.methods.length;
        grid.style.gridTemplateColumns = "repeat(" + cols + ", " + wh[0] + "px)";
        D.methods.forEach(function (m) { grid.appendChild(el("div", { "class": "col-head" }, m.title)); });
        D.methods.forEach(function (m, k) { addPanel(grid, p, "map", state.run, k); });
        addCaption(grid, state.run, p, cols);
      } else {
        cols = D.methods.length;
        grid.style.gridTemplateColumns = "repeat(" + cols + ", " + wh[0] + "px)";
        D.methods.forEach(function (m) { grid.appendChild(el("div", { "class": "col-head" }, m.title + ": A \u2212 B")); });
        D.methods.forEach(function (m, k) { addPanel(grid, p, "diff", state.runA, k, state.runB); });
        addCaption(grid, state.runA, p, cols);
        addCaption(grid, state.runB, p, cols);
      }
      cell.appendChild(grid);
      cell.addEventListener("click", function () { choose(p); });
      box.appendChild(cell);
    });
  }
  function drawBoxes(ctx, p, w, h) {
    ctx.strokeStyle = "rgb(0,255,0)"; ctx.lineWidth = Math.max(1, Math.round(w / 96));
    D.probes[p].boxes.forEach(function (b) {
      ctx.strokeRect(b[0] * w + 0.5, b[1] * h + 0.5, (b[2] - b[0]) * w - 1, (b[3] - b[1]) * h - 1);
    });
  }
  function drawPanel(q) {
    var t = state.t, ctx = q.ctx, w = q.canvas.width, h = q.canvas.height;
    ctx.imageSmoothingEnabled = true; ctx.imageSmoothingQuality = "low";  // bilinear: upscaling, cheap in software
    if (q.kind === "map") {
      var s = sprites[q.run][q.m][q.p];
      ctx.globalAlpha = 1; ctx.drawImage(photos[q.p], 0, 0, w, h);
      ctx.globalAlpha = D.alpha; ctx.drawImage(s.colour, 0, t * s.h, s.w, s.h, 0, 0, w, h);
      ctx.globalAlpha = 1;
      drawBoxes(ctx, q.p, w, h);
      if (D.runs[q.run].empty[D.methods[q.m].name][t][q.p]) {
        ctx.font = "bold 13px system-ui, sans-serif"; ctx.fillStyle = "#fff"; ctx.textBaseline = "top";
        ctx.fillText("empty map", 4, 3);
      }
    } else {
      var A = sprites[q.run][q.m][q.p], c = diffSprite(q.run, q.runB, q.m, q.p);
      ctx.globalAlpha = 1; ctx.drawImage(c, 0, t * A.h, A.w, A.h, 0, 0, w, h);
      drawBoxes(ctx, q.p, w, h);
    }
  }
  function drawCaption(c) {
    var run = D.runs[c.run], pred = run.pred[state.t][c.p], conf = run.conf[state.t][c.p];
    var right = pred === D.probes[c.p].label;
    var name = run.classes[pred] !== undefined ? run.classes[pred] : String(pred);
    c.node.textContent = (D.runs.length > 1 ? run.label + ": " : "") + name + " " + pct(conf);
    c.node.className = "caption " + (right ? "right" : "wrong");
  }

  // ---- filters ----------------------------------------------------------------------------------------
  function shownRuns() {
    if (state.layout === "methods") return [state.run];
    if (state.layout === "diff") return [state.runA, state.runB];
    return D.runs.map(function (_, r) { return r; });
  }
  function passes(p) {
    if (state.cls && D.probes[p]["class"] !== state.cls) return false;
    if (state.correct === "all") return true;
    var rights = shownRuns().map(function (r) { return D.runs[r].pred[state.t][p] === D.probes[p].label; });
    var allRight = rights.every(function (x) { return x; });
    return state.correct === "right" ? allRight : !allRight;
  }
  function applyFilters() {
    var any = false;
    Array.prototype.forEach.call(document.querySelectorAll("#images .cell"), function (cell) {
      var ok = passes(+cell.getAttribute("data-probe"));
      cell.hidden = !ok; any = any || ok;
    });
    $("none-shown").hidden = any;
  }

  // ---- headers and the epoch ------------------------------------------------------------------------
  function drawHeaders() {
    var box = $("headers"); box.textContent = "";
    shownRuns().forEach(function (r) {
      var lines = D.runs[r].headers[state.t], div = el("div", { "class": "h-run" });
      lines.forEach(function (line, i) { div.appendChild(el("div", { "class": i === 0 ? "h-title" : "" }, line)); });
      box.appendChild(div);
    });
  }
  function setEpoch(t) {
    t = Math.max(0, Math.min(nEpochs - 1, t | 0));
    state.t = t;
    $("slider").value = String(t);
    $("epoch-value").textContent = String(D.epochs[t]);
    for (var i = 0; i < panels.length; i++) drawPanel(panels[i]);
    for (var j = 0; j < captions.length; j++) drawCaption(captions[j]);
    for (var k = 0; k < cursors.length; k++) cursors[k].move(D.epochs[t]);
    drawHeaders();
    if (state.correct !== "all") applyFilters();
    if (state.chosen !== null) drawDetailTable();
  }

  // ---- curves -----------------------------------------------------------------------------------------
  var W = 300, H = 170, M = { l: 44, r: 8, t: 8, b: 26 };
  function extent(panel) {
    var lo = Infinity, hi = -Infinity;
    panel.series.forEach(function (s) {
      [s.mean, s.lo, s.hi].forEach(function (arr) {
        (arr || []).forEach(function (v) { if (v !== null) { lo = Math.min(lo, v); hi = Math.max(hi, v); } });
      });
    });
    if (!isFinite(lo)) { lo = 0; hi = 1; }
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    var pad = 0.06 * (hi - lo);
    lo -= pad; hi += pad;
    var r = panel.range || [];
    if (r[0] !== null && r[0] !== undefined) lo = Math.max(lo, r[0]);
    if (r[1] !== null && r[1] !== undefined) hi = Math.min(hi, r[1]);
    return [lo, hi];
  }
  function ticks(lo, hi, n) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    [1, 2, 5, 10].some(function (m) { if ((hi - lo) / (step * m) <= n) { step *= m; return true; } return false; });
    var out = [];
    for (var v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) out.push(+v.toFixed(10));
    return out;
  }
  function chart(width, height, margin, xs, yr, label) {
    var svg = sv("svg", { width: width, height: height, role: "img", "aria-label": label });
    var x0 = xs[0], x1 = xs[xs.length - 1] === x0 ? x0 + 1 : xs[xs.length - 1];
    var X = function (e) { return margin.l + (e - x0) / (x1 - x0) * (width - margin.l - margin.r); };
    var Y = function (v) { return height - margin.b - (v - yr[0]) / (yr[1] - yr[0]) * (height - margin.t - margin.b); };
    return { svg: svg, X: X, Y: Y };
  }
  function axes(c, width, height, margin, xs, yr, small) {
    ticks(yr[0], yr[1], small ? 2 : 4).forEach(function (v) {
      c.svg.appendChild(sv("line", { x1: margin.l, x2: width - margin.r, y1: c.Y(v), y2: c.Y(v), "class": "gridline" }));
      c.svg.appendChild(sv("text", { x: margin.l - 4, y: c.Y(v) + 3, "text-anchor": "end" }, +v.toPrecision(3) + ""));
    });
    var xt = ticks(xs[0], xs[xs.length - 1] === xs[0] ? xs[0] + 1 : xs[xs.length - 1], small ? 3 : 6)
      .filter(function (e) { return Math.abs(e - Math.round(e)) < 1e-9 && e <= xs[xs.length - 1]; });
    xt.forEach(function (e) {
      c.svg.appendChild(sv("text", { x: c.X(e), y: height - margin.b + 12, "text-anchor": "middle" }, String(e)));
    });
    c.svg.appendChild(sv("line", { x1: margin.l, x2: width - margin.r, y1: height - margin.b, y2: height - margin.b, "class": "axis" }));
    c.svg.appendChild(sv("line", { x1: margin.l, x2: margin.l, y1: margin.t, y2: height - margin.b, "class": "axis" }));
    if (!small) c.svg.appendChild(sv("text", { x: width - margin.r, y: height - 2, "text-anchor": "end" }, "epoch"));
  }
  function path(c, epochs, values) {
    var d = "", pen = false;
    epochs.forEach(function (e, i) {
      var v = values[i];
      if (v === null) { pen = false; return; }
      d += (pen ? "L" : "M") + c.X(e).toFixed(1) + "," + c.Y(v).toFixed(1);
      pen = true;
    });
    return d;
  }
  function band(c, s) {
    var top = "", bottom = [];
    s.epochs.forEach(function (e, i) {
      if (s.lo[i] === null || s.hi[i] === null) return;
      top += (top ? "L" : "M") + c.X(e).toFixed(1) + "," + c.Y(s.hi[i]).toFixed(1);
      bottom.unshift("L" + c.X(e).toFixed(1) + "," + c.Y(s.lo[i]).toFixed(1));
    });
    return top ? top + bottom.join("") + "Z" : "";
  }
  function addCursor(c, height, margin) {
    var line = sv("line", { x1: c.X(D.epochs[0]), x2: c.X(D.epochs[0]), y1: margin.t, y2: height - margin.b, "class": "cursor" });
    c.svg.appendChild(line);
    cursors.push({ node: line, move: function (e) { line.setAttribute("x1", c.X(e)); line.setAttribute("x2", c.X(e)); } });
  }
  function seekOnClick(c) {
    c.svg.addEventListener("click", function (ev) {
      var box = c.svg.getBoundingClientRect(), x = ev.clientX - box.left, best = 0;
      D.epochs.forEach(function (e, i) { if (Math.abs(c.X(e) - x) < Math.abs(c.X(D.epochs[best]) - x)) best = i; });
      setEpoch(best);
    });
  }
  function seriesStyle(s) {
    var k = s.method === "model" || s.method === "run" ? 0 : methodIndex(s.method);
    return { stroke: COLORS[s.run % COLORS.length], dash: DASHES[Math.max(0, k) % DASHES.length] };
  }
  function curvePanel(panel) {
    var box = el("div", { "class": "curve", "data-metric": panel.metric });
    var title = el("div", { "class": "curve-title" }, panel.title + " ");
    if (panel.unit) title.appendChild(el("span", { "class": "muted" }, "(" + panel.unit + ")"));
    box.appendChild(title);
    var yr = extent(panel), c = chart(W, H, M, D.epochs, yr, panel.title);
    axes(c, W, H, M, D.epochs, yr, false);
    panel.series.forEach(function (s) {
      var st = seriesStyle(s);
      if (s.lo && s.hi) {
        var b = band(c, s);
        if (b) c.svg.appendChild(sv("path", { d: b, fill: st.stroke, "fill-opacity": 0.15, stroke: "none" }));
      }
      c.svg.appendChild(sv("path", { d: path(c, s.epochs, s.mean), fill: "none", stroke: st.stroke, "stroke-width": 1.6,
                                     "stroke-dasharray": st.dash || null, "data-run": s.run, "data-method": s.method }));
    });
    marks(c, H, M, panel);
    addCursor(c, H, M);
    seekOnClick(c);
    box.appendChild(c.svg);
    return box;
  }
  function marks(c, height, margin, panel) {
    // the onset peak of each shown run and method: a dashed line; on the onset's own measure, a dot on the curve
    D.runs.forEach(function (run, r) {
      Object.keys(run.onset).forEach(function (m) {
        var e = run.onset[m];
        if (D.epochs.indexOf(e) < 0) return;
        c.svg.appendChild(sv("line", { x1: c.X(e), x2: c.X(e), y1: margin.t, y2: height - margin.b, "class": "onset-line",
                                       stroke: COLORS[r % COLORS.length] }));
        if (panel && panel.metric === run.onset_measure) {
          panel.series.forEach(function (s) {
            var i = s.epochs.indexOf(e);
            if (s.run === r && s.method === m && i >= 0 && s.mean[i] !== null) {
              c.svg.appendChild(sv("circle", { cx: c.X(e), cy: c.Y(s.mean[i]), r: 4, fill: "#fff", stroke: COLORS[r % COLORS.length],
                                               "stroke-width": 2 }));
            }
          });
        }
      });
      (run.select ? run.select.epochs : []).forEach(function (e) {
        if (D.epochs.indexOf(e) < 0) return;
        var x = c.X(e), y = height - margin.b;
        c.svg.appendChild(sv("path", { d: "M" + x + "," + (y - 7) + "l4,7l-8,0z", "class": "front-tick",
                                       fill: run.select.knee === e ? "#111" : null }));
      });
    });
  }
  function buildCurves() {
    D.curves.forEach(function (panel) {
      $(panel.group === "main" ? "curves" : "other-curves").appendChild(curvePanel(panel));
    });
    if (!D.curves.some(function (p) { return p.group !== "main"; })) $("other-curves-box").hidden = true;
    var leg = $("curve-legend");
    D.runs.forEach(function (run, r) {
      D.methods.forEach(function (m, k) {
        var item = el("span"), s = sv("svg", { width: 28, height: 10 });
        s.appendChild(sv("line", { x1: 0, x2: 28, y1: 5, y2: 5, stroke: COLORS[r % COLORS.length], "stroke-width": 2,
                                   "stroke-dasharray": DASHES[k % DASHES.length] || null }));
        item.appendChild(s);
        item.appendChild(document.createTextNode(" " + (D.runs.length > 1 ? run.label + ", " : "") + m.title));
        leg.appendChild(item);
      });
    });
    var notes = ["black line: the slider's epoch", "dashed vertical: overfocus onset (epoch of the widest non-degenerate area ratio), a circle on its curve"];
    var sel = D.runs.filter(function (r) { return r.select; });
    if (sel.length) notes.push("triangles: Pareto-optimal epochs over " + sel[0].select.objectives.join(", ") +
                               " (overfocus select)");
    notes.push("model-level curves (one per run) are solid; accuracies and gap come from each run's metrics.jsonl");
    $("marks-note").textContent = notes.join("; ") + ".";
  }

  // ---- the marks strip under the slider ---------------------------------------------------------------
  function marksLegend() {
    var box = $("marks-legend"), parts = [];
    box.textContent = "";
    var anyOnset = D.runs.some(function (r) { return Object.keys(r.onset).length; });
    var anySelect = D.runs.some(function (r) { return r.select && r.select.epochs.length; });
    if (anyOnset) parts.push(["onset", "\u25bc overfocus onset"]);
    if (anySelect) parts.push(["front", "\u25b2 Pareto-optimal epochs (overfocus select; black: the knee)"]);
    parts.forEach(function (p, i) {
      if (i) box.appendChild(document.createTextNode("   "));
      box.appendChild(el("span", { "class": p[0] }, p[1]));
    });
    if (parts.length) box.appendChild(document.createTextNode("; click a mark to go there"));
  }
  function buildMarks() {
    var svg = $("marks"), slider = $("slider");
    svg.textContent = "";
    var sb = slider.getBoundingClientRect(), pb = svg.getBoundingClientRect();
    var thumb = 8, x0 = sb.left - pb.left + thumb, x1 = sb.right - pb.left - thumb;
    var X = function (t) { return nEpochs > 1 ? x0 + t / (nEpochs - 1) * (x1 - x0) : x0; };
    var mark = function (t, cls, shape, tip) {
      var node = sv("path", { d: shape(X(t)), "class": "mark " + cls });
      node.appendChild(sv("title", {}, tip));
      node.addEventListener("click", function () { setEpoch(t); });
      svg.appendChild(node);
    };
    D.runs.forEach(function (run) {
      var who = D.runs.length > 1 ? run.label + ": " : "";
      Object.keys(run.onset).forEach(function (m) {
        var t = D.epochs.indexOf(run.onset[m]);
        if (t >= 0) mark(t, "onset", function (x) { return "M" + (x - 5) + ",1l10,0l-5,8z"; },
                         who + "onset (" + D.methods[methodIndex(m)].title + ") at epoch " + run.onset[m]);
      });
      if (run.select) run.select.epochs.forEach(function (e) {
        var t = D.epochs.indexOf(e);
        var knee = run.select.knee === e;
        if (t >= 0) mark(t, knee ? "knee" : "front", function (x) { return "M" + x + ",10l5,9l-10,0z"; },
                         who + "Pareto-optimal epoch " + e + (knee ? " (knee)" : ""));
      });
    });
  }

  // ---- the detail panel -------------------------------------------------------------------------------
  function choose(p) {
    state.chosen = p;
    Array.prototype.forEach.call(document.querySelectorAll("#images .cell"), function (c) {
      c.classList.toggle("chosen", +c.getAttribute("data-probe") === p);
    });
    $("detail-hint").hidden = true;
    var body = $("detail-body"), probe = D.probes[p];
    body.textContent = "";
    body.appendChild(el("p", {}, probe["class"] + " (class " + probe.label + "), image " + probe.id));
    body.appendChild(el("p", { "class": "muted" }, "box (x0, y0, x1, y1 in " + probe.size[0] + "\u00d7" + probe.size[1] +
      " model-input pixels): " + (probe.boxes_px.length ? probe.boxes_px.map(function (b) { return "(" + b.join(", ") + ")"; }).join(" ") : "none")));
    body.appendChild(el("table", { id: "detail-table" }));
    drawDetailTable();
    D.runs.forEach(function (run, r) {
      D.methods.forEach(function (m) {
        var values = D.image_curves[r][m.name][p];
        body.appendChild(el("p", { "class": "spark-title" }, (D.runs.length > 1 ? run.label + ", " : "") + m.title + ": " +
                            D.image_metric + " of this image"));
        body.appendChild(sparkline(values, r));
      });
    });
  }
  function drawDetailTable() {
    var table = $("detail-table"), p = state.chosen;
    if (!table) return;
    table.textContent = "";
    var head = el("tr");
    ["run", "prediction at epoch " + D.epochs[state.t], "confidence"].forEach(function (h) { head.appendChild(el("th", {}, h)); });
    table.appendChild(head);
    D.runs.forEach(function (run) {
      var pred = run.pred[state.t][p], tr = el("tr");
      tr.appendChild(el("td", {}, run.label));
      var cell = el("td", { "class": pred === D.probes[p].label ? "caption right" : "caption wrong" },
                    (run.classes[pred] !== undefined ? run.classes[pred] : pred) + (pred === D.probes[p].label ? " (right)" : " (wrong)"));
      cell.style.textAlign = "left";
      tr.appendChild(cell);
      tr.appendChild(el("td", {}, pct(run.conf[state.t][p])));
      table.appendChild(tr);
    });
  }
  function sparkline(values, r) {
    var w = 290, h = 80, m = { l: 36, r: 6, t: 6, b: 18 };
    var finite = values.filter(function (v) { return v !== null; });
    var lo = finite.length ? Math.min.apply(null, finite) : 0, hi = finite.length ? Math.max.apply(null, finite) : 1;
    if (hi - lo < 1e-9) { lo -= 0.05; hi += 0.05; }
    var c = chart(w, h, m, D.epochs, [lo, hi], "image curve");
    axes(c, w, h, m, D.epochs, [lo, hi], true);
    c.svg.appendChild(sv("path", { d: path(c, D.epochs, values), fill: "none", stroke: COLORS[r % COLORS.length], "stroke-width": 1.6 }));
    addCursor(c, h, m);
    cursors[cursors.length - 1].move(D.epochs[state.t]);
    seekOnClick(c);
    return c.svg;
  }

  // ---- controls -----------------------------------------------------------------------------------------
  function option(select, value, text) { select.appendChild(el("option", { value: value }, text)); }
  function colorbar() {
    var c = $("colorbar"), ctx = c.getContext("2d"), diff = state.layout === "diff", lut = diff ? D.diff_lut : D.lut;
    for (var x = 0; x < 256; x++) { ctx.fillStyle = "rgb(" + lut[3 * x] + "," + lut[3 * x + 1] + "," + lut[3 * x + 2] + ")"; ctx.fillRect(x, 0, 1, 12); }
    $("colorbar-label").textContent = diff ? "map of run A minus map of run B" : D.notes.colorbar;
    $("cb-lo").textContent = diff ? "\u22121" : "0"; $("cb-mid").textContent = diff ? "0" : ""; $("cb-hi").textContent = diff ? "+1" : "1";
    $("legend-text").textContent = (diff ? D.notes.diff : D.notes.normalisation) + "; " + D.notes.legend +
      (diff ? "" : "; overlay opacity " + D.alpha + ", colormap " + D.cmap);
  }
  function relayout() {
    $("run-choice").hidden = state.layout !== "methods" || D.runs.length < 2;
    $("diff-choice").hidden = state.layout !== "diff";
    var note = state.layout === "methods" ? "" : (shownRuns().length > 1 ? "right = right in every run shown, wrong = wrong in one of them" : "");
    $("filter-note").textContent = note;
    buildCells();
    colorbar();
    applyFilters();
    setEpoch(state.t);
    if (state.chosen !== null) choose(state.chosen);
  }
  function play() {
    if (state.timer) { clearInterval(state.timer); state.timer = null; $("play").textContent = "\u25b6 play"; return; }
    if (state.t >= nEpochs - 1) setEpoch(0);
    $("play").textContent = "\u275a\u275a pause";
    state.timer = setInterval(function () {
      if (state.t >= nEpochs - 1) { play(); return; }
      setEpoch(state.t + 1);
    }, 500);
  }
  function controls() {
    document.title = D.title;
    $("title").textContent = D.title;
    $("alignment").textContent = D.alignment || ("one run: " + D.runs[0].name + ", analysed epochs " + D.epochs[0] + "-" +
      D.epochs[nEpochs - 1] + " (" + nEpochs + ")");
    var slider = $("slider");
    slider.max = String(nEpochs - 1);
    $("epoch-range").textContent = "epochs " + D.epochs[0] + "\u2013" + D.epochs[nEpochs - 1];
    slider.addEventListener("input", function () { setEpoch(+slider.value); });
    $("play").addEventListener("click", play);
    document.addEventListener("keydown", function (ev) {
      var tag = (ev.target && ev.target.tagName) || "";
      if (ev.target === slider || tag === "SELECT" || tag === "INPUT" || tag === "TEXTAREA") return; // the slider steps itself
      if (ev.key === "ArrowRight") { setEpoch(state.t + 1); ev.preventDefault(); }
      else if (ev.key === "ArrowLeft") { setEpoch(state.t - 1); ev.preventDefault(); }
      else if (ev.key === " " && tag !== "BUTTON") { play(); ev.preventDefault(); }
    });
    var layout = $("layout");
    if (D.runs.length > 1) option(layout, "runs", "runs \u00d7 methods");
    option(layout, "methods", D.runs.length > 1 ? "one run, methods side by side" : "methods side by side");
    if (D.runs.length > 1) option(layout, "diff", "difference: run A \u2212 run B");
    layout.value = state.layout;
    layout.addEventListener("change", function () { state.layout = layout.value; relayout(); });
    [["run", "run"], ["run-a", "runA"], ["run-b", "runB"]].forEach(function (pair) {
      var s = $(pair[0]);
      D.runs.forEach(function (run, r) { option(s, r, run.label); });
      s.value = String(state[pair[1]]);
      s.addEventListener("change", function () { state[pair[1]] = +s.value; relayout(); });
    });
    var classes = [];
    D.probes.forEach(function (p) { if (classes.indexOf(p["class"]) < 0) classes.push(p["class"]); });
    classes.sort().forEach(function (c) { option($("class-filter"), c, c); });
    $("class-filter").addEventListener("change", function () { state.cls = $("class-filter").value; applyFilters(); });
    $("correct-filter").addEventListener("change", function () { state.correct = $("correct-filter").value; applyFilters(); });
    window.addEventListener("resize", buildMarks);
  }

  controls();
  buildCurves();
  decodeAll().then(function () {
    relayout();
    buildMarks();
    marksLegend();
    document.body.setAttribute("data-ready", "1");
  }).catch(function (err) { console.error(err); });
  window.overfocusExplorer = { setEpoch: setEpoch, choose: choose, state: state, epochs: D.epochs };
})();
