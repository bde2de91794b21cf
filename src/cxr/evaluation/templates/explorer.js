// The operating-point explorer, shared by `cxr serve`'s page and `cxr report`. `data` comes from
// cxr.evaluation.explorer.explorer_data: confusion counts at every distinct tuning (or evaluated)
// probability, highest first, under the rule "positive iff p >= threshold". The widget looks the
// counts up for the slider's threshold and divides them, with a Wilson 95 % interval on each
// proportion (cxr.metrics.stats.wilson_interval). The model's threshold is used exactly (the
// slider's step is "any"), so at it every tile equals `cxr evaluate`'s figure.
function operatingPointExplorer(root, data) {
  // a number and its "%" never part at a line's end (a no-break space), nor does an interval. An
  // observed share of all or none is "100 %" or "0 %" (its count beside it), and one that only
  // rounds to them is "> 99.9 %" or "< 0.1 %": never a "100.0 %" that claims more than it counted.
  const percent = (x) => {
    if (!Number.isFinite(x)) return "n/a";
    if (x === 1 || x === 0) return `${100 * x}\u00a0%`;
    const shown = (100 * x).toFixed(1);
    return shown === "100.0" ? ">\u00a099.9\u00a0%" : shown === "0.0" ? "<\u00a00.1\u00a0%" : shown + "\u00a0%";
  };
  const ratio = (a, b) => (b ? a / b : NaN);
  const Z = 1.959963984540054;
  const wilson = (k, n) => {
    if (!n) return null;
    const p = k / n, d = 1 + Z * Z / n;
    const centre = (p + Z * Z / (2 * n)) / d;
    const half = Z * Math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / d;
    return [Math.max(0, centre - half), Math.min(1, centre + half)];
  };
  // as many decimals as the threshold has (3 at least): 0.93261 is not shown as 0.933
  const exact = (t) => { for (let d = 3; d < 8; d++) if (Math.abs(Number(t.toFixed(d)) - t) < 1e-12) return t.toFixed(d); return t.toFixed(8); };
  const el = (tag, attrs, text) => {
    const node = document.createElement(tag);
    Object.assign(node, attrs || {});
    if (text !== undefined) node.textContent = text;
    return node;
  };
  if (!document.getElementById("explorer-style")) {
    const style = el("style", { id: "explorer-style" });
    style.textContent = `
      .explorer .controls { display:flex; flex-wrap:wrap; gap:10px 22px; align-items:center; margin:8px 0 12px; }
      .explorer .controls label { display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
      .explorer input[type=range] { width:min(320px, 70vw); }
      .explorer input[type=number] { width:6em; font:inherit; }
      .explorer .values { display:grid; grid-template-columns:repeat(auto-fit, minmax(140px, 1fr)); gap:10px; margin:0; }
      .explorer .values div { border:1px solid #dde3ea; border-radius:8px; padding:8px 10px; background:#fafbfc; }
      .explorer dt { color:#5b6b7c; font-size:13px; } .explorer dd { margin:2px 0 0; font-size:20px; font-weight:600; }
      .explorer dd small { display:block; font-size:12px; font-weight:400; color:#5b6b7c; }
      .explorer dd small.ci { font-size:12px; }
      .explorer .range { white-space:nowrap; }
      .explorer p { margin:10px 0 0; }`;
    document.head.appendChild(style);
  }
  const pos = data.positive_class, neg = data.negative_class;
  const negatives = data.images - data.positives;
  root.classList.add("explorer");
  root.replaceChildren();
  root.appendChild(el("p", { className: "muted" },
    `The model's predictions on ${data.images} images (${data.split}), ${data.positives} of them ${pos}. ` +
    `An image is called ${pos} when P(${pos}) ≥ the threshold. The model's own threshold is ` +
    `${exact(data.threshold)} (the button sets it exactly). Intervals: Wilson 95\u00a0%, images counted as independent.`));
  const controls = el("div", { className: "controls" });
  const slider = el("input", { type: "range", min: 0, max: 1, step: "any", value: data.threshold, className: "threshold" });
  slider.setAttribute("aria-label", "threshold");
  const shown = el("output", { className: "threshold-value" });
  const prevalence = el("input", { type: "number", min: 0.1, max: 99.9, step: 0.1, className: "prevalence",
    value: (100 * data.positives / data.images).toFixed(1) });
  prevalence.setAttribute("aria-label", "prevalence in percent");
  const reset = el("button", { type: "button" }, "model's threshold");
  const sliderLabel = el("label", {}, "threshold ");
  sliderLabel.append(slider, shown);
  const prevalenceLabel = el("label", {}, `prevalence of ${pos} where you use it `);
  prevalenceLabel.append(prevalence, "\u00a0%");
  controls.append(sliderLabel, reset, prevalenceLabel);
  root.appendChild(controls);
  const values = el("dl", { className: "values" });
  const cells = {};
  for (const [key, title] of [["sensitivity", "sensitivity"], ["specificity", "specificity"],
      ["ppv", "PPV (here)"], ["npv", "NPV (here)"], ["ppv_at", "PPV at your prevalence"],
      ["npv_at", "NPV at your prevalence"]]) {
    const box = el("div");
    cells[key] = el("dd", { className: key });
    box.append(el("dt", {}, title), cells[key]);
    values.appendChild(box);
  }
  root.appendChild(values);
  const words = el("p", { className: "words" });
  root.appendChild(words);

  function countsAt(t) {
    // thresholds are descending: the last one >= t has the counts of "p >= t"
    const ts = data.thresholds;
    let lo = 0, hi = ts.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (ts[mid] >= t) lo = mid + 1; else hi = mid; }
    const k = lo - 1;
    if (k < 0) return { tp: 0, fp: 0, fn: data.positives, tn: negatives };
    return { tp: data.tp[k], fp: data.fp[k], fn: data.fn[k], tn: data.tn[k] };
  }

  // the threshold in use: the slider's value once moved, else exactly the model's (a range
  // input may drop the last digit of 0.8232985543302491, and one image can sit on it)
  let current = data.threshold;
  function draw() {
    const t = current;
    shown.textContent = exact(t);
    const c = countsAt(t);
    const sens = ratio(c.tp, c.tp + c.fn), spec = ratio(c.tn, c.tn + c.fp);
    const prior = Math.min(Math.max(Number(prevalence.value) / 100, 0.001), 0.999);
    const ppvAt = ratio(sens * prior, sens * prior + (1 - spec) * (1 - prior));
    const npvAt = ratio(spec * (1 - prior), spec * (1 - prior) + (1 - sens) * prior);
    const put = (key, value, detail, ci) => {
      cells[key].textContent = percent(value);
      if (detail) cells[key].appendChild(el("small", {}, detail));
      const box = el("small", { className: "ci" }, ci ? "95\u00a0% CI " : "no interval: no cases");
      if (ci) {
        box.dataset.low = ci[0]; box.dataset.high = ci[1];
        box.appendChild(el("span", { className: "range" }, `${percent(ci[0])} – ${percent(ci[1])}`));
      }
      cells[key].appendChild(box);
    };
    const sensCi = wilson(c.tp, c.tp + c.fn), specCi = wilson(c.tn, c.tn + c.fp);
    // PPV and NPV at a typed prevalence rise with sensitivity and specificity: their ends bound it
    const at = (f) => (sensCi && specCi ? [f(sensCi[0], specCi[0]), f(sensCi[1], specCi[1])].sort((a, b) => a - b) : null);
    const ppvOf = (se, sp) => ratio(se * prior, se * prior + (1 - sp) * (1 - prior));
    const npvOf = (se, sp) => ratio(sp * (1 - prior), sp * (1 - prior) + (1 - se) * prior);
    put("sensitivity", sens, `${c.tp} of ${c.tp + c.fn} ${pos} found`, sensCi);
    put("specificity", spec, `${c.tn} of ${c.tn + c.fp} ${neg} cleared`, specCi);
    put("ppv", ratio(c.tp, c.tp + c.fp), `${c.tp} of ${c.tp + c.fp} positive calls right`, wilson(c.tp, c.tp + c.fp));
    put("npv", ratio(c.tn, c.tn + c.fn), `${c.tn} of ${c.tn + c.fn} negative calls right`, wilson(c.tn, c.tn + c.fn));
    put("ppv_at", ppvAt, `at ${(100 * prior).toFixed(1)}\u00a0% ${pos}, from ${c.fp} false positives of ${c.tn + c.fp} ${neg}`, at(ppvOf));
    put("npv_at", npvAt, `at ${(100 * prior).toFixed(1)}\u00a0% ${pos}, from ${c.fn} missed of ${c.tp + c.fn} ${pos}`, at(npvOf));
    words.textContent = `At threshold ${exact(t)}, ${c.fn} of the ${c.tp + c.fn} ${pos} images ` +
      `would be missed and ${c.fp} of the ${c.tn + c.fp} ${neg} images flagged.`;
  }
  slider.addEventListener("input", () => { current = Number(slider.value); draw(); });
  prevalence.addEventListener("input", draw);
  reset.addEventListener("click", () => { slider.value = data.threshold; current = data.threshold; draw(); });
  draw();
}
