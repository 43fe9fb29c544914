"""The page's own CSS and JavaScript, inlined into every file (no CDN, no font, no request)."""

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#1d1d1f;background:#fafafa}
nav{width:250px;overflow-y:auto;border-right:1px solid #ddd;padding:8px;background:#fff;flex:none}
nav h3{font-size:12px;text-transform:uppercase;color:#777;margin:10px 0 2px}
nav a{display:block;padding:1px 6px;color:#1d1d1f;text-decoration:none;border-radius:3px;font-size:13px}
nav a.on{background:#2456a6;color:#fff}
main{flex:1;overflow-y:auto;padding:12px 20px}
header{display:flex;gap:10px;align-items:center;position:sticky;top:0;background:#fafafa;padding:4px 0}
header h1{font-size:19px;margin:0;flex:1}
button{font-size:14px;padding:4px 12px}
.cols{display:flex;gap:18px;flex-wrap:wrap}
.cols>section{flex:1 1 380px;min-width:0;overflow-x:auto}
.formula{font-size:16px;background:#fff;border:1px solid #ddd;padding:8px 10px;border-radius:4px}
pre{background:#f3f3f0;border:1px solid #ddd;padding:6px;overflow-x:auto;font-size:12px;margin:4px 0 10px}
pre span{display:block;white-space:pre}pre span.hl{background:#fff1a8}
pre i{color:#999;font-style:normal;display:inline-block;width:3.5em}
.src{font-size:12px;color:#555}
table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:2px 8px;text-align:left}
.tensor{margin:10px 0 16px}.tensor b{font-family:monospace}
.note{color:#8a4b00;font-size:13px}.maps{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}
canvas{image-rendering:pixelated;border:1px solid #ccc;background:#fff}
#tip{position:fixed;pointer-events:none;background:#222;color:#fff;padding:3px 7px;border-radius:3px;
font:12px monospace;display:none;z-index:9}
.meta{color:#555;font-size:13px}
"""

JS = r"""
(function(){
"use strict";
var data = JSON.parse(document.getElementById("glassformer-step").textContent);
var stages = data.stages, cur = -1, LOW = -1e30, LOWEST = -3.4028234663852886e38;
var byId = {}; stages.forEach(function(s, k){ byId[s.id] = k; });
function el(tag, attrs, text){ var e = document.createElement(tag);
  for (var k in (attrs || {})) e.setAttribute(k, attrs[k]); if (text != null) e.textContent = text; return e; }
function lookup(r){ return stages[byId[r[0]]].tensors[r[1]]; }
function derive(t){  // island.OPS in float32: a Float32Array store rounds each result once
  var xs = t.args.map(function(r){ return decode(lookup(r)); }), x = xs[0], y = xs[1], s = t.scale || 0;
  var a = new Float32Array(x.length), i;
  if (t.op === "scale") for (i = 0; i < a.length; i++) a[i] = s * x[i];
  else if (t.op === "scale_square") for (i = 0; i < a.length; i++) a[i] = Math.fround(s * x[i]) * x[i];
  else if (t.op === "add") for (i = 0; i < a.length; i++) a[i] = x[i] + y[i % y.length];   // y: trailing
  else if (t.op === "mask") for (i = 0; i < a.length; i++) a[i] = y[i % y.length] !== 0 ? x[i] : LOWEST;
  else throw new Error("unknown op " + t.op);
  return a; }
function decode(t){ if (t._a) return t._a;
  if (t.ref) return (t._a = decode(lookup(t.ref)));
  if (t.op) return (t._a = derive(t));
  var bin = atob(t.b64), n = bin.length >> 2;
  var dv = new DataView(new ArrayBuffer(bin.length)), a = new Float32Array(n);
  for (var i = 0; i < bin.length; i++) dv.setUint8(i, bin.charCodeAt(i));
  for (var j = 0; j < n; j++) a[j] = dv.getFloat32(4 * j, true);
  t._a = a; return a; }
var SAYS = {scale: "s \u00d7 x", scale_square: "(s \u00d7 x) \u00d7 x", add: "x + y",
  mask: "x where y \u2260 0, else float32's lowest"};
function stored(t){  // where a reference or a derivation's numbers come from, in words
  function at(r){ return "\u201c" + r[1] + "\u201d" + (r[0] === stages[cur].id ? " above" :
    " of " + stages[byId[r[0]]].title); }
  if (t.ref) return "the same numbers as " + at(t.ref) + ", stored once";
  return "stored as " + SAYS[t.op] + (t.op.indexOf("scale") === 0 ? " with s = " + (+t.scale.toPrecision(7)) : "") +
    ", x = " + at(t.args[0]) + (t.args[1] ? ", y = " + at(t.args[1]) : "") +
    ": the page recomputes it in float32, the model's numbers exactly"; }
function fmt(v){ return v <= LOW ? "masked (" + v.toExponential(3) + ")" : Math.abs(v) >= 1e4 ||
  (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(4) : v.toFixed(5); }
function colour(v, lo, hi){
  if (!isFinite(v) || v <= LOW) return [200, 200, 200];
  if (lo >= 0) { var s = hi > 0 ? Math.min(1, v / hi) : 0;
    return [255 - 225 * s, 255 - 175 * s, 255 - 90 * s]; }
  var m = Math.max(-lo, hi) || 1, x = Math.max(-1, Math.min(1, v / m));
  return x >= 0 ? [255, 255 - 200 * x, 255 - 210 * x] : [255 + 210 * x, 255 + 170 * x, 255]; }
function range(a){ var lo = Infinity, hi = -Infinity;
  for (var i = 0; i < a.length; i++){ var v = a[i]; if (v > LOW && isFinite(v)){ if (v < lo) lo = v; if (v > hi) hi = v; } }
  return lo > hi ? [0, 0] : [lo, hi]; }
function labelsFor(axis, n){ if (axis && axis.indexOf("token") >= 0 && data.tokens.length === n) return data.tokens;
  return null; }
var tip = el("div", {id: "tip"}); document.body.appendChild(tip);
function heatmap(box, name, a, rows, cols, offset, lead, axes, scale){
  var rl = labelsFor(axes[axes.length - 2], rows), cl = labelsFor(axes[axes.length - 1], cols);
  var cs = Math.max(2, Math.min(26, Math.floor(620 / cols), Math.floor(420 / rows)));
  var mx = rl ? 70 : 4, my = cl ? 56 : 4;
  var cv = el("canvas", {width: mx + cols * cs + 4, height: my + rows * cs + 4, "data-tensor": name,
    "data-lead": JSON.stringify(lead), "data-mx": mx, "data-my": my, "data-cs": cs, "data-rows": rows,
    "data-cols": cols});
  var g = cv.getContext("2d"), img = g.createImageData(cols * cs, rows * cs);
  for (var r = 0; r < rows; r++) for (var c = 0; c < cols; c++){
    var rgb = colour(a[offset + r * cols + c], scale[0], scale[1]);
    for (var y = 0; y < cs; y++) for (var x = 0; x < cs; x++){
      var p = 4 * ((r * cs + y) * cols * cs + c * cs + x);
      img.data[p] = rgb[0]; img.data[p + 1] = rgb[1]; img.data[p + 2] = rgb[2]; img.data[p + 3] = 255; } }
  g.putImageData(img, mx, my); g.fillStyle = "#333"; g.font = Math.min(12, cs + 2) + "px monospace";
  if (rl) rl.forEach(function(t, r){ g.fillText(t.slice(0, 8), 2, my + r * cs + cs * 0.8); });
  if (cl) cl.forEach(function(t, c){ g.save(); g.translate(mx + c * cs + cs * 0.75, my - 3);
    g.rotate(-Math.PI / 3); g.fillText(t.slice(0, 7), 0, 0); g.restore(); });
  cv.addEventListener("mousemove", function(e){
    var b = cv.getBoundingClientRect(), c = Math.floor((e.clientX - b.left - 1 - mx) / cs),
        r = Math.floor((e.clientY - b.top - 1 - my) / cs);
    if (r < 0 || c < 0 || r >= rows || c >= cols){ tip.style.display = "none"; return; }
    var v = a[offset + r * cols + c], idx = lead.concat([r, c]);
    tip.textContent = name + "[" + idx.join(", ") + "] = " + fmt(v) +
      (rl ? "  row: " + rl[r] : "") + (cl ? "  col: " + cl[c] : "");
    tip.setAttribute("data-value", String(v)); tip.setAttribute("data-index", JSON.stringify(idx));
    tip.style.left = (e.clientX + 14) + "px"; tip.style.top = (e.clientY + 10) + "px"; tip.style.display = "block"; });
  cv.addEventListener("mouseleave", function(){ tip.style.display = "none"; });
  var wrap = el("div"); if (lead.length) wrap.appendChild(el("div", {"class": "meta"}, axes[0] + " " + lead[0]));
  wrap.appendChild(cv); box.appendChild(wrap); }
function legend(box, scale){
  var cv = el("canvas", {width: 200, height: 12, "class": "legend"}), g = cv.getContext("2d");
  for (var x = 0; x < 200; x++){ var v = scale[0] + (scale[1] - scale[0]) * x / 199;
    if (scale[0] < 0){ var m = Math.max(-scale[0], scale[1]); v = -m + 2 * m * x / 199; }
    var c = colour(v, scale[0], scale[1]); g.fillStyle = "rgb(" + c.join(",") + ")"; g.fillRect(x, 0, 1, 12); }
  var m = Math.max(-scale[0], scale[1]), row = el("div", {"class": "meta"});
  row.appendChild(document.createTextNode("colour scale " + fmt(scale[0] < 0 ? -m : scale[0]) + " "));
  row.appendChild(cv); row.appendChild(document.createTextNode(" " + fmt(scale[0] < 0 ? m : scale[1])));
  box.appendChild(row); }
function tensorBox(box, name, t, axes){
  var d = el("div", {"class": "tensor"}), n = t.shape.reduce(function(p, q){ return p * q; }, 1);
  d.appendChild(el("b", null, name)); d.appendChild(document.createTextNode("  shape [" + t.shape.join(", ") +
    "]" + (t.norm != null ? ", norm " + fmt(t.norm) : "")));
  box.appendChild(d); axes = axes || [];
  if (t.ref || t.op) d.appendChild(el("div", {"class": "meta"}, stored(t)));
  if (t.summary){
    d.appendChild(el("div", {"class": "note"}, "summarised: its " + n.toLocaleString() + " numbers are more than " +
      t.limit.toLocaleString() + ", so the page keeps its row norms, a histogram and the top-left 64×64 block (shown)."));
    var blk = decode(t.summary.block), bs = t.summary.block.shape, sc = range(blk), maps = el("div", {"class": "maps"});
    legend(d, sc); d.appendChild(maps); heatmap(maps, name + " (top-left block)", blk, bs[0], bs[1], 0, [], ["row", "col"], sc);
    var rn = decode(t.summary.row_norms); d.appendChild(el("div", {"class": "meta"}, "row norms: " + rn.length +
      " rows, largest " + fmt(range(rn)[1])));
    var h = t.summary.histogram.counts, cv = el("canvas", {width: 256, height: 60}), g = cv.getContext("2d"),
        top = Math.max.apply(null, h) || 1, ed = decode(t.summary.histogram.edges);
    h.forEach(function(c, k){ g.fillStyle = "#2456a6"; g.fillRect(k * 4, 60 - 58 * c / top, 3, 58 * c / top); });
    d.appendChild(el("div", {"class": "meta"}, "histogram from " + fmt(ed[0]) + " to " + fmt(ed[ed.length - 1])));
    d.appendChild(cv); return; }
  var a = decode(t), s = t.shape.slice(); if (!s.length) return;
  if (s.length === 1) s = [1, s[0]];
  var rows = s[s.length - 2], cols = s[s.length - 1], lead = s.length === 3 ? s[0] : 1, sc = range(a);
  if (axes.length < s.length) axes = ["row"].concat(axes);
  legend(d, sc); var maps = el("div", {"class": "maps"}); d.appendChild(maps);
  for (var h2 = 0; h2 < Math.min(lead, 16); h2++)
    heatmap(maps, name, a, rows, cols, h2 * rows * cols, s.length === 3 ? [h2] : [], axes, sc);
  if (lead > 16) d.appendChild(el("div", {"class": "note"}, "showing the first 16 of " + lead)); }
function codeBox(box, r){
  var src = data.code[r.name]; if (!src) return;
  box.appendChild(el("div", {"class": "src"}, src.file + ":" + src.line + "  " + src.name));
  var pre = el("pre");
  src.lines.forEach(function(line, k){ var s = el("span", r.marks.indexOf(k) >= 0 ? {"class": "hl"} : null);
    s.appendChild(el("i", null, String(src.line + k))); s.appendChild(document.createTextNode(line)); pre.appendChild(s); });
  box.appendChild(pre); }
function tokensTable(box){
  var t = el("table"), h = el("tr"); ["t", "token", "id", "target"].forEach(function(x){ h.appendChild(el("th", null, x)); });
  t.appendChild(h); data.tokens.forEach(function(tok, k){ var r = el("tr");
    [k, JSON.stringify(tok), data.ids[k], data.target_labels[k] == null ? "" : data.target_labels[k]].forEach(function(x){
      r.appendChild(el("td", null, String(x))); }); t.appendChild(r); });
  box.appendChild(t); }
function show(k){
  if (k < 0 || k >= stages.length || k === cur) return;
  cur = k; var s = stages[k], main = document.getElementById("stage");
  main.textContent = ""; tip.style.display = "none";
  document.getElementById("title").textContent = (k + 1) + "/" + stages.length + "  " + s.title;
  var f = el("div", {"class": "formula"}); f.innerHTML = s.formula; main.appendChild(f);
  if (s.note) main.appendChild(el("p", {"class": "note"}, s.note));
  var cols = el("div", {"class": "cols"}), nums = el("section"), code = el("section");
  cols.appendChild(nums); cols.appendChild(code); main.appendChild(cols);
  code.appendChild(el("h2", null, "The code that ran")); s.code.forEach(function(r){ codeBox(code, r); });
  nums.appendChild(el("h2", null, "The numbers"));
  if (s.id === "tokens") tokensTable(nums);
  var keys = Object.keys(s.scalars);
  if (keys.length){ var tb = el("table"); keys.forEach(function(n){ var r = el("tr"), v = s.scalars[n];
    r.appendChild(el("th", null, n)); r.appendChild(el("td", null, typeof v === "number" && !Number.isInteger(v) ? fmt(v) : JSON.stringify(v)));
    tb.appendChild(r); }); nums.appendChild(tb); }
  Object.keys(s.tensors).forEach(function(n){ tensorBox(nums, n, s.tensors[n], s.axes[n]); });
  document.querySelectorAll("nav a").forEach(function(a, j){ a.className = j === k ? "on" : ""; });
  var link = document.querySelectorAll("nav a")[k]; if (link && link.scrollIntoView) link.scrollIntoView({block: "nearest"});
  document.body.setAttribute("data-stage", s.id);
  if (location.hash !== "#" + s.id) location.hash = s.id; }
var nav = document.querySelector("nav"), phase = null;
stages.forEach(function(s, k){
  if (s.phase !== phase){ phase = s.phase; nav.appendChild(el("h3", null, phase)); }
  var a = el("a", {href: "#" + s.id}, s.title); nav.appendChild(a); });
document.getElementById("prev").onclick = function(){ show(cur - 1); };
document.getElementById("next").onclick = function(){ show(cur + 1); };
document.addEventListener("keydown", function(e){
  if (e.key === "ArrowRight" || e.key === "ArrowDown"){ show(cur + 1); e.preventDefault(); }
  if (e.key === "ArrowLeft" || e.key === "ArrowUp"){ show(cur - 1); e.preventDefault(); } });
function fromHash(){ var id = decodeURIComponent(location.hash.slice(1)); show(id in byId ? byId[id] : (cur < 0 ? 0 : cur)); }
window.addEventListener("hashchange", fromHash);
fromHash();
document.body.setAttribute("data-ready", "1");
})();
"""
