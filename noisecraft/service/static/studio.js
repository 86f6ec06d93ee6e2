// noisecraft studio: a page over the service's HTTP API (GET /v1/models, POST /v1/jobs, the events stream, cancel,
// results, history). Plain browser JavaScript, no build step. Every form field is generated from the parameter
// descriptions of GET /v1/models, so every modality works with no change here.
//
// Tokens: the page keeps the bearer token in localStorage and sends it as "Authorization: Bearer" on every request.
// Nothing carries it in a URL: the event stream is read with fetch() and a stream reader (EventSource cannot send
// headers), and results (images too) are fetched with the header and shown through blob: URLs.
//
// Seeds reach 2**63, past JavaScript's exact integers (2**53): seeds are kept as decimal strings (parseJSON quotes
// long "seed" numbers before parsing) and written into request bodies as they are.
"use strict";

const TOKEN_KEY = "noisecraft.token";
const MODEL_KEY = "noisecraft.model";
const BASIC = ["steps", "guidance", "sampler", "n", "batch_size", "num_samples", "schedule"];
const LABELS = {n: "batch size (n)", batch_size: "batch size", num_samples: "samples"};
const TEXT_TYPES = /^(text\/|application\/(json|jsonl|x-ndjson)|chemical\/)/;
const FINISHED = ["succeeded", "failed", "cancelled", "refused"];
const MAX_TEXT = 20000;
const $ = (id) => document.getElementById(id);

const state = {
  models: [], model: null, fields: {}, images: {},
  jobs: new Map(),      // job id -> {job, card, stream}
  current: null,        // id of the job the progress bar follows
  lastSeed: null,
  next: null,           // the history page after the one shown
};

// ---------- HTTP ----------

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

function headers(extra = {}) {
  const t = token();
  return t ? {...extra, Authorization: "Bearer " + t} : extra;
}

function parseJSON(text) {
  // seeds above 2**53 would lose digits as numbers: keep long ones as strings
  return JSON.parse(text.replace(/("seed"\s*:\s*)(\d{16,})/g, '$1"$2"'));
}

class ApiError extends Error {
  constructor(status, body) {
    super(typeof body.detail === "string" ? body.detail : `HTTP ${status}`);
    this.status = status; this.body = body;
  }
}

async function api(path, options = {}) {
  const response = await fetch(path, {...options, headers: headers(options.headers)});
  const text = await response.text();
  let body = {};
  try { body = text ? parseJSON(text) : {}; } catch (_) { body = {detail: text.slice(0, 300)}; }
  if (!response.ok) {
    const error = new ApiError(response.status, body);
    if (response.status === 401) needToken(error.message);
    throw error;
  }
  return body;
}

async function fetchBlob(url) {
  const response = await fetch(url, {headers: headers()});
  if (!response.ok) throw new ApiError(response.status, {detail: `HTTP ${response.status} for ${url}`});
  return response.blob();
}

function needToken(detail) {
  showMessage(`${detail}. This server needs a token: enter it at the top right and press Save.`);
  $("token").focus();
}

// ---------- small DOM helpers ----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

function showMessage(text, kind = "error") {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = kind === "error" ? "" : kind;
}

function label(name) { return LABELS[name] || name.replace(/_/g, " "); }

function format(value) {
  if (Array.isArray(value)) return value.join(", ");
  if (value && typeof value === "object") return JSON.stringify(value);
  return String(value);
}

// ---------- models and the generated form ----------

async function loadModels() {
  const select = $("model");
  let body;
  try {
    body = await api("/v1/models");
  } catch (error) {
    if (error.status !== 401) showMessage(`Could not list the models: ${error.message}`);
    return false;
  }
  state.models = body.models;
  select.replaceChildren(...state.models.map((m) => el("option", {
    value: m.name, disabled: Boolean(m.error),
    text: `${m.name} (${m.modality})${m.error ? " — unavailable" : ""}`})));
  if (!state.models.length) { showMessage("This server has no models (start it with --models DIR)."); return false; }
  const saved = localStorage.getItem(MODEL_KEY);
  const usable = state.models.filter((m) => !m.error);
  const pick = usable.find((m) => m.name === saved) || usable[0] || state.models[0];
  selectModel(pick.name);
  return true;
}

function selectModel(name, keep = true) {
  const model = state.models.find((m) => m.name === name);
  if (!model) { showMessage(`This server has no model ${name}.`); return false; }
  const before = keep ? snapshot() : {};
  state.model = model;
  $("model").value = name;
  localStorage.setItem(MODEL_KEY, name);
  $("model-info").textContent = model.error ? `Unavailable: ${model.error}` :
    `${model.modality} model${model.summary ? ": " + model.summary : ""}`;
  buildFields(model.parameters || []);
  for (const [key, saved] of Object.entries(before)) {
    const field = state.fields[key];
    if (field && field.param.kind === saved.kind) setRaw(field, saved.raw);
  }
  $("generate").disabled = Boolean(model.error);
  return true;
}

function buildFields(parameters) {
  const groups = {prompt: $("prompt-fields"), basic: $("basic-fields"), image: $("image-fields"),
                  more: $("more-fields")};
  for (const group of Object.values(groups)) group.replaceChildren();
  state.fields = {}; state.images = {};
  const prompts = parameters.filter((p) => /prompt/.test(p.name) && (p.kind === "str" || p.kind === "strings"));
  const images = parameters.filter((p) => p.kind === "image").map((p) => p.name);
  // parameters whose help names an image parameter (an img2img strength, a resize switch) go with the uploads
  const aboutImages = (p) => images.some((name) => (p.help || "").includes(name));
  for (const param of [...prompts, ...parameters.filter((p) => !prompts.includes(p))]) {
    const where = prompts.includes(param) ? "prompt" : param.kind === "image" || aboutImages(param) ? "image"
      : BASIC.includes(param.name) ? "basic" : "more";
    const field = makeField(param, where === "prompt");
    state.fields[param.name] = field;
    groups[where].append(field.wrap);
  }
  $("image-set").hidden = !groups.image.children.length;
  $("more-set").hidden = !groups.more.children.length;
}

function makeField(param, big) {
  const id = "param-" + param.name;
  const help = param.help || "";
  let input, extra = null;
  const common = {id, name: param.name, title: help, "data-kind": param.kind};
  switch (param.kind) {
    case "int":
    case "float":
      input = el("input", {...common, type: "number", min: param.minimum, max: param.maximum,
                           step: param.kind === "int" ? 1 : "any", placeholder: param.default ?? "default"});
      break;
    case "bool":
      input = el("input", {...common, type: "checkbox"});
      break;
    case "choice":
      input = el("select", common);
      if (param.default === undefined || param.default === null) {
        input.append(el("option", {value: "", text: "(default)"}));
      }
      for (const choice of param.choices || []) input.append(el("option", {value: choice, text: choice}));
      break;
    case "strings":
      input = el("textarea", {...common, rows: big ? 2 : 2, placeholder: "one per line"});
      break;
    case "image":
      input = el("input", {...common, type: "file", accept: "image/*"});
      extra = el("div", {class: "row"},
        el("img", {class: "preview", alt: "", hidden: true}),
        el("button", {type: "button", text: "clear", hidden: true, onclick: () => setImage(param.name, null)}));
      input.addEventListener("change", () => readImage(param.name, input.files[0]));
      break;
    default:  // str
      input = big ? el("textarea", {...common, rows: 2, maxlength: param.maximum, placeholder: help})
                  : el("input", {...common, type: "text", maxlength: param.maximum});
      if (big) input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) $("form").requestSubmit();
      });
  }
  const text = label(param.name) + (param.required ? " *" : "");
  const wrap = param.kind === "bool"
    ? el("div", {class: "field check", title: help}, input, el("label", {for: id, text}))
    : el("div", {class: "field" + (big || param.kind === "image" || param.kind === "strings" ? " wide" : ""),
                 title: help}, el("label", {for: id, text}), input, extra);
  const field = {param, input, wrap, extra};
  setValue(field, param.default);
  input.addEventListener("input", () => wrap.classList.remove("invalid"));
  return field;
}

function setValue(field, value) {
  const {param, input} = field;
  if (param.kind === "image") return;  // uploads are not re-sent from history (the server keeps them privately)
  if (param.kind === "bool") input.checked = rawOf(field, value);
  else input.value = rawOf(field, value);
  field.wrap.classList.remove("invalid");
}

function rawOf(field, value) {
  const {kind} = field.param;
  if (kind === "bool") return Boolean(value);
  if (kind === "strings") return value == null ? "" : [].concat(value).join("\n");
  return value == null ? "" : String(value);
}

// What the user changed (values still at their model's default are left to the next model's defaults).
function snapshot() {
  const saved = {};
  for (const [name, field] of Object.entries(state.fields)) {
    if (field.param.kind === "image") continue;
    const raw = field.param.kind === "bool" ? field.input.checked : field.input.value;
    if (raw !== rawOf(field, field.param.default)) saved[name] = {kind: field.param.kind, raw};
  }
  return saved;
}

function setRaw(field, raw) {
  if (field.param.kind === "bool") field.input.checked = raw;
  else if (field.param.kind !== "choice" || [...field.input.options].some((o) => o.value === raw)) {
    field.input.value = raw;
  }
}

function readImage(name, file) {
  if (!file) return setImage(name, null);
  const reader = new FileReader();
  reader.onload = () => setImage(name, reader.result);  // a data: URL; the API takes it as base64
  reader.onerror = () => showMessage(`Could not read ${file.name}.`);
  reader.readAsDataURL(file);
}

function setImage(name, dataUrl) {
  const field = state.fields[name];
  if (!field) return;
  const [preview, clear] = field.extra.children;
  if (dataUrl) state.images[name] = dataUrl; else delete state.images[name];
  preview.hidden = clear.hidden = !dataUrl;
  preview.src = dataUrl || "";
  if (!dataUrl) field.input.value = "";
  field.wrap.classList.remove("invalid");
}

function collect() {
  const params = {};
  for (const [name, field] of Object.entries(state.fields)) {
    const {param, input} = field;
    if (param.kind === "image") {
      if (state.images[name]) params[name] = state.images[name];
      continue;
    }
    if (param.kind === "bool") { params[name] = input.checked; continue; }
    const raw = input.value;
    if (param.kind === "int" || param.kind === "float") {
      if (input.validity && input.validity.badInput) throw fieldError(name, `${label(name)}: not a number`);
      if (raw.trim() !== "") params[name] = Number(raw);
    } else if (param.kind === "strings") {
      const items = raw.split("\n").map((s) => s.trim()).filter(Boolean);
      if (items.length) params[name] = items;
    } else if (raw.trim() !== "") {
      params[name] = raw;
    }
  }
  return params;
}

function fieldError(name, message) {
  const error = new Error(message);
  error.parameter = name;
  return error;
}

function seedValue() {
  const raw = $("seed").value.trim();
  if (!raw) return null;
  if (!/^\d{1,19}$/.test(raw) || BigInt(raw) >= 2n ** 63n) {
    throw fieldError("seed", "Seed: a whole number from 0 to 2^63 - 1, or empty for a random one");
  }
  return BigInt(raw).toString();
}

function randomSeed() {
  const words = crypto.getRandomValues(new Uint32Array(2));
  return ((BigInt(words[0] & 0x7fffffff) << 32n) | BigInt(words[1])).toString();
}

function markInvalid(name) {
  const field = name === "seed" ? {wrap: $("seed").closest(".field"), input: $("seed")} : state.fields[name];
  if (!field) return;
  field.wrap.classList.add("invalid");
  const details = field.wrap.closest("details");
  if (details) details.open = true;
  field.input.focus();
}

// ---------- jobs ----------

async function submit(event) {
  event.preventDefault();
  showMessage("");
  for (const node of document.querySelectorAll(".invalid")) node.classList.remove("invalid");
  if (!state.model) return;
  let params, seed;
  try {
    params = collect();
    seed = seedValue();
  } catch (error) {
    showMessage(error.message);
    if (error.parameter) markInvalid(error.parameter);
    return;
  }
  // the seed is written as it is: a JavaScript number would round seeds above 2**53
  const body = JSON.stringify({model: state.model.name, params}).slice(0, -1) + `,"seed":${seed ?? "null"}}`;
  $("generate").disabled = true;
  try {
    const created = await api("/v1/jobs", {method: "POST", body, headers: {"Content-Type": "application/json"}});
    const job = {id: created.id, model: state.model.name, modality: state.model.modality, state: created.state,
                 position: created.position, seed: String(created.seed), params, progress: {done: 0, total: 0},
                 results: []};
    for (const [name, value] of Object.entries(params)) {
      if (state.images[name] === value) params[name] = "(uploaded image)";
    }
    state.lastSeed = job.seed;
    state.current = job.id;
    addJob(job, true);
    follow(job.id);
  } catch (error) {
    showRefusal(error);
  } finally {
    $("generate").disabled = Boolean(state.model && state.model.error);
  }
}

function showRefusal(error) {
  const body = error.body || {};
  if (body.refused) {
    showMessage(`Refused: ${body.reason}${body.check ? ` (check: ${body.check})` : ""}`);
    $("status").textContent = "refused";
  } else if (error.status === 429) {
    showMessage(`${error.message}. Try again later.`);
  } else if (error.status !== 401) {
    showMessage(error.message || String(error));
    if (body.parameter) markInvalid(body.parameter);
  }
}

function addJob(job, front) {
  let entry = state.jobs.get(job.id);
  if (!entry) {
    entry = {job, card: el("article", {class: "card", "data-job": job.id})};
    state.jobs.set(job.id, entry);
    const gallery = $("gallery");
    if (front) gallery.prepend(entry.card); else gallery.append(entry.card);
  }
  entry.job = job;
  renderCard(entry);
  if (job.id === state.current) updateMain(job);
  return entry;
}

async function follow(id) {
  const entry = state.jobs.get(id);
  if (!entry || entry.stream) return;
  const controller = new AbortController();
  entry.stream = controller;
  try {
    const response = await fetch(`/v1/jobs/${id}/events`, {headers: headers(), signal: controller.signal});
    if (!response.ok) throw new ApiError(response.status, {detail: `events: HTTP ${response.status}`});
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      buffer = buffer.replace(/\r\n/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (onEvent(entry, block)) { controller.abort(); return; }
      }
    }
  } catch (error) {
    if (controller.signal.aborted) return;
  } finally {
    entry.stream = null;
  }
  poll(id);  // the stream broke before its "done" event: ask until the job ends
}

function onEvent(entry, block) {
  let event = "message", data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const key = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (key === "event") event = value; else if (key === "data") data += (data ? "\n" : "") + value;
  }
  if (!data) return false;
  const payload = parseJSON(data);
  const job = entry.job;
  if (event === "state") {
    job.state = payload.state; job.position = payload.position;
  } else if (event === "progress") {
    job.progress = payload;
  } else if (event === "done") {
    addJob(normalize(payload));
    finished(payload);
    return true;
  }
  addJob(job);
  return false;
}

async function poll(id) {
  for (;;) {
    let job;
    try {
      job = normalize(await api(`/v1/jobs/${id}`));
    } catch (error) {
      if (error.status === 404 || error.status === 401) return;
    }
    if (job) {
      addJob(job);
      if (FINISHED.includes(job.state)) { finished(job); return; }
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

function normalize(job) {
  job.seed = job.seed == null ? null : String(job.seed);
  return job;
}

function finished(job) {
  refreshHealth();
  if (job.id !== state.current) return;
  if (job.state === "refused") showMessage(`Refused: ${job.refusal || "by a check"}`);
  else if (job.state === "failed") showMessage(`Failed: ${job.error || "no reason given"}`);
}

async function cancelJob(id) {
  try {
    addJob(normalize(await api(`/v1/jobs/${id}/cancel`, {method: "POST"})));
  } catch (error) {
    showMessage(`Cancel: ${error.message}`);
  }
}

function updateMain(job) {
  const bar = $("progress"), total = job.progress && job.progress.total;
  const active = !FINISHED.includes(job.state);
  if (job.state === "succeeded") { bar.max = 1; bar.value = 1; }
  else if (total) { bar.max = total; bar.value = job.progress.done; }
  else if (job.state === "queued") { bar.removeAttribute("value"); }
  $("status").textContent = statusText(job);
  $("cancel").disabled = !active;
}

function statusText(job) {
  const total = job.progress && job.progress.total;
  if (job.state === "queued") return job.position == null ? "queued" : `queued, position ${job.position + 1}`;
  if (job.state === "running") return total ? `running: step ${job.progress.done} / ${total}` : "running";
  if (job.state === "succeeded" && job.timings && job.timings.seconds != null) {
    return `done in ${job.timings.seconds.toFixed(1)} s`;
  }
  return job.state + (job.cancel_requested && job.state !== "cancelled" ? " (cancelling)" : "");
}

// ---------- gallery ----------

function renderCard(entry) {
  const {job, card} = entry;
  card.dataset.state = job.state;
  const active = !FINISHED.includes(job.state);
  const head = el("div", {class: "card-head"},
    el("span", {}, el("strong", {text: job.model}), " · seed ",
       el("span", {class: "seed-value", text: job.seed ?? "?"})),
    el("span", {class: "state " + job.state, text: statusText(job)}));
  const parts = [head];
  if (active) {
    const bar = el("progress", {max: job.progress.total || 1});
    if (job.progress.total) bar.value = job.progress.done; else bar.removeAttribute("value");
    parts.push(bar);
  }
  if (job.state === "refused") {
    parts.push(el("div", {class: "reason", text: `Refused: ${job.refusal || "by a check"}`}));
  }
  if (job.state === "failed") {
    parts.push(el("div", {class: "reason", text: `Failed: ${job.error || "no reason given"}`}));
  }
  const results = job.state === "succeeded" ? renderResults(entry) : null;
  if (results) parts.push(results);
  parts.push(renderParams(job));
  const actions = el("div", {class: "card-actions"},
    el("button", {type: "button", class: "reuse-params", text: "Reuse parameters",
                  title: "Fill the form with this job's model, parameters and seed", onclick: () => reuse(job, true)}),
    el("button", {type: "button", class: "reuse-seed", text: "Reuse seed", onclick: () => reuse(job, false)}));
  if (active) {
    actions.append(el("button", {type: "button", class: "cancel", text: "Cancel", onclick: () => cancelJob(job.id)}));
  }
  parts.push(actions);
  // results keep their loaded blobs: re-render them only when the job's state changes
  card.replaceChildren(...parts);
}

function renderParams(job) {
  const list = el("dl", {class: "params"});
  for (const [key, value] of Object.entries(job.params || {})) {
    if (value === null || value === undefined || value === "") continue;
    const shown = typeof value === "string" && value.startsWith("uploads/") ? "(uploaded image)" : format(value);
    list.append(el("dt", {text: label(key)}), el("dd", {text: shown}));
  }
  if (job.timings && job.timings.seconds != null) {
    list.append(el("dt", {text: "time"}), el("dd", {text: `${job.timings.seconds.toFixed(2)} s`}));
  }
  return list;
}

function renderResults(entry) {
  const {job} = entry;
  if (!(job.results || []).length) return null;  // the "state" event comes before the "done" event's results
  if (entry.results) return entry.results;
  const images = el("div", {class: "images"}), texts = el("div"), files = el("div", {class: "files"});
  for (const result of job.results || []) {
    const link = el("a", {href: "#", class: "download", "data-url": result.url, text: `⤓ ${result.name}`,
                          title: `Download ${result.name} (${result.media_type})`,
                          onclick: (event) => { event.preventDefault(); download(result.url, result.name); }});
    files.append(link);
    if (result.media_type.startsWith("image/") && !/_grid\.\w+$/.test(result.name)) {
      const img = el("img", {alt: result.name, "data-url": result.url, title: "Click: use as the init image"});
      img.addEventListener("click", () => useAsInit(img));
      images.append(el("figure", {}, img));
      fetchBlob(result.url).then((blob) => { img.src = URL.createObjectURL(blob); })
        .catch((error) => { img.alt = `${result.name}: ${error.message}`; });
    } else if (result.media_type.startsWith("video/")) {
      const video = el("video", {controls: "", loop: "", muted: "", "data-url": result.url, title: result.name});
      images.append(el("figure", {}, video));
      fetchBlob(result.url).then((blob) => { video.src = URL.createObjectURL(blob); })
        .catch((error) => { video.title = `${result.name}: ${error.message}`; });
    } else if (TEXT_TYPES.test(result.media_type)) {
      const pre = el("pre", {class: "text", "data-url": result.url, text: "loading…"});
      texts.append(pre);
      fetchBlob(result.url).then((blob) => blob.text()).then((text) => {
        pre.textContent = text.length <= MAX_TEXT ? text
          : text.slice(0, MAX_TEXT) + `\n… (${text.length} characters: download the file)`;
      }).catch((error) => { pre.textContent = error.message; });
    }
  }
  entry.results = el("div", {class: "results"}, images.children.length ? images : null,
                     texts.children.length ? texts : null, files);
  return entry.results;
}

async function download(url, name) {
  try {
    const href = URL.createObjectURL(await fetchBlob(url));
    const anchor = el("a", {href, download: name});
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    setTimeout(() => URL.revokeObjectURL(href), 60000);
  } catch (error) {
    showMessage(`Download: ${error.message}`);
  }
}

function reuse(job, everything) {
  showMessage("");
  if (everything) {
    if (state.model.name !== job.model && !selectModel(job.model, false)) return;
    for (const field of Object.values(state.fields)) {
      if (field.param.kind === "image") setImage(field.param.name, null); else setValue(field, field.param.default);
    }
    let uploads = false;
    for (const [name, value] of Object.entries(job.params || {})) {
      const field = state.fields[name];
      if (!field) continue;
      if (field.param.kind === "image") { uploads = true; continue; }
      setValue(field, value);
    }
    if (uploads) {
      showMessage("This job had image inputs: upload them again (the server does not send them back).", "info");
    }
  }
  $("seed").value = job.seed ?? "";
  state.lastSeed = job.seed;
}

function useAsInit(img) {
  const field = Object.values(state.fields).find((f) => f.param.kind === "image");
  if (!field || !img.src) return;
  fetch(img.src).then((r) => r.blob()).then((blob) => {
    const reader = new FileReader();
    reader.onload = () => setImage(field.param.name, reader.result);
    reader.readAsDataURL(blob);
  });
}

async function loadHistory(before) {
  let page;
  try {
    page = await api(`/v1/jobs?limit=12${before ? "&before=" + encodeURIComponent(before) : ""}`);
  } catch (error) {
    return;
  }
  for (const job of page.jobs) {
    normalize(job);
    if (state.lastSeed === null) state.lastSeed = job.seed;
    addJob(job, false);
    if (!FINISHED.includes(job.state)) follow(job.id);
  }
  state.next = page.next;
  $("more-history").hidden = !page.next;
}

async function refreshHealth() {
  try {
    const health = await api("/v1/health");
    $("server").textContent = `${health.models} model(s) · ${health.queued} queued · ${health.running} running · `
      + `${health.workers} worker(s)`;
  } catch (_) {
    $("server").textContent = "server unreachable";
  }
}

// ---------- start ----------

async function start() {
  for (const entry of state.jobs.values()) if (entry.stream) entry.stream.abort();
  state.jobs.clear();
  $("gallery").replaceChildren();
  showMessage("");
  refreshHealth();
  if (await loadModels()) await loadHistory(null);
}

document.addEventListener("DOMContentLoaded", () => {
  $("token").value = token();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value); else localStorage.removeItem(TOKEN_KEY);
    start();
  });
  $("token-forget").addEventListener("click", () => {
    localStorage.removeItem(TOKEN_KEY);
    $("token").value = "";
    start();
  });
  $("model").addEventListener("change", () => selectModel($("model").value));
  $("form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", () => { if (state.current) cancelJob(state.current); });
  $("seed-random").addEventListener("click", () => { $("seed").value = randomSeed(); });
  $("seed-reuse").addEventListener("click", () => {
    if (state.lastSeed !== null) $("seed").value = state.lastSeed;
    else showMessage("No job yet whose seed could be reused.", "info");
  });
  $("more-history").addEventListener("click", () => loadHistory(state.next));
  start();
});
