"""The page `headstart serve` shows at /: drop or pick an image, or paste a text (whichever the
model reads), and see the label, the probabilities as bars and, when the server can, the
explanation. Everything is inline: no external asset, so it works offline, and the page's
Content-Security-Policy forbids loading anything from elsewhere. Every value from the
server or the user is written with textContent, never as HTML.
"""
from __future__ import annotations

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>headstart serve</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
 main { max-width: 760px; margin: 0 auto; padding: 24px; }
 h1 { font-size: 20px; margin: 0 0 4px; } .muted { color: #5f6b7a; font-size: 13px; }
 .card { background: #fff; border: 1px solid #dde2e8; border-radius: 8px; padding: 16px; margin: 16px 0; }
 #drop { border: 2px dashed #9aa7b6; border-radius: 8px; padding: 28px; text-align: center; cursor: pointer; }
 #drop.over { background: #eef4ff; border-color: #3d6fd8; }
 textarea { width: 100%; box-sizing: border-box; min-height: 110px; font: inherit; padding: 8px; }
 button { font: inherit; padding: 6px 14px; border-radius: 6px; border: 1px solid #3d6fd8; background: #3d6fd8;
          color: #fff; cursor: pointer; } button.plain { background: #fff; color: #3d6fd8; }
 #preview { width: 180px; height: auto; display: block; margin: 12px auto 0; }
 #label { font-size: 22px; font-weight: 600; }
 .bar { display: grid; grid-template-columns: 160px 1fr 64px; gap: 8px; align-items: center; margin: 4px 0; }
 .track { background: #e8ecf1; border-radius: 4px; height: 14px; overflow: hidden; }
 .fill { background: #3d6fd8; height: 100%; } .top .fill { background: #1f9d55; }
 .name { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; } .num { text-align: right; }
 #error { color: #b3261e; white-space: pre-wrap; } #explanation img { max-width: 100%; }
 .word { border-radius: 3px; padding: 0 1px; } [hidden] { display: none !important; }
</style></head>
<body><main>
 <h1>headstart serve</h1>
 <div class="muted" id="about">loading&hellip;</div>
 <div class="card" id="keyCard" hidden>
  <label>API key <input id="key" type="password" autocomplete="off"></label>
  <span class="muted">kept in this tab only</span>
 </div>
 <div class="card" id="imageCard" hidden>
  <div id="drop">Drop an image here, or <label><u>choose a file</u>
   <input id="file" type="file" accept="image/*" hidden></label></div>
  <img id="preview" alt="" hidden>
 </div>
 <div class="card" id="textCard" hidden>
  <textarea id="text" placeholder="Paste a text"></textarea>
  <p><button id="send">Predict</button></p>
 </div>
 <div class="card" id="result" hidden>
  <div class="muted">label</div><div id="label"></div>
  <div id="bars"></div>
  <p><button class="plain" id="why" hidden>Explain</button> <span class="muted" id="version"></span></p>
  <div id="explanation"></div>
 </div>
 <div id="error" role="alert"></div>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, last = null;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const key = $("key").value || sessionStorage.getItem("headstart-key") || "";
  if (key) { h["X-API-Key"] = key; sessionStorage.setItem("headstart-key", key); }
  return h;
}
function showError(text) { $("error").textContent = text || ""; }

async function call(path, body, isJson) {
  const response = await fetch(path, {method: "POST", body: body,
    headers: headers(isJson ? {"Content-Type": "application/json"} : {})});
  const answer = await response.json().catch(() => ({error: response.statusText}));
  if (!response.ok && !answer.predictions) {
    throw new Error(answer.error + (answer.hint ? "\\n" + answer.hint : ""));
  }
  return answer;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function showPrediction(answer) {
  const p = answer.predictions[0];
  $("result").hidden = false;
  $("explanation").replaceChildren();
  $("version").textContent = "model " + answer.model_version;
  if (p.error) { $("label").textContent = "-"; $("bars").replaceChildren(); showError(p.error); return; }
  $("label").textContent = p.label;
  const rows = Object.entries(p.probabilities).sort((a, b) => b[1] - a[1]);
  $("bars").replaceChildren(...rows.map(([name, prob]) => {
    const row = el("div", "bar" + (name === p.label ? " top" : ""));
    const track = el("div", "track"), fill = el("div", "fill");
    fill.style.width = (100 * prob).toFixed(1) + "%";
    track.append(fill);
    row.append(el("span", "name", name), track, el("span", "num", (100 * prob).toFixed(1) + "%"));
    return row;
  }));
  $("why").hidden = !info.explain;
}

function showExplanation(answer) {
  const box = $("explanation");
  box.replaceChildren();
  for (const item of answer.items) {
    for (const e of item.explanations) {
      box.append(el("div", "muted", e.role + ": " + e["class"] + " (" + answer.method + ")"));
      if (e.png_base64) {
        const img = el("img"); img.alt = "heat-map"; img.src = "data:image/png;base64," + e.png_base64;
        box.append(img);
      } else if (e.segments) {
        const top = Math.max(1e-9, ...e.segments.map((s) => Math.abs(s[1] || 0)));
        const para = el("p");
        for (const [piece, score] of e.segments) {
          const span = el("span", "word", piece);
          const a = 0.7 * Math.abs(score || 0) / top;  // the strongest word stays readable
          span.style.background = (score || 0) >= 0 ? `rgba(31,157,85,${a})` : `rgba(179,38,30,${a})`;
          para.append(span);
        }
        box.append(para);
      }
    }
  }
}

async function predictFile(file) {
  showError("");
  last = {file: file};
  $("preview").src = URL.createObjectURL(file); $("preview").hidden = false;
  const form = new FormData(); form.append("file", file, file.name);
  try { showPrediction(await call("/predict", form, false)); } catch (e) { showError(e.message); }
}

async function predictText() {
  showError("");
  last = {text: $("text").value};
  try { showPrediction(await call("/predict", JSON.stringify({texts: [last.text]}), true)); }
  catch (e) { showError(e.message); }
}

async function explainLast() {
  showError(""); $("explanation").textContent = "explaining\\u2026";
  let body, isJson = false;
  if (last.file) { body = new FormData(); body.append("file", last.file, last.file.name); }
  else { body = JSON.stringify({texts: [last.text]}); isJson = true; }
  try { showExplanation(await call("/explain", body, isJson)); }
  catch (e) { $("explanation").replaceChildren(); showError(e.message); }
}

// what the model reads -> its card (the server says which, in /health)
const CARDS = {image: "imageCard", text: "textCard"};

async function start() {
  info = await (await fetch("/health")).json();
  $("about").textContent = "model " + info.model_version + " (" + info.engine + ") reads " + info.reads + "s";
  $(CARDS[info.reads]).hidden = false;
  $("keyCard").hidden = !info.api_key_required;
  $("file").addEventListener("change", () => { if ($("file").files[0]) predictFile($("file").files[0]); });
  const drop = $("drop");
  drop.addEventListener("click", (e) => { if (e.target === drop) $("file").click(); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault(); drop.classList.remove("over");
    if (e.dataTransfer.files[0]) predictFile(e.dataTransfer.files[0]);
  });
  $("send").addEventListener("click", predictText);
  $("why").addEventListener("click", explainLast);
}
start().catch((e) => showError("the server did not answer: " + e.message));
</script>
</body></html>
"""


def page_html() -> str:
    return _PAGE
