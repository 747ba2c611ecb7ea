// The book model, live in the reader's browser: the playground (playground.html) and the live
// versions of the notebooks' widgets (chapters 03, 05, 06, 07), all driven by window.nexttoken (the
// in-browser book model: encode, decode, nextTokenProbs, generate, attention). Each
// <div class="nt-live" data-nt-live="{json}"> on a page becomes one widget; website/ext/nt_site.py
// writes the JSON from the notebook: its kind, prompt, controls (with their saved starting values),
// the widget's options and the model's config. The drawing (token chips, bars, a heatmap, an
// entropy curve) is shared by all of them. A widget's root carries data-nt-state (loading, ready,
// busy, error) and data-nt-updates (how many times it has been redrawn) for tests.
(function () {
  "use strict";

  var MAX_CHARS = 20000; // the playground's longest prompt (the model itself reads block_size tokens)

  // ---- small helpers ---------------------------------------------------------------------------
  var uid = 0;
  function newId(name) {
    uid += 1;
    return "nt-live-" + name + "-" + uid;
  }

  function h(tag, attrs) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") el.textContent = v;
      else if (k.slice(0, 2) === "on") el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? "" : String(v));
    });
    for (var i = 2; i < arguments.length; i++) {
      [].concat(arguments[i]).forEach(function (kid) {
        if (kid !== null && kid !== undefined) el.append(kid);
      });
    }
    return el;
  }

  // a token's text with its boundaries visible, as nexttoken.visible_token draws it
  function visible(s) {
    return s.replace(/ /g, "\u2423").replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5");
  }

  function fmtP(p) {
    return p >= 0.001 || p === 0 ? p.toFixed(3) : p.toExponential(1);
  }

  // the ids of the k largest entries of probs, best first (ties: the smaller id first)
  function topIds(probs, k) {
    var best = [];
    for (var i = 0; i < probs.length; i++) {
      if (best.length < k || probs[i] > probs[best[best.length - 1]]) {
        var j = best.length;
        while (j > 0 && probs[best[j - 1]] < probs[i]) j--;
        best.splice(j, 0, i);
        if (best.length > k) best.pop();
      }
    }
    return best;
  }

  function entropy(probs) {
    var s = 0;
    for (var i = 0; i < probs.length; i++) if (probs[i] > 0) s -= probs[i] * Math.log(probs[i]);
    return s;
  }

  // Runs fn() one call at a time: a request made while it runs is run once, after it, with the
  // values of that moment (moving a slider fast never queues a pile of model runs).
  function serial(fn) {
    var running = false;
    var again = false;
    return function run() {
      if (running) {
        again = true;
        return;
      }
      running = true;
      again = false;
      Promise.resolve()
        .then(fn)
        .finally(function () {
          running = false;
          if (again) run();
        });
    };
  }

  // ---- the shared drawing ----------------------------------------------------------------------

  // Token chips, one per id, the id shown on hover and on focus (arrow keys move between chips).
  function drawChips(box, ids, nt) {
    box.replaceChildren.apply(
      box,
      ids.map(function (id, i) {
        var text = nt.decode([id]);
        return h(
          "span",
          {
            class: "nt-chip",
            role: "listitem",
            tabindex: i === 0 ? 0 : -1,
            "data-id": id,
            title: "id " + id,
            "aria-label": "token " + (i + 1) + ": " + JSON.stringify(text) + ", id " + id,
          },
          visible(text)
        );
      })
    );
  }

  function chipKeys(box) {
    box.addEventListener("keydown", function (ev) {
      var chips = Array.prototype.slice.call(box.children);
      var i = chips.indexOf(document.activeElement);
      var to = { ArrowRight: i + 1, ArrowDown: i + 1, ArrowLeft: i - 1, ArrowUp: i - 1, Home: 0,
                 End: chips.length - 1 }[ev.key];
      if (i < 0 || to === undefined) return;
      to = Math.max(0, Math.min(chips.length - 1, to));
      chips[i].tabIndex = -1;
      chips[to].tabIndex = 0;
      chips[to].focus();
      ev.preventDefault();
    });
  }

  // Horizontal bars: rows [{label, p, value, cls}], the longest bar for the largest p.
  function drawBars(list, rows) {
    var top = Math.max.apply(null, rows.map(function (r) { return r.p; }).concat([1e-12]));
    list.replaceChildren.apply(
      list,
      rows.map(function (r) {
        return h(
          "li",
          { class: "nt-bar " + (r.cls || "") },
          h("span", { class: "nt-bar-label", text: r.label }),
          h(
            "span",
            { class: "nt-bar-track", "aria-hidden": "true" },
            h("span", { class: "nt-bar-fill", style: "width:" + ((100 * r.p) / top).toFixed(1) + "%" })
          ),
          h("span", { class: "nt-bar-value", text: r.value })
        );
      })
    );
  }

  // viridis at t in [0, 1] (9 stops, linearly interpolated): the notebook's heatmap colours
  var VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                 [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];
  function viridis(t) {
    var x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
    var i = Math.min(VIRIDIS.length - 2, Math.floor(x));
    var f = x - i;
    return "rgb(" + VIRIDIS[i].map(function (c, j) {
      return Math.round(c + f * (VIRIDIS[i + 1][j] - c));
    }).join(",") + ")";
  }

  // An attention heatmap on a canvas: row i = what token i looks at; the future (j > i) is grey.
  // Hover or the arrow keys (the canvas takes focus) read one cell out into `readout`.
  function Heatmap(parent, readout) {
    var canvas = h("canvas", { class: "nt-heatmap", tabindex: 0, role: "img" });
    parent.append(canvas);
    var self = { w: [], labels: [], cell: [0, 0] };
    var geo = { left: 0, top: 0, size: 0 };
    function say(i, j) {
      var w = self.w;
      if (!w.length) return;
      self.cell = [i, j];
      readout.textContent = JSON.stringify(self.labels[i]) + " (row " + i + ") looks at " +
        JSON.stringify(self.labels[j]) + " (column " + j + "): " +
        (j > i ? "hidden (the future)" : w[i][j].toFixed(3));
    }
    self.draw = function (w, labels, title) {
      self.w = w;
      self.labels = labels;
      var n = w.length;
      var width = Math.max(200, Math.min(640, parent.clientWidth || 320));
      var small = (width - 94) / n >= 11; // room for a label on each row and column
      var margin = small ? Math.min(90, 12 + 7 * Math.max.apply(null, labels.map(function (l) {
        return Math.min(l.length, 10);
      }))) : 0;
      var size = (width - margin - 4) / n;
      var height = margin + n * size + 4;
      var dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(width * dpr);
      canvas.height = Math.round(height * dpr);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      var ctx = canvas.getContext("2d");
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, width, height);
      geo = { left: margin, top: 2, size: size };
      for (var i = 0; i < n; i++) {
        for (var j = 0; j < n; j++) {
          ctx.fillStyle = j > i ? "#e5e5e5" : viridis(w[i][j]);
          ctx.fillRect(margin + j * size, 2 + i * size, Math.ceil(size), Math.ceil(size));
        }
      }
      if (small) {
        ctx.fillStyle = "#333";
        ctx.font = "11px monospace";
        ctx.textBaseline = "middle";
        ctx.textAlign = "right";
        labels.forEach(function (l, k) {
          var t = l.length > 10 ? l.slice(0, 9) + "\u2026" : l;
          ctx.fillText(t, margin - 4, 2 + (k + 0.5) * size);
          ctx.save();
          ctx.translate(margin + (k + 0.5) * size, 2 + n * size + 4);
          ctx.rotate(-Math.PI / 3);
          ctx.fillText(t, 0, 0);
          ctx.restore();
        });
      }
      canvas.setAttribute("aria-label", title + ": attention weights of " + n + " tokens (rows: " +
        "each token, columns: the tokens it looks at). Use the arrow keys to read the cells.");
      var c = self.cell;
      if (c[0] < n && c[1] < n) say(c[0], c[1]);
      else say(n - 1, 0);
    };
    canvas.addEventListener("mousemove", function (ev) {
      var r = canvas.getBoundingClientRect();
      var j = Math.floor((ev.clientX - r.left - geo.left) / geo.size);
      var i = Math.floor((ev.clientY - r.top - geo.top) / geo.size);
      if (i >= 0 && j >= 0 && i < self.w.length && j < self.w.length) say(i, j);
    });
    canvas.addEventListener("keydown", function (ev) {
      var d = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] }[ev.key];
      if (!d || !self.w.length) return;
      var n = self.w.length;
      say(Math.max(0, Math.min(n - 1, self.cell[0] + d[0])),
          Math.max(0, Math.min(n - 1, self.cell[1] + d[1])));
      ev.preventDefault();
    });
    return self;
  }

  // The entropy of softmax(logits / T) against T, as an SVG line, a dot at the current T and the
  // uniform limit log V dashed. logp: the log-probabilities at T = 1 (logits up to a constant).
  function EntropyCurve(parent) {
    var NS = "http://www.w3.org/2000/svg";
    var svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 300 140");
    svg.setAttribute("class", "nt-entropy");
    svg.setAttribute("role", "img");
    parent.append(svg);
    var temps = [];
    for (var k = 0; k < 59; k++) temps.push(0.1 + 0.05 * k); // as temperature_figure draws it
    function at(logp, t) {
      var m = -Infinity;
      for (var i = 0; i < logp.length; i++) m = Math.max(m, logp[i] / t);
      var z = 0;
      var s = 0;
      for (i = 0; i < logp.length; i++) {
        var e = Math.exp(logp[i] / t - m);
        z += e;
        s += e * (logp[i] / t - m);
      }
      return Math.log(z) - s / z;
    }
    function el(tag, attrs) {
      var e = document.createElementNS(NS, tag);
      Object.keys(attrs).forEach(function (a) { e.setAttribute(a, attrs[a]); });
      return e;
    }
    var self = {};
    self.draw = function (logp, t, hNow) {
      var logV = Math.log(logp.length);
      var x = function (tt) { return 34 + ((tt - 0.1) / 2.9) * 256; };
      var y = function (hh) { return 120 - (hh / (logV * 1.08)) * 110; };
      var pts = temps.map(function (tt) {
        return x(tt).toFixed(1) + "," + y(at(logp, tt)).toFixed(1);
      });
      svg.replaceChildren(
        el("line", { x1: 34, x2: 290, y1: y(logV), y2: y(logV), class: "nt-entropy-limit" }),
        el("polyline", { points: pts.join(" "), class: "nt-entropy-line" }),
        el("circle", { cx: x(t), cy: y(hNow), r: 4, class: "nt-entropy-dot" }),
        el("line", { x1: 34, x2: 290, y1: 120, y2: 120, class: "nt-entropy-axis" })
      );
      [["temperature T", 162, 137, "middle"], ["0.1", 34, 132, "middle"],
       ["entropy (nats)", 2, 10, "start"], ["0", 30, 123, "end"],
       ["3", 290, 132, "middle"], ["log V", 290, y(logV) - 4, "end"],
       ["H = " + hNow.toFixed(2) + " nats", Math.min(x(t) + 8, 220), y(hNow) + 14, "start"]]
        .forEach(function (a) {
          var tx = el("text", { x: a[1], y: a[2], "text-anchor": a[3] });
          tx.textContent = a[0];
          svg.append(tx);
        });
      svg.setAttribute("aria-label", "entropy of softmax(logits / T) against the temperature: " +
        hNow.toFixed(2) + " nats at T = " + t.toFixed(2) + ", at most log V = " + logV.toFixed(2));
    };
    return self;
  }

  // A labelled range slider from a saved ipywidgets slider (description, value, min, max, step).
  function slider(c, onChange) {
    var id = newId(c.name);
    var digits = c.type === "intslider" ? 0 : 2;
    var input = h("input", { type: "range", id: id, class: "nt-live-" + c.name, min: c.min,
                             max: c.max, step: c.step, value: c.value });
    var out = h("output", { for: id, text: Number(c.value).toFixed(digits) });
    input.addEventListener("input", function () {
      out.textContent = Number(input.value).toFixed(digits);
      onChange();
    });
    return {
      el: h("div", { class: "nt-field" }, h("label", { for: id, text: c.description }), input, out),
      value: function () { return Number(input.value); },
      input: input,
    };
  }

  // A labelled free-text number field (the playground's controls: bad values get a message).
  function numberField(name, label, value, hint) {
    var id = newId(name);
    var input = h("input", { type: "text", inputmode: "decimal", id: id, value: value,
                             class: "nt-live-" + name, size: 5, autocomplete: "off",
                             "aria-describedby": id + "-hint" });
    return {
      el: h("div", { class: "nt-field" }, h("label", { for: id, text: label }), input,
            h("small", { id: id + "-hint", class: "nt-hint", text: hint })),
      input: input,
    };
  }

  // The options nextTokenProbs and generate take (top-k 0 and top-p 1 mean "no filter").
  function samplingOptions(t, k, p) {
    var o = { temperature: t };
    if (k > 0) o.topK = k;
    if (p < 1) o.topP = p;
    return o;
  }

  function describe(t, k, p) {
    return "T = " + t + ", top_k = " + (k > 0 ? k : "None") + ", top_p = " +
      (p < 1 ? p : "None");
  }

  // ---- the frame every live widget shares: title, status line, message, model readiness --------
  function frame(root, cfg, title) {
    root.replaceChildren();
    root.classList.add("nt-live-" + cfg.kind);
    var status = h("p", { class: "nt-live-status", role: "status" });
    var msg = h("p", { class: "nt-live-msg", role: "alert", hidden: true });
    var body = h("div", { class: "nt-live-body" });
    root.append(h("p", { class: "nt-live-title" }, h("strong", { text: title })), status, msg, body);
    root.dataset.ntUpdates = "0";
    var f = {
      body: body,
      status: status,
      say: function (text) { status.textContent = text; },
      error: function (text) {
        msg.textContent = text || "";
        msg.hidden = !text;
      },
      state: function (s) { root.dataset.ntState = s; },
      drawn: function () { root.dataset.ntUpdates = String(Number(root.dataset.ntUpdates) + 1); },
    };
    f.state("loading");
    return f;
  }

  // Resolves with the model once it is ready; otherwise says why on the page and rejects.
  function model(f) {
    if (typeof WebAssembly !== "object") {
      f.state("error");
      f.error("This part needs WebAssembly, which this browser does not offer (or has turned " +
        "off), so the book model cannot run here. The saved figures stay as they are.");
      return Promise.reject(new Error("no WebAssembly"));
    }
    var nt = window.nexttoken;
    if (!nt || !nt.ready) {
      f.state("error");
      f.error("The live book model is not part of this page, so this part cannot run.");
      return Promise.reject(new Error("no model"));
    }
    f.say("Loading the book model in your browser\u2026");
    return Promise.resolve(nt.ready).then(
      function () {
        f.say("");
        f.state("ready");
        return nt;
      },
      function (err) {
        f.state("error");
        f.error("The book model did not load in this browser: " + (err && err.message || err));
        throw err;
      }
    );
  }

  // runs one redraw: state busy -> ready, a failure shown on the page (never thrown)
  function guarded(f, fn) {
    return serial(function () {
      f.state("busy");
      return Promise.resolve()
        .then(fn)
        .then(function () {
          f.state("ready");
          f.drawn();
        })
        .catch(function (err) {
          f.state("ready");
          f.error("Something went wrong: " + (err && err.message || err));
          f.drawn();
        });
    });
  }

  // ---- chapter 03: attention map (layer and head sliders over a sentence) ------------------------
  function attentionWidget(root, cfg, nt) {
    var f = frame(root, cfg, "Live: the attention map, computed in your browser");
    var ids = nt.encode(cfg.prompt);
    var labels = ids.map(function (i) { return visible(nt.decode([i])); });
    var controls = {};
    var bar = h("div", { class: "nt-controls" });
    var caption = h("p", { class: "nt-caption" });
    var readout = h("p", { class: "nt-readout", "aria-live": "polite" });
    f.body.append(bar, caption);
    var map = Heatmap(f.body, readout);
    f.body.append(readout);
    var redraw = guarded(f, function () {
      var layer = controls.layer.value();
      var head = controls.head.value();
      return Promise.resolve(nt.attention(ids, layer, head)).then(function (w) {
        caption.textContent = "layer " + layer + ", head " + head;
        map.draw(w, labels, "layer " + layer + ", head " + head);
      });
    });
    cfg.controls.forEach(function (c) {
      controls[c.name] = slider(c, redraw);
      bar.append(controls[c.name].el);
    });
    redraw();
  }

  // ---- chapter 05: the temperature slider over the next-token distribution -----------------------
  function temperatureWidget(root, cfg, nt) {
    var f = frame(root, cfg, "Live: temperature, computed in your browser");
    var ids = nt.encode(cfg.prompt);
    var k = cfg.options.k || 10;
    var bar = h("div", { class: "nt-controls" });
    var caption = h("p", { class: "nt-caption" });
    var bars = h("ol", { class: "nt-bars" });
    var side = h("div", { class: "nt-live-side" });
    f.body.append(bar, h("div", { class: "nt-live-pair" }, h("div", {}, caption, bars), side));
    var curve = EntropyCurve(side);
    var temp = slider(cfg.controls[0], function () { redraw(); });
    bar.append(temp.el, h("p", { class: "nt-hint", text: "after " + JSON.stringify(cfg.prompt) }));
    var logp = null;
    var redraw = guarded(f, function () {
      var t = temp.value();
      return Promise.resolve(logp || nt.nextTokenProbs(ids, { temperature: 1 }))
        .then(function (p1) {
          logp = logp || Float64Array.from(p1, function (p) { return Math.log(p); });
          return nt.nextTokenProbs(ids, { temperature: t });
        })
        .then(function (probs) {
          var top = topIds(probs, k);
          caption.textContent = "top " + top.length + " tokens at T = " + t.toFixed(2);
          drawBars(bars, top.map(function (i) {
            return { label: visible(nt.decode([i])), p: probs[i], value: fmtP(probs[i]) };
          }));
          curve.draw(logp, t, entropy(probs));
        });
    });
    redraw();
  }

  // ---- chapter 06: temperature, top-k, top-p and a seed -> the distribution and a continuation ---
  function samplingWidget(root, cfg, nt) {
    var f = frame(root, cfg, "Live: sampling, computed in your browser");
    var ids = nt.encode(cfg.prompt);
    var n = cfg.options.n || 15;
    var maxNew = cfg.options.max_new_tokens || 40;
    var controls = {};
    var bar = h("div", { class: "nt-controls" });
    var caption = h("p", { class: "nt-caption" });
    var bars = h("ol", { class: "nt-bars" });
    var text = h("pre", { class: "nt-live-text", "aria-live": "polite" });
    f.body.append(bar, caption, bars, text);
    var redraw = guarded(f, function () {
      var t = controls.temperature.value();
      var k = controls["top-k"].value();
      var p = controls["top-p"].value();
      var seed = controls.seed.value();
      var opts = samplingOptions(t, k, p);
      var base;
      return Promise.resolve(nt.nextTokenProbs(ids, { temperature: t > 0 ? t : 1 }))
        .then(function (b) {
          base = b;
          return nt.nextTokenProbs(ids, opts);
        })
        .then(function (probs) {
          var kept = 0;
          for (var i = 0; i < probs.length; i++) if (probs[i] > 0) kept++;
          caption.textContent = describe(t, k, p) + ": " + kept.toLocaleString("en-US") +
            " tokens possible; seed " + seed;
          drawBars(bars, topIds(base, n).map(function (i) {
            return probs[i] > 0
              ? { label: visible(nt.decode([i])), p: probs[i], value: fmtP(probs[i]), cls: "nt-kept" }
              : { label: visible(nt.decode([i])), p: base[i], value: "dropped", cls: "nt-dropped" };
          }));
          opts.maxNewTokens = maxNew;
          opts.seed = seed;
          return nt.generate(ids, opts);
        })
        .then(function (out) {
          text.textContent = cfg.prompt + "|" + nt.decode(out.slice(ids.length));
        });
    });
    ["temperature", "top-k", "top-p", "seed"].forEach(function (name) {
      var c = cfg.controls.filter(function (x) { return x.name === name; })[0];
      controls[name] = slider(c, redraw);
      bar.append(controls[name].el);
    });
    f.body.append(h("p", { class: "nt-hint", text: "The page draws with its own seeded random " +
      "numbers: the same seed gives the same text here, not the same draws as PyTorch's " +
      "generator in the notebook. Temperature 0 is greedy, as in Python." }));
    redraw();
  }

  // ---- chapter 07: "next token" runs the loop one step; "reset" starts again ---------------------
  function loopWidget(root, cfg, nt) {
    var f = frame(root, cfg, "Live: the loop, one token at a time, in your browser");
    var o = cfg.options;
    var block = cfg.config.block_size;
    var nTop = o.n_top || 5;
    var promptIds = nt.encode(cfg.prompt);
    var state = { ids: [], records: [] };
    var bar = h("div", { class: "nt-controls" });
    var head = h("p", { class: "nt-caption" });
    var text = h("pre", { class: "nt-live-text", "aria-live": "polite" });
    var caption = h("p", { class: "nt-caption" });
    var bars = h("ol", { class: "nt-bars" });
    f.body.append(bar, head, text, caption, bars);
    function draw() {
      var recs = state.records;
      head.textContent = "after " + recs.length + " step(s):";
      text.textContent = cfg.prompt + "|" + nt.decode(recs.map(function (r) { return r.token; }));
      if (!recs.length) {
        caption.textContent = "press '" + buttons.next.textContent + "'";
        bars.replaceChildren();
        return;
      }
      var r = recs[recs.length - 1];
      caption.textContent = "step " + r.step + ": chose " + JSON.stringify(visible(nt.decode([r.token]))) +
        " (p = " + r.prob.toFixed(3) + ", rank " + r.rank + ") among the candidates";
      drawBars(bars, r.top.map(function (i) {
        return { label: visible(nt.decode([i])), p: r.probs[i], value: fmtP(r.probs[i]),
                 cls: i === r.token ? "nt-chosen" : "" };
      }));
    }
    var step = guarded(f, function () {
      var s = state.records.length + 1;
      var ctx = state.ids.slice(-block); // the sliding window, as next_step reads it
      var probs;
      return Promise.resolve(nt.nextTokenProbs(ctx, { temperature: 1 }))
        .then(function (p) {
          probs = p;
          // one seeded draw per step: the same clicks give the same text
          return nt.generate(ctx, { maxNewTokens: 1, temperature: o.temperature,
                                    seed: (o.seed * 100003 + s) % 2147483647 });
        })
        .then(function (out) {
          var token = out[out.length - 1];
          var rank = 1;
          for (var i = 0; i < probs.length; i++) if (probs[i] > probs[token]) rank++;
          state.records.push({ step: s, token: token, prob: probs[token], rank: rank,
                               probs: probs, top: topIds(probs, nTop) });
          state.ids.push(token); // the loop: append the chosen token
          draw();
        });
    });
    var reset = guarded(f, function () {
      state.ids = promptIds.slice();
      state.records = [];
      draw();
    });
    var buttons = {};
    cfg.controls.forEach(function (c) {
      var b = h("button", { type: "button", class: "nt-live-" + c.name, text: c.description });
      b.addEventListener("click", c.name === "reset" ? reset : step);
      buttons[c.name] = b;
      bar.append(b);
    });
    bar.append(h("span", { class: "nt-hint", text: "temperature " + o.temperature + ", seed " + o.seed }));
    reset();
  }

  // ---- the playground ----------------------------------------------------------------------------
  function playground(root, cfg, nt) {
    var f = frame(root, cfg, "The book model, running in your browser");
    var c = cfg.config;
    var promptId = newId("prompt");
    var prompt = h("textarea", { id: promptId, class: "nt-live-prompt", rows: 3,
                                 "aria-describedby": promptId + "-note" });
    prompt.value = cfg.prompt;
    var note = h("p", { id: promptId + "-note", class: "nt-hint" });
    var chips = h("div", { class: "nt-chips", role: "list", "aria-label": "the prompt's tokens" });
    chipKeys(chips);
    var fields = {
      temperature: numberField("temperature", "temperature", "1", "\u2265 0; 0 = greedy"),
      topK: numberField("top-k", "top-k", "0", "0 = off"),
      topP: numberField("top-p", "top-p", "1", "in (0, 1]; 1 = off"),
      seed: numberField("seed", "seed", "0", "an integer \u2265 0"),
    };
    var modeName = newId("mode");
    var greedy = h("input", { type: "radio", name: modeName, id: modeName + "-g", value: "greedy",
                              checked: true, class: "nt-live-greedy" });
    var sampled = h("input", { type: "radio", name: modeName, id: modeName + "-s", value: "sample",
                               class: "nt-live-sampled" });
    var mode = h("fieldset", { class: "nt-field nt-mode" }, h("legend", { text: "choose" }),
      h("span", {}, greedy, h("label", { for: modeName + "-g", text: "greedy" })),
      h("span", {}, sampled, h("label", { for: modeName + "-s", text: "sample (seeded)" })));
    var next = h("button", { type: "button", class: "nt-live-next", text: "next token" });
    var gen = h("button", { type: "button", class: "nt-live-generate", text: "generate 20" });
    var undo = h("button", { type: "button", class: "nt-live-reset", text: "back to the prompt" });
    var caption = h("p", { class: "nt-caption" });
    var bars = h("ol", { class: "nt-bars" });
    function picker(name, n) {
      var id = newId(name);
      var sel = h("select", { id: id, class: "nt-live-" + name });
      for (var i = 0; i < n; i++) sel.append(h("option", { value: i, text: String(i) }));
      return { el: h("div", { class: "nt-field" }, h("label", { for: id, text: name }), sel), sel: sel };
    }
    var layer = picker("layer", c.n_layer);
    var head = picker("head", c.n_head);
    var attCaption = h("p", { class: "nt-caption" });
    var readout = h("p", { class: "nt-readout", "aria-live": "polite" });
    var section = function (title, kids) {
      return h("section", { class: "nt-live-part" }, h("h3", { text: title }), kids);
    };
    var mapBox = h("div", { class: "nt-heatmap-box" });
    f.body.append(
      h("div", { class: "nt-field nt-prompt-field" }, h("label", { for: promptId, text: "prompt" }),
        prompt),
      note,
      chips,
      section("The next token", [
        h("div", { class: "nt-controls" }, fields.temperature.el, fields.topK.el, fields.topP.el,
          fields.seed.el, mode),
        h("div", { class: "nt-controls" }, next, gen, undo),
        caption,
        bars,
      ]),
      section("Attention over the prompt", [
        h("div", { class: "nt-controls" }, layer.el, head.el), attCaption, mapBox, readout,
      ])
    );
    var map = Heatmap(mapBox, readout);
    var typed = [];
    var ids = [];

    // the controls' values, or a message naming what is wrong
    function read() {
      var bad = [];
      function num(field, name, test, rule, integer) {
        var s = field.input.value.trim();
        var v = Number(s);
        var ok = s !== "" && Number.isFinite(v) && (!integer || Number.isInteger(v)) && test(v);
        field.input.setAttribute("aria-invalid", ok ? "false" : "true");
        if (!ok) bad.push(name + " must be " + rule + " (got " + JSON.stringify(s) + ")");
        return v;
      }
      var v = {
        t: num(fields.temperature, "temperature", function (x) { return x >= 0; },
               "a finite number \u2265 0"),
        k: num(fields.topK, "top-k", function (x) { return x >= 0 && x <= c.vocab_size; },
               "an integer from 0 (off) to " + c.vocab_size, true),
        p: num(fields.topP, "top-p", function (x) { return x > 0 && x <= 1; },
               "a number in (0, 1] (1 = off)"),
        seed: num(fields.seed, "seed", function (x) { return x >= 0 && x <= 2147483647; },
                  "an integer from 0 to 2147483647", true),
      };
      var text = prompt.value;
      prompt.setAttribute("aria-invalid", "false");
      if (text.length === 0) {
        bad.unshift("The prompt is empty: type something, the model needs at least one token.");
        prompt.setAttribute("aria-invalid", "true");
      } else if (text.length > MAX_CHARS) {
        bad.unshift("The prompt is " + text.length.toLocaleString("en-US") + " characters long; " +
          "the playground takes at most " + MAX_CHARS.toLocaleString("en-US") + ".");
        prompt.setAttribute("aria-invalid", "true");
      }
      v.problem = bad.join(" \u00b7 ");
      return v;
    }

    function showIds() {
      drawChips(chips, ids, nt);
      note.textContent = ids.length > c.block_size
        ? ids.length + " tokens: longer than the model's context of " + c.block_size + " tokens, " +
          "so it reads only the last " + c.block_size + " (a sliding window, as generate does in " +
          "Python); the attention map shows that window."
        : ids.length + " token" + (ids.length === 1 ? "" : "s") + " (the model reads up to " +
          c.block_size + ")";
    }

    var redraw = guarded(f, function () {
      var v = read();
      f.error(v.problem);
      root.classList.toggle("nt-invalid", !!v.problem);
      if (v.problem || !ids.length) return;
      var ctx = ids.slice(-c.block_size);
      var base;
      var L = Number(layer.sel.value);
      var H = Number(head.sel.value);
      return Promise.resolve(nt.nextTokenProbs(ctx, { temperature: v.t > 0 ? v.t : 1 }))
        .then(function (b) {
          base = b;
          return nt.nextTokenProbs(ctx, samplingOptions(v.t, v.k, v.p));
        })
        .then(function (probs) {
          var kept = 0;
          var mass = 0;
          for (var i = 0; i < probs.length; i++) {
            if (probs[i] > 0) {
              kept++;
              mass += base[i];
            }
          }
          caption.textContent = describe(v.t, v.k, v.p) + ": " + kept.toLocaleString("en-US") +
            " of " + probs.length.toLocaleString("en-US") + " tokens kept" +
            (v.t > 0 ? " (" + (100 * mass).toFixed(1) + "% of the probability at T = " + v.t + ")" : "") +
            ". Bars: the top 10 at this temperature; kept ones show the probability they are " +
            "sampled with.";
          drawBars(bars, topIds(base, 10).map(function (i) {
            var label = visible(nt.decode([i]));
            return probs[i] > 0
              ? { label: label, p: probs[i], value: fmtP(probs[i]) + " kept", cls: "nt-kept" }
              : { label: label, p: base[i], value: fmtP(base[i]) + " dropped", cls: "nt-dropped" };
          }));
          return nt.attention(ctx, L, H);
        })
        .then(function (w) {
          attCaption.textContent = "layer " + L + ", head " + H + " over " + ctx.length + " tokens";
          map.draw(w, ctx.map(function (i) { return visible(nt.decode([i])); }),
                   "layer " + L + ", head " + H);
        });
    });

    function extend(n) {
      return guarded(f, function () {
        var v = read();
        f.error(v.problem);
        if (v.problem || !ids.length) return;
        var opts = greedy.checked
          ? { temperature: 0 }
          : samplingOptions(v.t, v.k, v.p);
        opts.maxNewTokens = n;
        if (!greedy.checked) opts.seed = v.seed;
        return Promise.resolve(nt.generate(ids, opts)).then(function (out) {
          ids = out.slice();
          prompt.value = nt.decode(ids);
          showIds();
          redraw();
        });
      });
    }
    var timer = null;
    prompt.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        typed = prompt.value.length <= MAX_CHARS ? nt.encode(prompt.value) : [];
        ids = typed.slice();
        showIds();
        redraw();
      }, 150);
    });
    Object.keys(fields).forEach(function (k) { fields[k].input.addEventListener("input", redraw); });
    [layer.sel, head.sel].forEach(function (s) { s.addEventListener("change", redraw); });
    next.addEventListener("click", extend(1));
    gen.addEventListener("click", extend(20));
    undo.addEventListener("click", function () {
      ids = typed.slice();
      prompt.value = nt.decode(ids);
      showIds();
      redraw();
    });
    typed = nt.encode(prompt.value);
    ids = typed.slice();
    showIds();
    redraw();
  }

  var KINDS = {
    attention: attentionWidget,
    temperature: temperatureWidget,
    sampling: samplingWidget,
    loop: loopWidget,
    playground: playground,
  };

  function start(root) {
    var cfg;
    try {
      cfg = JSON.parse(root.getAttribute("data-nt-live"));
    } catch (err) {
      root.textContent = "This live widget's settings are unreadable: " + err.message;
      return;
    }
    var f = frame(root, cfg, "Live: the book model in your browser");
    model(f).then(
      function (nt) {
        try {
          KINDS[cfg.kind](root, cfg, nt);
        } catch (err) {
          f.state("error");
          f.error("This live widget could not start: " + err.message);
        }
      },
      function () {} // the reason is on the page already
    );
  }

  function kindOf(root) {
    try {
      return JSON.parse(root.getAttribute("data-nt-live")).kind;
    } catch (err) {
      return ""; // start() says so on the page
    }
  }

  // The playground starts the model at once; a chapter's widget when it comes near the screen, so
  // that a reader who never scrolls to it never downloads the model.
  function startAll() {
    var roots = document.querySelectorAll("div.nt-live[data-nt-live]");
    var seen = typeof IntersectionObserver === "function" &&
      new IntersectionObserver(function (entries) {
        entries.forEach(function (e) {
          if (e.isIntersecting) {
            seen.unobserve(e.target);
            start(e.target);
          }
        });
      }, { rootMargin: "300px" });
    Array.prototype.forEach.call(roots, function (root) {
      if (seen && !/^playground$/.test(kindOf(root))) {
        root.textContent = "The live version starts when you scroll to it.";
        seen.observe(root);
      } else {
        start(root);
      }
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
