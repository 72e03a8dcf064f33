"""The review page: one HTML document, no external resources (it works with no network).

It shows one drawn sample at a time, large, with its given label and the audit's suggestion, and a
few images of each candidate class beside it. Keys: Enter or y confirms the given label; the key
shown on a class picks it; x marks an image of no class; s or → skips; Backspace or ← goes back and
clears the previous answer. A progress bar and the live estimate (with its 95% interval) follow
every answer; "Apply to the audit" rewrites the audit from the answers so far (apply.py).
"""
from __future__ import annotations

import json

_PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>labelaudit review</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
header{display:flex;gap:2em;align-items:center;padding:.8em 1.4em;background:#fff;border-bottom:1px solid #dde}
header h1{font-size:1.1em;margin:0}
#bar{flex:1;height:.7em;background:#e4e7ec;border-radius:.35em;overflow:hidden}
#bar>div{height:100%;background:#3563c9;width:0}
main{display:flex;gap:2em;padding:1.4em;align-items:flex-start}
#sample{background:#fff;padding:1em;border-radius:.5em;box-shadow:0 1px 3px #0002;text-align:center}
#sample img{width:384px;height:384px;object-fit:contain;image-rendering:pixelated;background:#222}
.given{font-size:1.3em;margin:.6em 0 .2em}.muted{color:#667}
#classes{display:flex;flex-direction:column;gap:.5em;max-height:80vh;overflow:auto}
.cls{display:flex;align-items:center;gap:.5em;background:#fff;padding:.3em .6em;border-radius:.4em;
     border:2px solid transparent;cursor:pointer}
.cls.given{border-color:#3563c9}.cls.suggested{border-color:#d4862a}.cls.chosen{background:#dbe6ff}
.cls img{width:56px;height:56px;object-fit:contain;image-rendering:pixelated;background:#222}
kbd{display:inline-block;min-width:1.4em;text-align:center;font:600 .9em monospace;background:#eef;
    border:1px solid #99a;border-radius:.25em;padding:.05em .3em}
#help{font-size:.9em;line-height:1.8}
button{font-size:1em;padding:.4em 1em}
#done{display:none;font-size:1.2em}
</style></head><body>
<header><h1>labelaudit review</h1><div id="bar"><div></div></div>
<span id="progress">0 / 0</span><span id="estimate">no answer yet</span>
<button id="apply" title="Rewrite the audit from the answers so far">Apply to the audit</button></header>
<main>
<section id="sample"><img id="image" alt="the sample to verify"><div class="given">given label:
<b id="given"></b></div><div class="muted">the audit suggests <b id="suggested"></b>
&middot; sample <span id="sid"></span> &middot; <span id="status"></span></div>
<p id="done">Every drawn sample is answered. Apply the answers to the audit, or close this page.</p></section>
<section id="classes"></section>
<section id="help"><b>Keys</b><br><kbd>Enter</kbd> or <kbd>y</kbd> the given label is right<br>
the key of a class: it shows that class<br><kbd>x</kbd> none of the classes (not a valid example)<br>
<kbd>s</kbd> or <kbd>&rarr;</kbd> skip<br><kbd>Backspace</kbd> or <kbd>&larr;</kbd> back: clear the previous
answer<br><span class="muted">Answers are saved as you go; closing the page loses nothing.</span>
<p id="message" class="muted"></p></section></main>
<script>
const TOKEN = __TOKEN__;
const q = p => p + (p.includes("?") ? "&" : "?") + "t=" + encodeURIComponent(TOKEN);
let S = null, at = 0, history = [];
const $ = id => document.getElementById(id);
async function post(path, body) {
  const r = await fetch(q(path), {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const data = await r.json();
  if (!r.ok) { $("message").textContent = data.error || "request failed"; throw new Error(data.error); }
  return data;
}
function pct(x) { return (100 * x).toFixed(1) + "%"; }
function showTotals(d) {
  S.answered = d.answered;
  $("progress").textContent = d.answered + " / " + d.total + " answered";
  $("bar").firstElementChild.style.width = (100 * d.answered / Math.max(d.total, 1)) + "%";
  const e = d.estimate;
  $("estimate").textContent = e ? "noise rate " + pct(e.value) + " (95% interval " + pct(e.low) + "–" + pct(e.high)
      + ", " + e.n + " answers; the scan said " + pct(d.unsupervised) + ")" : "no answer yet";
}
function nextOpen(from) {
  for (let k = 0; k < S.items.length; k++) { const i = (from + k) % S.items.length; if (!S.items[i].label) return i; }
  return -1;
}
function show() {
  const done = at < 0;
  $("done").style.display = done ? "block" : "none";
  $("image").style.visibility = done ? "hidden" : "visible";
  if (done) return;
  const it = S.items[at];
  $("image").src = q("/image?id=" + encodeURIComponent(it.sample_id));
  $("given").textContent = it.given; $("suggested").textContent = it.suggested; $("sid").textContent = it.sample_id;
  $("status").textContent = it.label ? "answered: " + it.label : "not answered";
  for (const el of document.querySelectorAll(".cls")) {
    el.classList.toggle("given", el.dataset.name === it.given);
    el.classList.toggle("suggested", el.dataset.name === it.suggested && it.suggested !== it.given);
    el.classList.toggle("chosen", el.dataset.name === it.label);
    if (el.dataset.name === it.given) el.scrollIntoView({block: "nearest"});
  }
}
async function answer(label) {
  if (at < 0) return;
  const it = S.items[at];
  const d = await post("/api/answer", {sample_id: it.sample_id, label: label});
  it.label = label; history.push(at); showTotals(d);
  at = nextOpen(at + 1); show();
}
function skip() { if (at >= 0) { const n = nextOpen(at + 1); at = n === at ? at : n; show(); } }
async function back() {
  if (!history.length) return;
  const prev = history.pop(), it = S.items[prev];
  const d = await post("/api/answer", {sample_id: it.sample_id, label: ""});
  it.label = ""; at = prev; showTotals(d); show();
}
function buildClasses() {
  const box = $("classes");
  for (const name of S.classes) {
    const el = document.createElement("div");
    el.className = "cls"; el.dataset.name = name;
    const key = S.keys[name];
    el.innerHTML = (key ? "<kbd>" + key + "</kbd>" : "") + "<b></b>";
    el.querySelector("b").textContent = name;
    for (const id of S.examples[name] || []) {
      const img = document.createElement("img"); img.alt = name; img.src = q("/image?id=" + encodeURIComponent(id));
      el.appendChild(img);
    }
    el.addEventListener("click", () => answer(name));
    box.appendChild(el);
  }
}
document.addEventListener("keydown", ev => {
  if (!S || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const k = ev.key.length === 1 ? ev.key.toLowerCase() : ev.key;
  if (k === "Enter" || k === "y") { if (at >= 0) answer(S.items[at].given); }
  else if (k === "x") answer("none");
  else if (k === "s" || k === "ArrowRight") skip();
  else if (k === "Backspace" || k === "ArrowLeft") back();
  else { const name = S.classes.find(c => S.keys[c] === k); if (name) answer(name); else return; }
  ev.preventDefault();
});
$("apply").addEventListener("click", async () => {
  const d = await post("/api/apply", {});
  $("message").textContent = "Applied " + d.applied + " answers to the audit: " + d.n_flagged + " samples flagged.";
});
(async () => {
  const r = await fetch(q("/api/state")); S = await r.json();
  buildClasses(); showTotals(S); at = nextOpen(0); show();
  document.body.dataset.ready = "1";
})();
</script></body></html>
"""


def page_html(token: str) -> str:
    """The page, with the session's token for its requests."""
    return _PAGE.replace("__TOKEN__", json.dumps(token))
