// cocina's pages: one hand-written module, no build step, nothing fetched from elsewhere.
//
// Safety rule: text from an input or an output reaches the page only as text (textContent, text nodes; never
// innerHTML). A string becomes an element's src or href only when it is a file of this server or a data: URL of an
// image, audio or video; any other link is shown as text. The Content-Security-Policy stands behind this.

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
const DATA = JSON.parse($("#cocina-data")?.textContent || "{}");
const CSRF = $('meta[name="cocina-csrf"]')?.content || "open";

/** An element with attributes and children (strings become text nodes, never markup). */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.fields = (body && body.invalid_fields) || [];
  }
}

/** A call to this server's API: JSON in and out, the page's CSRF token, errors as ApiError with the API's words. */
async function api(method, url, body) {
  const headers = { "X-Cocina-CSRF": CSRF, Accept: "application/json" };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, { method, headers, body: payload, credentials: "same-origin" });
  } catch (error) {
    throw new ApiError(0, { detail: `The server could not be reached (${error.message}).` });
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (_) {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed || { detail: text || response.statusText });
  return parsed;
}

const fmtBytes = (n) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${Math.ceil(n / 1024)} KiB`);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString() : "");
const shortId = (id) => (id || "").slice(0, 12);

// ---- theme and tabs ------------------------------------------------------------------------------------------

function setupTheme() {
  const button = $("#theme");
  if (!button) return;
  const effective = () =>
    document.documentElement.dataset.theme ||
    (matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
  const label = () => (button.textContent = effective() === "dark" ? "Light" : "Dark");
  label();
  button.addEventListener("click", () => {
    const next = effective() === "dark" ? "light" : "dark";
    document.documentElement.dataset.theme = next;
    try {
      localStorage.setItem("cocina-theme", next);
    } catch (_) {
      /* not kept: fine */
    }
    label();
  });
}

/** Arrow keys, Home and End move between the tabs of a tablist (the WAI-ARIA tabs pattern). */
function tablist(list, onSelect) {
  const tabs = $$('[role="tab"]', list);
  const select = (tab, focus) => {
    for (const t of tabs) {
      const on = t === tab;
      t.setAttribute("aria-selected", String(on));
      t.tabIndex = on ? 0 : -1;
    }
    if (focus) tab.focus();
    onSelect(tab);
  };
  list.addEventListener("click", (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab, false);
  });
  list.addEventListener("keydown", (event) => {
    const i = tabs.indexOf(document.activeElement);
    if (i < 0) return;
    const moves = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 };
    if (!(event.key in moves)) return;
    event.preventDefault();
    select(tabs[(moves[event.key] + tabs.length) % tabs.length], true);
  });
  return select;
}

// ---- rendering outputs ---------------------------------------------------------------------------------------

const MEDIA_DATA_URL = /^data:(image\/(png|jpeg|gif|webp|bmp|avif)|audio\/[\w.+-]+|video\/[\w.+-]+)[;,]/i;
const OWN_FILE = /^\/(v1\/files\/[a-z0-9]{20,40}(\/download)?|p\/[A-Za-z0-9_-]{43}\/files\/[a-z0-9]{20,40})$/;
const EXTENSIONS = {
  image: /\.(png|jpe?g|gif|webp|bmp|avif)$/i,
  audio: /\.(wav|mp3|ogg|oga|flac|m4a|aac|opus)$/i,
  video: /\.(mp4|webm|mov|ogv|mkv)$/i,
};

/** This server's path for a URL of one of its files (whatever host it was written with), or null. */
function ownFilePath(value) {
  let url;
  try {
    url = new URL(value, location.href);
  } catch (_) {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  let path = url.pathname;
  if (OWN_FILE.test(path)) {
    if (path.startsWith("/v1/files/") && !path.endsWith("/download")) path += "/download";
    return path;
  }
  return url.origin === location.origin && !url.search && path.startsWith("/v1/files/") ? path : null;
}

function mediaKind(contentType) {
  const kind = (contentType || "").split("/")[0];
  return ["image", "audio", "video"].includes(kind) && !/svg/.test(contentType) ? kind : null;
}

function mediaElement(kind, src) {
  if (kind === "image") return el("img", { src, alt: "An image the model made", loading: "lazy" });
  return el(kind, { src, controls: true, preload: "metadata" });
}

/** A URL output: media when it is ours or a media data: URL; a download link for other data of ours; else text. */
function renderUrl(value) {
  const box = el("div", { class: "item" });
  if (value.startsWith("data:")) {
    const match = MEDIA_DATA_URL.exec(value);
    if (match) box.append(mediaElement(match[1].split("/")[0].toLowerCase(), value));
    else box.append(el("a", { href: value, download: "output", text: "Download the output file" }));
    return box;
  }
  const path = ownFilePath(value);
  if (!path) {
    box.append(el("pre", { class: "text", text: value }));
    return box;
  }
  const byName = Object.keys(EXTENSIONS).find((k) => EXTENSIONS[k].test(path));
  const link = el("a", { href: path, download: "", text: "Download" });
  if (byName) {
    box.append(mediaElement(byName, path), link);
    return box;
  }
  box.append(link);
  fetch(path, { method: "HEAD", credentials: "same-origin" })
    .then((r) => {
      const kind = r.ok ? mediaKind(r.headers.get("content-type")) : null;
      if (kind) box.prepend(mediaElement(kind, path));
    })
    .catch(() => {});
  return box;
}

function isUrlSchema(schema) {
  return schema && schema.type === "string" && schema.format === "uri";
}

function renderValue(value, schema) {
  if (value === null || value === undefined) return null;
  if (typeof value === "string") {
    const looksLikeFile = isUrlSchema(schema) || value.startsWith("data:") || ownFilePath(value) !== null;
    return looksLikeFile && !/\s/.test(value) ? renderUrl(value) : el("pre", { class: "text", text: value });
  }
  return el("pre", { class: "text mono", text: JSON.stringify(value, null, 2) });
}

/** The whole output, by the version's Output schema: concatenated text, items one by one, files, JSON. */
function renderOutput(container, output, schema = {}) {
  container.replaceChildren();
  if (output === null || output === undefined) return;
  const items = schema.items || {};
  if (Array.isArray(output) && schema.type === "array") {
    if (items.type === "string" && items.format !== "uri" && schema["x-cog-array-display"] === "concatenate") {
      container.append(el("pre", { class: "text", text: output.join("") }));
      return;
    }
    for (const item of output) {
      const node = renderValue(item, items);
      if (node) container.append(node.classList.contains("item") ? node : el("div", { class: "item" }, node));
    }
    return;
  }
  const node = renderValue(output, schema);
  if (node) container.append(node);
}

function renderMetrics(dl, prediction, live) {
  dl.replaceChildren();
  const m = (prediction && prediction.metrics) || {};
  const rows = [];
  const predictTime = m.predict_time ?? live.elapsed;
  if (predictTime !== undefined && predictTime !== null) rows.push(["predict time", `${Number(predictTime).toFixed(2)} s`]);
  if (prediction && prediction.created_at && prediction.completed_at) {
    const total = (new Date(prediction.completed_at) - new Date(prediction.created_at)) / 1000;
    rows.push(["total time", `${total.toFixed(2)} s`]);
  }
  if (m.time_to_first_token !== undefined) rows.push(["first token", `${Number(m.time_to_first_token).toFixed(3)} s`]);
  else if (live.firstOutputS !== undefined) rows.push(["first output", `${live.firstOutputS.toFixed(3)} s`]);
  const tokens = m.output_token_count ?? (live.textStream ? live.chunks : undefined);
  if (tokens !== undefined && predictTime > 0) {
    rows.push([m.output_token_count !== undefined ? "tokens" : "chunks", String(tokens)]);
    rows.push([m.output_token_count !== undefined ? "tokens/s" : "chunks/s", (tokens / predictTime).toFixed(1)]);
  }
  if (m.input_token_count !== undefined) rows.push(["input tokens", String(m.input_token_count)]);
  for (const [k, v] of rows) dl.append(el("dt", { text: k }), el("dd", { text: v }));
}

// ---- sources (retrieval-augmented generation) ---------------------------------------------------------------

/** The passages an answer was given, best first: [n], document, section or page, chunk, score, and the passage
 * collapsed. A document is untrusted: every part is text (never markup), as an output is. */
function renderSources(prediction) {
  const box = $("#sources");
  if (!box) return;
  const sources = prediction ? prediction.sources : undefined;
  const list = $("#sources-list", box);
  list.replaceChildren();
  box.hidden = !Array.isArray(sources);
  if (!Array.isArray(sources)) return;
  const r = prediction.retrieval || {};
  $("#sources-query", box).textContent = r.index
    ? `Searched ${r.index}${r.version ? ` (version ${shortId(r.version)})` : ""} for “${r.query}”${r.rewritten ? ", as the model rewrote the question" : ""}.`
    : "";
  if (!sources.length) list.append(el("li", { class: "hint", text: "No passage scored high enough: the question went in alone." }));
  sources.forEach((s, i) => {
    const where = [s.section, s.page !== undefined && s.page !== null ? `page ${s.page}` : null, `chunk ${s.chunk}`];
    list.append(
      el(
        "li",
        { class: "source" },
        el(
          "p",
          { class: "source-head" },
          el("span", { class: "source-n", text: `[${i + 1}]` }),
          el("strong", { class: "source-doc", text: String(s.document) }),
          el("span", { class: "source-where", text: where.filter(Boolean).join(" · ") }),
          el("span", { class: "source-score", text: `score ${Number(s.score).toFixed(3)}` }),
        ),
        el("details", {}, el("summary", { text: "Passage" }), el("pre", { class: "text source-text", text: String(s.text ?? "") })),
      ),
    );
  });
}

// ---- the index -----------------------------------------------------------------------------------------------

function setupIndex() {
  const search = $("#q");
  const rows = $$(".model-row");
  search?.addEventListener("input", () => {
    const q = search.value.trim().toLowerCase();
    for (const row of rows) row.hidden = q !== "" && !row.dataset.search.includes(q);
  });
  for (const button of $$("[data-action]")) {
    button.addEventListener("click", async () => {
      const name = button.dataset.model;
      const row = button.closest(".model-row");
      const state = $(".state", row);
      button.disabled = true;
      $("#index-error").textContent = "";
      try {
        await api("POST", `/-/api/models/${name}/${button.dataset.action}`);
        state.textContent = button.dataset.action === "load" ? "loading" : "cold";
        if (button.dataset.action === "load") await waitLoaded(name, state);
        location.reload();
      } catch (error) {
        $("#index-error").textContent = `${name}: ${error.message}`;
        button.disabled = false;
      }
    });
  }
}

async function waitLoaded(name, stateNode) {
  for (let i = 0; i < 600; i++) {
    const health = await fetch("/health").then((r) => r.json()).catch(() => null);
    const state = health && health.models && health.models[name];
    if (state) stateNode.textContent = state === "ready" ? "warm" : state;
    if (state === "ready" || state === "failed") return;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

// ---- the model page: the form --------------------------------------------------------------------------------

const fields = () => $$("#form-fields .field");
const uploaded = new WeakMap(); // File -> its URL on this server (a re-run does not upload it again)

/** One field's JSON value: {value} when it has one, {} when left empty (the default applies), {error}. */
function readField(field, { upload }) {
  const name = field.dataset.name;
  const kind = field.dataset.kind;
  const control = $(`#in-${name}`, field);
  if (kind === "boolean") return { value: control.checked };
  if (kind === "file" || kind === "files") {
    const urlControl = $(`#url-${name}`, field);
    const picked = Array.from(control.files || []);
    const urls = (urlControl.value || "").split("\n").map((s) => s.trim()).filter(Boolean);
    const values = picked.map((file) => (upload ? { file } : uploaded.get(file) || `<${file.name}: uploaded when run>`));
    const all = [...values, ...urls];
    if (all.length === 0) return {};
    return { value: kind === "files" ? all : all[0] };
  }
  const raw = control.value;
  if (kind === "integer" || kind === "number") {
    if (control.validity && control.validity.badInput) return { error: `${name}: must be a number` };
    if (raw === "") return {};
    return { value: Number(raw) };
  }
  if (kind === "select") {
    if (raw === "") return {};
    return { value: field.dataset.enumType === "string" ? raw : JSON.parse(raw) };
  }
  if (kind === "json") {
    if (raw.trim() === "") return {};
    try {
      return { value: JSON.parse(raw) };
    } catch (error) {
      return { error: `${name}: not valid JSON (${error.message})` };
    }
  }
  // Left empty: omitted, so the default applies (or the API names a required input as missing).
  if (raw === "") return {};
  return { value: raw };
}

/** The input being edited: the JSON view's in JSON mode, else the form's (files as {file} when `upload`). */
function formInput({ upload = false } = {}) {
  if (!jsonMode()) return readForm({ upload });
  const raw = $("#json-input").value;
  try {
    const parsed = raw.trim() ? JSON.parse(raw) : {};
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
    return { input: parsed, errors: {} };
  } catch (error) {
    return { input: {}, errors: { json: `The input must be a JSON object (${error.message}).` } };
  }
}

/** The form's fields as a JSON input; `errors` by field for what cannot be read (bad JSON, not a number). */
function readForm({ upload = false } = {}) {
  const input = {};
  const errors = {};
  for (const field of fields()) {
    const read = readField(field, { upload });
    if (read.error) errors[field.dataset.name] = read.error;
    else if ("value" in read) input[field.dataset.name] = read.value;
  }
  return { input, errors };
}

function setField(field, value) {
  const name = field.dataset.name;
  const kind = field.dataset.kind;
  const control = $(`#in-${name}`, field);
  if (kind === "boolean") control.checked = value === true;
  else if (kind === "file" || kind === "files") {
    control.value = "";
    $(`#url-${name}`, field).value = value === undefined ? "" : Array.isArray(value) ? value.join("\n") : String(value);
  } else if (kind === "json") control.value = value === undefined ? "" : JSON.stringify(value, null, 2);
  else if (kind === "select") control.value = value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
  else control.value = value === undefined ? "" : typeof value === "string" ? value : JSON.stringify(value);
}

/** Put an input into the form (and the JSON view): an example's, a reopened prediction's. */
function fillForm(input) {
  for (const field of fields()) {
    if (field.dataset.kind === "password") continue;
    setField(field, input ? input[field.dataset.name] : undefined);
  }
  if (jsonMode()) $("#json-input").value = JSON.stringify(input || {}, null, 2);
  clearFieldErrors();
}

const jsonMode = () => $('input[name="input-mode"][value="json"]')?.checked === true;

function clearFieldErrors() {
  for (const node of $$("#panel-playground .err")) node.textContent = "";
  for (const node of $$("[aria-invalid]")) node.removeAttribute("aria-invalid");
}

/** The input an API error item names (`input.text` -> `text`). */
const fieldName = (item) => String(item.field || "").replace(/^input\./, "").split(".")[0];

/** Show the API's messages (`invalid_fields`) next to their fields; `only` limits them to touched fields. */
function showFieldErrors(items, only) {
  for (const field of fields()) {
    const name = field.dataset.name;
    if (only && !only.has(name)) continue;
    const mine = items.filter((item) => fieldName(item) === name).map((item) => item.description);
    $(`#err-${name}`, field).textContent = mine.join("\n");
    const control = $(`#in-${name}`, field);
    if (mine.length) control.setAttribute("aria-invalid", "true");
    else control.removeAttribute("aria-invalid");
  }
  const known = new Set(fields().map((f) => f.dataset.name));
  const others = items.filter((item) => !known.has(fieldName(item)) || jsonMode());
  if (!only) $(jsonMode() ? "#err-json" : "#form-error").textContent = others.map((i) => i.description).join("\n");
}

function showLocalErrors(errors) {
  for (const [name, message] of Object.entries(errors)) {
    const node = name === "json" ? $("#err-json") : $(`#err-${name}`);
    if (node) node.textContent = message;
  }
}

// ---- the model page: running ---------------------------------------------------------------------------------

const run = { current: null, source: null, live: null, timer: null };

function outputSchema() {
  return DATA.output || {};
}

/** Tokens of text (a concatenate iterator: a language model's answer), rather than items one by one. */
function textStream() {
  const schema = outputSchema();
  const items = schema.items || {};
  return schema["x-cog-array-display"] === "concatenate" && items.type === "string" && items.format !== "uri";
}

function setStatus(status, label) {
  const node = $("#status");
  node.textContent = label || status;
  node.className = `status status-${status}`;
  const running = status === "starting" || status === "processing";
  $("#output-card").dataset.state = running ? "running" : status;
  $("#output").setAttribute("aria-busy", String(running));
  $("#cancel").hidden = !running;
  $("#run").disabled = running;
}

/** Upload the files picked in the form (each checked against the body limit first); their URLs in the input. */
async function uploadFiles(input) {
  const limit = DATA.max_body_bytes;
  const upload = async (name, file) => {
    if (uploaded.has(file)) return uploaded.get(file);
    if (file.size + 4096 > limit) {
      throw new ApiError(413, {
        detail: `${name}: the file ${file.name} is ${fmtBytes(file.size)}, larger than this server takes in one request (${fmtBytes(limit)}; cocina serve --max-body-mb). Give it as a URL instead.`,
      });
    }
    const form = new FormData();
    form.append("content", file, file.name);
    let made;
    try {
      made = await api("POST", "/v1/files", form);
    } catch (error) {
      if (error.status === 413 || error.status === 0) {
        throw new ApiError(413, { detail: `${name}: the file ${file.name} could not be sent (${error.message}).` });
      }
      throw error;
    }
    uploaded.set(file, made.urls.get);
    return made.urls.get;
  };
  for (const [name, value] of Object.entries(input)) {
    if (value && value.file instanceof File) input[name] = await upload(name, value.file);
    else if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) if (value[i] && value[i].file instanceof File) value[i] = await upload(name, value[i].file);
    }
  }
  return input;
}

async function submit() {
  if (run.current && !isTerminal(run.current.status)) return;
  clearFieldErrors();
  $("#run-error").textContent = "";
  const { input, errors } = formInput({ upload: true });
  if (Object.keys(errors).length) {
    showLocalErrors(errors);
    return;
  }
  setStatus("starting", "uploading…");
  let prediction;
  try {
    await uploadFiles(input);
    setStatus("starting");
    const rag = ragOption();
    prediction = await api("POST", "/-/api/predictions", { version: `${DATA.model}:${DATA.version}`, input, ...(rag ? { rag } : {}) });
  } catch (error) {
    setStatus("idle");
    if (error.fields.length) showFieldErrors(error.fields, null);
    else $("#run-error").textContent = error.message;
    return;
  }
  follow(prediction);
}

/** The playground's retrieval choice (`rag` of the page's API), or null when off or not offered. */
function ragOption() {
  const index = $("#rag-index")?.value;
  if (!index) return null;
  const topK = Number($("#rag-top-k").value);
  return { index, top_k: Number.isInteger(topK) && topK >= 1 ? topK : 4 };
}

const isTerminal = (status) => ["succeeded", "failed", "canceled"].includes(status);

/** Watch a prediction: its stream (output as it arrives, logs), then its final state. */
function follow(prediction) {
  stopFollowing();
  run.current = prediction;
  const started = performance.now();
  run.live = { chunks: 0, outputs: [], textStream: textStream(), startedAt: started, elapsed: 0 };
  const output = $("#output");
  const card = $("#output-card");
  output.replaceChildren();
  $("#logs").textContent = "";
  $("#run-error").textContent = "";
  $("#metrics").replaceChildren();
  renderSources(prediction); // retrieval happens at admission: the creation answer has the sources already
  $("#ai-note").hidden = false;
  $("#after").hidden = true;
  $("#share-box").hidden = true;
  card.dataset.predictionId = prediction.id;
  delete card.dataset.firstOutputMs;
  delete card.dataset.doneMs;
  setStatus(prediction.status === "starting" ? "starting" : "processing");
  history.replaceState(null, "", `${location.pathname}${location.search}#playground`);
  run.timer = setInterval(() => {
    run.live.elapsed = (performance.now() - started) / 1000;
    renderMetrics($("#metrics"), null, run.live);
  }, 250);
  const source = new EventSource(`/v1/predictions/${encodeURIComponent(prediction.id)}/stream`);
  run.source = source;
  let text = null;
  source.addEventListener("output", (event) => {
    run.live.chunks += 1;
    if (run.live.firstOutputS === undefined) {
      run.live.firstOutputS = (performance.now() - started) / 1000;
      card.dataset.firstOutputMs = String(Math.round(run.live.firstOutputS * 1000));
    }
    setStatus("processing");
    if (run.live.textStream) {
      if (!text) {
        text = el("pre", { class: "text" });
        output.replaceChildren(text);
      }
      text.append(event.data); // a text node: tokens appear as they arrive
      card.dataset.chunks = String(run.live.chunks);
      return;
    }
    let value = event.data;
    const items = outputSchema().items || {};
    if (items.type !== "string") {
      try {
        value = JSON.parse(event.data);
      } catch (_) {
        /* shown as text */
      }
    }
    run.live.outputs.push(value);
    if (outputSchema().type === "array") {
      const node = renderValue(value, items);
      if (node) output.append(node.classList.contains("item") ? node : el("div", { class: "item" }, node));
    } else renderOutput(output, value, outputSchema());
  });
  source.addEventListener("logs", (event) => {
    $("#logs").append(`${event.data}\n`);
  });
  source.addEventListener("error", (event) => {
    if (event.data) {
      // The prediction failed: the stream says why, then `done`.
      try {
        $("#run-error").textContent = JSON.parse(event.data).detail || event.data;
      } catch (_) {
        $("#run-error").textContent = event.data;
      }
    } else if (run.source === source) {
      // The connection failed (not the prediction): read its state until it ends.
      finish(prediction.id);
    }
  });
  source.addEventListener("done", () => finish(prediction.id));
}

function stopFollowing() {
  if (run.source) run.source.close();
  run.source = null;
  clearInterval(run.timer);
}

async function finish(id) {
  stopFollowing();
  let prediction = run.current;
  for (let i = 0; i < 2400; i++) {
    try {
      prediction = await api("GET", `/v1/predictions/${encodeURIComponent(id)}`);
    } catch (error) {
      $("#run-error").textContent = error.message;
      break;
    }
    if (isTerminal(prediction.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  if (run.current && run.current.id !== id) return;
  run.current = prediction;
  $("#output-card").dataset.doneMs = String(Math.round(performance.now() - run.live.startedAt));
  showPrediction(prediction);
}

/** A prediction that has ended (or an example): output, status, metrics, logs, and what can be done with it. */
function showPrediction(prediction, label) {
  renderOutput($("#output"), prediction.output, outputSchema());
  $("#ai-note").hidden = prediction.output === null || prediction.output === undefined;
  setStatus(prediction.status, label);
  $("#run-error").textContent = prediction.error || "";
  if (prediction.logs) $("#logs").textContent = prediction.logs;
  renderMetrics($("#metrics"), prediction, run.live || {});
  renderSources(prediction);
  $("#output-card").dataset.predictionId = prediction.id;
  const after = $("#after");
  after.hidden = false;
  $("#permalink").href = prediction.urls && prediction.urls.web ? new URL(prediction.urls.web).pathname : "#";
  const example = $("#example-add");
  if (example) example.hidden = prediction.status !== "succeeded";
}

async function cancel() {
  if (!run.current) return;
  $("#cancel").disabled = true;
  try {
    await api("POST", `/v1/predictions/${encodeURIComponent(run.current.id)}/cancel`);
  } catch (error) {
    $("#run-error").textContent = error.message;
  } finally {
    $("#cancel").disabled = false;
  }
}

// ---- the model page: validation as you type ------------------------------------------------------------------

const touched = new Set();
let validateTimer = null;

function scheduleValidation(name) {
  if (name) touched.add(name);
  clearTimeout(validateTimer);
  validateTimer = setTimeout(validateNow, 350);
}

async function validateNow() {
  if (jsonMode() || touched.size === 0) return;
  const { input, errors } = formInput({ upload: false });
  for (const [name, value] of Object.entries(input)) {
    // A file not uploaded yet stands in as an empty data URL (the check is of the other inputs).
    if (typeof value === "string" && value.startsWith("<")) input[name] = "data:application/octet-stream;base64,";
    if (Array.isArray(value)) input[name] = value.map((v) => (typeof v === "string" && v.startsWith("<") ? "data:application/octet-stream;base64," : v));
  }
  try {
    await api("POST", `/-/api/models/${DATA.model}/validate`, { version: DATA.version, input });
    showFieldErrors([], touched);
  } catch (error) {
    if (error.fields.length) showFieldErrors(error.fields, touched);
  }
  showLocalErrors(Object.fromEntries(Object.entries(errors).filter(([k]) => touched.has(k))));
}

// ---- the model page: API snippets ----------------------------------------------------------------------------

function py(value, indent = 0) {
  const pad = " ".repeat(indent);
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "number") return Number.isFinite(value) ? String(value) : "None";
  if (typeof value === "string") return JSON.stringify(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return "[]";
    return `[\n${value.map((v) => `${pad}    ${py(v, indent + 4)},`).join("\n")}\n${pad}]`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return "{}";
  return `{\n${entries.map(([k, v]) => `${pad}    ${JSON.stringify(k)}: ${py(v, indent + 4)},`).join("\n")}\n${pad}}`;
}

function snippet(lang) {
  const { input } = formInput({ upload: false });
  // A Secret input's value is not copied into code: the snippet names it instead.
  for (const field of fields()) {
    if (field.dataset.kind === "password" && field.dataset.name in input) input[field.dataset.name] = `<your ${field.dataset.name}>`;
  }
  const origin = location.origin;
  const ref = `${DATA.model}:${DATA.version}`;
  const keyed = DATA.keyed;
  const pyKey = keyed ? 'os.environ["COCINA_API_TOKEN"]' : 'os.environ.get("COCINA_API_TOKEN", "none")';
  const schema = outputSchema();
  const concatenated = schema["x-cog-array-display"] === "concatenate";
  if (lang === "curl") {
    const body = JSON.stringify({ version: ref, input }, null, 2);
    return [
      `curl -s -X POST ${origin}/v1/predictions \\`,
      '  -H "Authorization: Bearer $COCINA_API_TOKEN" \\',
      '  -H "Content-Type: application/json" \\',
      '  -H "Prefer: wait" \\',
      "  --data-binary @- <<'JSON'",
      body,
      "JSON",
    ].join("\n");
  }
  if (lang === "python") {
    const show =
      schema.type === "array" ? (concatenated ? 'print("".join(output))' : "for item in output:\n    print(item)") : "print(output)";
    return [
      "import os",
      "",
      "import replicate",
      "",
      `client = replicate.Client(base_url=${JSON.stringify(origin)}, api_token=${pyKey})`,
      "output = client.run(",
      `    ${JSON.stringify(ref)},`,
      `    input=${py(input, 4)},`,
      ")",
      show,
    ].join("\n");
  }
  if (lang === "openai") {
    const prompt = input.prompt ?? input.pregunta ?? "";
    const messages = [];
    if (input.system_prompt) messages.push({ role: "system", content: input.system_prompt });
    messages.push({ role: "user", content: prompt });
    const extra = [];
    if (input.max_new_tokens !== undefined) extra.push(`    max_tokens=${py(input.max_new_tokens)},`);
    for (const name of ["temperature", "top_p", "seed"]) {
      if (input[name] !== undefined) extra.push(`    ${name}=${py(input[name])},`);
    }
    if (input.stop) extra.push(`    stop=${py(String(input.stop).split(",").map((s) => s.trim()).filter(Boolean), 4)},`);
    const rag = ragOption();
    if (rag) extra.push(`    extra_body={"rag": ${py(rag, 4)}},`, '    # the sources: stream\'s first chunk, chunk.model_extra["sources"]');
    return [
      "import os",
      "",
      "from openai import OpenAI",
      "",
      `client = OpenAI(base_url=${JSON.stringify(`${origin}/v1`)}, api_key=${pyKey})`,
      "stream = client.chat.completions.create(",
      `    model=${JSON.stringify(ref)},`,
      `    messages=${py(messages, 4)},`,
      ...extra,
      "    stream=True,",
      ")",
      "for chunk in stream:",
      '    print(chunk.choices[0].delta.content or "", end="", flush=True)',
      "print()",
    ].join("\n");
  }
  const body = JSON.stringify({ version: ref, input }, null, 2).replace(/\n/g, "\n  ");
  return [
    `const response = await fetch(${JSON.stringify(`${origin}/v1/predictions`)}, {`,
    '  method: "POST",',
    "  headers: {",
    "    Authorization: `Bearer ${process.env.COCINA_API_TOKEN}`,",
    '    "Content-Type": "application/json",',
    '    Prefer: "wait",',
    "  },",
    `  body: JSON.stringify(${body}),`,
    "});",
    "const prediction = await response.json();",
    "console.log(prediction.output);",
  ].join("\n");
}

const NOTES = {
  curl: "Prefer: wait answers when the prediction ends (up to 60 s).",
  python: "pip install replicate",
  openai: "pip install openai — the OpenAI API has no top_k, min_p or repetition_penalty: they keep the model's defaults.",
  js: "Node 18+ (an ES module, for the top-level await).",
};

let snippetLang = "curl";
function refreshSnippet() {
  if ($("#panel-api").hidden) return;
  $("#snippet").textContent = snippet(snippetLang);
  const ragNote =
    ragOption() && snippetLang !== "openai"
      ? " The index picked in the playground is not in this call: the Replicate API answers from a model's or a deployment's own rag (docs/rag.md); the OpenAI API takes it per request."
      : "";
  $("#snippet-note").textContent = NOTES[snippetLang] + ragNote;
}

async function copyText(text, status) {
  try {
    await navigator.clipboard.writeText(text);
    status.textContent = "Copied.";
  } catch (_) {
    status.textContent = "Select the text and copy it (the clipboard is not available here).";
  }
}

// ---- the model page: examples, history, versions, shares ------------------------------------------------------

function inputSummary(input) {
  if (!input) return "(removed)";
  return Object.entries(input)
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join(" · ");
}

async function loadExamples() {
  const box = $("#examples");
  box.replaceChildren(el("p", { class: "hint", text: "Loading…" }));
  let page;
  try {
    page = await api("GET", `/v1/models/${DATA.model}/examples`);
  } catch (error) {
    box.replaceChildren(el("p", { class: "err", text: error.message }));
    return;
  }
  box.replaceChildren();
  if (!page.results.length) box.append(el("p", { class: "hint", text: "No examples yet." }));
  page.results.forEach((prediction, i) => {
    const output = el("div", { class: "output-body" });
    renderOutput(output, prediction.output, outputSchema());
    const actions = el("div", { class: "row" });
    actions.append(
      el("button", { type: "button", class: "small", text: "Use", onclick: () => useInput(prediction.input) }),
    );
    if (DATA.may_admin) {
      if (i > 0 || !isDefaultFirst(page)) {
        actions.append(el("button", { type: "button", class: "small", text: "Make default", onclick: () => exampleAction("POST", prediction.id, "/default") }));
      }
      actions.append(el("button", { type: "button", class: "small", text: "Remove", onclick: () => exampleAction("DELETE", prediction.id, "") }));
    }
    box.append(
      el(
        "div",
        { class: "example", "data-id": prediction.id },
        el("p", { class: "meta", text: `${i === 0 && isDefaultFirst(page) ? "default · " : ""}${fmtTime(prediction.created_at)} · ${inputSummary(prediction.input)}` }),
        el("p", { class: "ai-note" }, el("span", { class: "badge", text: "AI" }), `Generated by ${DATA.model}, an AI model: it may be wrong.`),
        output,
        actions,
      ),
    );
  });
}

let defaultExampleId = DATA.example ? DATA.example.id : null;
const isDefaultFirst = (page) => page.results.length > 0 && page.results[0].id === defaultExampleId;

async function exampleAction(method, id, suffix) {
  try {
    await api(method, `/-/api/models/${DATA.model}/examples/${encodeURIComponent(id)}${suffix}`);
    if (suffix === "/default") defaultExampleId = id;
  } catch (error) {
    $("#examples").prepend(el("p", { class: "err", text: error.message }));
    return;
  }
  loadExamples();
}

function useInput(input) {
  fillForm(input || {});
  selectTab($("#tab-playground"), true);
}

let historyNext = null;
async function loadHistory(more = false) {
  const params = new URLSearchParams();
  for (const [key, id] of [["version", "#h-version"], ["status", "#h-status"], ["source", "#h-source"]]) {
    if ($(id).value) params.set(key, $(id).value);
  }
  const url = more && historyNext ? new URL(historyNext).pathname + new URL(historyNext).search : `/-/api/models/${DATA.model}/predictions?${params}`;
  const body = $("#history");
  if (!more) body.replaceChildren();
  let page;
  try {
    page = await api("GET", url);
  } catch (error) {
    body.append(el("tr", {}, el("td", { colspan: 6, class: "err", text: error.message })));
    return;
  }
  historyNext = page.next;
  $("#history-more").hidden = !page.next;
  if (!more && !page.results.length) body.append(el("tr", {}, el("td", { colspan: 6, class: "hint", text: "No predictions match." })));
  for (const p of page.results) {
    const open = el("a", { href: new URL(p.urls.web).pathname, text: "Open" });
    body.append(
      el(
        "tr",
        { "data-id": p.id },
        el("td", { text: fmtTime(p.created_at) }),
        el("td", {}, el("span", { class: `status status-${p.status}`, text: p.status })),
        el("td", { text: p.source }),
        el("td", {}, el("code", { text: shortId(p.version) })),
        el("td", { class: "input-cell", title: inputSummary(p.input), text: inputSummary(p.input) }),
        el("td", {}, open),
      ),
    );
  }
}

async function showDiff(event) {
  event.preventDefault();
  const box = $("#diff");
  const from = $("#diff-from").value;
  const to = $("#diff-to").value;
  try {
    const diff = await api("GET", `/-/api/models/${DATA.model}/diff?from=${from}&to=${to}`);
    box.replaceChildren(el("h3", { text: `From ${shortId(diff.from)} to ${shortId(diff.to)}${diff.breaking ? ": breaking" : ""}` }));
    if (!diff.changes.length) box.append(el("p", { class: "hint", text: "No change in the inputs or the output." }));
    const list = el("ul");
    for (const c of diff.changes) {
      list.append(el("li", { class: c.breaking ? "change-breaking" : "" }, `${c.breaking ? "breaking · " : ""}${c.kind} `, el("code", { text: c.name }), `: ${c.detail}`));
    }
    box.append(list);
  } catch (error) {
    box.replaceChildren(el("p", { class: "err", text: error.message }));
  }
}

async function refreshShares() {
  const list = $("#share-list");
  if (!run.current) return;
  try {
    const page = await api("GET", `/-/api/predictions/${encodeURIComponent(run.current.id)}/shares`);
    list.replaceChildren();
    for (const share of page.results) {
      const state = share.revoked_at ? "revoked" : share.open ? (share.expires_at ? `expires ${fmtTime(share.expires_at)}` : "open") : "expired";
      const item = el("li", { "data-share": share.id }, el("span", { text: `link ${share.id} · made ${fmtTime(share.created_at)} · ${state}` }));
      if (share.open) {
        item.append(el("button", { type: "button", class: "small danger", text: "Revoke", onclick: () => revoke(share.id) }));
      }
      list.append(item);
    }
  } catch (error) {
    list.replaceChildren(el("li", { class: "err", text: error.message }));
  }
}

async function createShare() {
  const expiry = $("#share-expiry").value;
  try {
    const share = await api("POST", `/-/api/predictions/${encodeURIComponent(run.current.id)}/shares`, expiry ? { expires_in_s: Number(expiry) } : {});
    $("#share-made").hidden = false;
    $("#share-url").value = share.url;
    $("#share-url").select();
  } catch (error) {
    $("#share-list").prepend(el("li", { class: "err", text: error.message }));
  }
  refreshShares();
}

async function revoke(id) {
  try {
    await api("DELETE", `/-/api/shares/${encodeURIComponent(id)}`);
  } catch (error) {
    $("#share-list").prepend(el("li", { class: "err", text: error.message }));
  }
  refreshShares();
}

// ---- the model page: wiring ----------------------------------------------------------------------------------

let selectTab = () => {};

function setupModel() {
  const panels = {};
  for (const tab of $$('.tabs [role="tab"]')) panels[tab.id] = $(`#${tab.getAttribute("aria-controls")}`);
  const loaded = new Set();
  selectTab = tablist($(".tabs"), (tab) => {
    for (const [id, panel] of Object.entries(panels)) panel.hidden = id !== tab.id;
    const name = tab.id.replace("tab-", "");
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    if (name === "api") refreshSnippet();
    if (name === "examples") loadExamples();
    if (name === "history" && !loaded.has("history")) loadHistory();
    loaded.add(name);
  });
  const tabFromHash = () => {
    const tab = location.hash.length > 1 ? $(`#tab-${CSS.escape(location.hash.slice(1))}`) : null;
    if (tab && tab.getAttribute("role") === "tab" && tab.getAttribute("aria-selected") !== "true") selectTab(tab, false);
  };
  tabFromHash();
  addEventListener("hashchange", tabFromHash);

  const form = $("#run-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      submit();
    }
  });
  form.addEventListener("input", (event) => {
    const field = event.target.closest(".field");
    if (field) scheduleValidation(field.dataset.name);
    refreshSnippet();
  });
  form.addEventListener("change", (event) => {
    const field = event.target.closest(".field");
    if (field) scheduleValidation(field.dataset.name);
  });
  for (const radio of $$('input[name="input-mode"]')) {
    radio.addEventListener("change", () => switchMode(radio.value));
  }
  $("#reset").addEventListener("click", () => {
    form.reset();
    clearFieldErrors();
    touched.clear();
  });
  $("#cancel").addEventListener("click", cancel);
  $("#share-open").addEventListener("click", () => {
    const box = $("#share-box");
    box.hidden = !box.hidden;
    $("#share-made").hidden = true;
    if (!box.hidden) refreshShares();
  });
  $("#share-create").addEventListener("click", createShare);
  $("#share-copy").addEventListener("click", () => copyText($("#share-url").value, $("#share-status")));
  $("#example-add")?.addEventListener("click", async () => {
    const button = $("#example-add");
    try {
      await api("POST", `/-/api/models/${DATA.model}/examples`, { prediction: run.current.id });
      button.textContent = "Added to examples";
      button.disabled = true;
    } catch (error) {
      $("#run-error").textContent = error.message;
    }
  });
  tablist($("#langs"), (tab) => {
    snippetLang = tab.dataset.lang;
    refreshSnippet();
  });
  $("#copy-snippet").addEventListener("click", () => copyText($("#snippet").textContent, $("#copy-status")));
  $("#history-filters").addEventListener("change", () => loadHistory());
  $("#history-more").addEventListener("click", () => loadHistory(true));
  $("#diff-form")?.addEventListener("submit", showDiff);

  const openedIndex = DATA.opened && DATA.opened.retrieval ? DATA.opened.retrieval.index : null;
  if (openedIndex && $("#rag-index") && (DATA.indexes || []).includes(openedIndex)) $("#rag-index").value = openedIndex;
  if (DATA.opened) {
    if (isTerminal(DATA.opened.status)) {
      run.current = DATA.opened;
      showPrediction(DATA.opened);
    } else follow(DATA.opened);
  } else if (DATA.example && !DATA.tweaked) {
    run.current = DATA.example;
    showPrediction(DATA.example, "example");
  }
}

function switchMode(mode) {
  const json = $("#json-input");
  $("#err-json").textContent = "";
  if (mode === "json") {
    const { input, errors } = readForm({ upload: false });
    if (Object.keys(errors).length) {
      showLocalErrors(errors);
      $('input[name="input-mode"][value="form"]').checked = true;
      return;
    }
    json.value = JSON.stringify(input, null, 2);
    $("#form-fields").hidden = true;
    $("#json-fields").hidden = false;
  } else {
    let parsed;
    try {
      parsed = json.value.trim() ? JSON.parse(json.value) : {};
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
    } catch (error) {
      $("#err-json").textContent = `The input must be a JSON object (${error.message}).`;
      $('input[name="input-mode"][value="json"]').checked = true;
      return;
    }
    fillForm(parsed);
    $("#form-fields").hidden = false;
    $("#json-fields").hidden = true;
  }
  refreshSnippet();
}

// ---- a shared prediction -------------------------------------------------------------------------------------

function setupShare() {
  const prediction = DATA.prediction;
  renderOutput($("#output"), prediction.output, DATA.output || {});
  renderMetrics($("#metrics"), prediction, {});
  renderSources(prediction);
}

setupTheme();
if (DATA.page === "index") setupIndex();
if (DATA.page === "model") setupModel();
if (DATA.page === "share") setupShare();
