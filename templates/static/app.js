// skinscreen clinician page. Plain ES2020 module, no framework, no external requests.
// Text from the server is only ever put in the DOM with textContent (never innerHTML).

const CATALOG = JSON.parse(document.getElementById("i18n-data").textContent);
const CLASSES = ["Acne", "Carcinoma", "Eczema", "Keratosis", "Milia", "Rosacea"];
const IMAGE_TYPES = new Set(["image/jpeg", "image/png", "image/webp"]);
const STEPS = ["accepted", "validated", "classified", "analysis", "writing", "pdf", "done"];
const EVENT_STEP = {
  accepted: "accepted",
  validated: "validated",
  classified: "classified",
  analysis: "analysis",
  "report.completed": "writing",
  "pdf.ready": "pdf",
  completed: "done",
};
const MAX_RECONNECTS = 6;

const $ = (id) => document.getElementById(id);

const state = {
  lang: CATALOG.language,
  file: null,
  isDicom: false,
  previewUrl: null,
  result: null, // classification body (classify response or `classified` event)
  heatmap: null,
  summary: null,
  urgent: false,
  review: null, // the latest clinician review the server answered (report JSON `review`)
  progress: null, // key of the current stream-status text
  progressError: null, // raw server detail to show after the localized text
  running: false,
  links: null,
};

// ---- i18n -------------------------------------------------------------------------------

function t(key) {
  const strings = CATALOG.strings[state.lang] || {};
  return strings[key] ?? CATALOG.strings.en?.[key] ?? key;
}

function formatPercent(p) {
  return new Intl.NumberFormat(state.lang, {
    style: "percent",
    minimumFractionDigits: 1,
    maximumFractionDigits: 1,
  }).format(p);
}

function className(code) {
  return CLASSES.includes(code) ? t(`class.${code}`) : String(code);
}

function reasonText(code) {
  const key = `reason.${code}`;
  const text = t(key);
  return text === key ? String(code) : text; // unknown codes are shown as they are
}

function applyLanguage(lang) {
  if (!CATALOG.strings[lang]) return;
  state.lang = lang;
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  document.title = t("app.title");
  $("language").value = lang;
  const url = new URL(window.location.href);
  url.searchParams.set("lang", lang);
  history.replaceState(null, "", url);
  renderResult();
  renderProgress();
  renderReviewState();
  revalidateShownErrors();
}

// ---- API key (SKINSCREEN_AUTH=on) ------------------------------------------------------
// With auth on every /api and /fhir call needs `X-API-Key`. The page learns that auth is on from
// the first 401, asks for the key in a modal sign-in panel and retries the call. The key is kept
// in sessionStorage only (this tab, until "Sign out" or the tab closes): never in localStorage,
// a cookie or a URL. With auth off no call answers 401, so nothing here ever shows.

const KEY_STORE = "skinscreen.apiKey";
const auth = {
  required: false, // a call answered 401: the service wants a key
  memoryKey: null, // only when sessionStorage is unavailable (never persisted)
  waiters: [], // calls waiting for the panel: resolve(key | null)
  busy: false, // the submitted key is being tried
  closing: null, // why the panel is being closed ("done" | null = cancelled)
  cancels: 0, // bumped on every cancel, so a retry in flight does not reopen the panel
};

function storedKey() {
  try {
    return window.sessionStorage.getItem(KEY_STORE) || null;
  } catch {
    return auth.memoryKey;
  }
}

function storeKey(key) {
  try {
    if (key) window.sessionStorage.setItem(KEY_STORE, key);
    else window.sessionStorage.removeItem(KEY_STORE);
  } catch {
    auth.memoryKey = key || null;
  }
  renderAuthButton();
}

function withKey(options, key) {
  if (!key) return options;
  const headers = new Headers(options.headers || {});
  headers.set("X-API-Key", key);
  return { ...options, headers };
}

/** `fetch` for the service's API: sends the stored key; on 401 asks for one and retries.
 * Resolves with the last response (a 401 when the user cancelled the sign-in). */
async function apiFetch(url, options = {}) {
  let key = storedKey();
  let response = await fetch(url, withKey(options, key));
  while (response.status === 401) {
    auth.required = true;
    if (key && key === storedKey()) storeKey(null); // the key was refused: forget it
    else renderAuthButton();
    const cancels = auth.cancels;
    key = await askForKey(key ? "auth.rejected" : null);
    if (!key || auth.cancels !== cancels) return response;
    try {
      response = await fetch(url, withKey(options, key));
    } catch (error) {
      closeSignIn();
      throw error;
    }
    if (response.status === 401 && auth.cancels !== cancels) return response;
  }
  if (auth.busy) closeSignIn(); // the submitted key worked
  return response;
}

function askForKey(messageKey) {
  return new Promise((resolve) => {
    auth.waiters.push(resolve);
    openSignIn(messageKey);
  });
}

function setSignInError(key) {
  const box = $("api-key-error");
  const input = $("api-key");
  box.textContent = key ? t(key) : "";
  if (key) {
    box.dataset.key = key;
    input.setAttribute("aria-invalid", "true");
  } else {
    delete box.dataset.key;
    input.removeAttribute("aria-invalid");
  }
}

function setSignInBusy(busy) {
  auth.busy = busy;
  const submit = $("sign-in-submit");
  // aria-disabled, not disabled: the focused button keeps the focus while the key is tried.
  if (busy) submit.setAttribute("aria-disabled", "true");
  else submit.removeAttribute("aria-disabled");
  submit.dataset.i18n = busy ? "auth.checking" : "auth.submit";
  submit.textContent = t(submit.dataset.i18n);
  $("sign-in-form").setAttribute("aria-busy", String(busy));
}

function openSignIn(messageKey) {
  const dialog = $("sign-in");
  const input = $("api-key");
  setSignInBusy(false);
  setSignInError(messageKey);
  if (!dialog.open) {
    input.value = "";
    auth.closing = null;
    dialog.showModal();
  }
  input.focus();
  if (messageKey) input.select();
}

function closeSignIn() {
  const dialog = $("sign-in");
  setSignInBusy(false);
  if (!dialog.open) return;
  auth.closing = "done";
  dialog.close();
}

function onSignInClosed() {
  // Closed by Escape or Cancel (not after a key worked): the waiting calls give up.
  if ($("sign-in").open) return; // reopened before this (queued) event ran
  const cancelled = auth.closing !== "done";
  auth.closing = null;
  $("api-key").value = "";
  setSignInError(null);
  setSignInBusy(false);
  if (cancelled) auth.cancels += 1;
  for (const resolve of auth.waiters.splice(0)) resolve(null);
}

function submitSignIn(event) {
  event.preventDefault(); // method="dialog": never navigates; keep the panel open meanwhile
  if (auth.busy) return;
  const key = $("api-key").value.trim();
  if (!key) {
    setSignInError("auth.empty");
    $("api-key").focus();
    return;
  }
  storeKey(key);
  setSignInError(null);
  if (!auth.waiters.length) {
    closeSignIn(); // opened from the "Sign in" button: nothing to retry, the next call uses it
    return;
  }
  setSignInBusy(true);
  for (const resolve of auth.waiters.splice(0)) resolve(key);
}

function renderAuthButton() {
  const button = $("auth-button");
  const signedIn = Boolean(storedKey());
  button.hidden = !(signedIn || auth.required);
  button.dataset.i18n = signedIn ? "auth.signout" : "auth.signin";
  button.textContent = t(button.dataset.i18n);
}

function announceAuth(key) {
  const box = $("auth-status");
  box.textContent = key ? t(key) : "";
}

function toggleSignIn() {
  if (storedKey()) {
    storeKey(null);
    announceAuth("auth.signedout");
  } else {
    announceAuth(null);
    openSignIn(null);
  }
}

function setupSignIn() {
  $("sign-in-form").addEventListener("submit", submitSignIn);
  $("sign-in-cancel").addEventListener("click", () => $("sign-in").close());
  $("sign-in").addEventListener("close", onSignInClosed);
  $("auth-button").addEventListener("click", toggleSignIn);
  renderAuthButton();
}

// ---- file choice ------------------------------------------------------------------------

function isDicomFile(file) {
  const name = file.name.toLowerCase();
  return file.type === "application/dicom" || name.endsWith(".dcm") || name.endsWith(".dicom");
}

function formatSize(bytes) {
  const unit = bytes >= 1048576 ? ["MB", 1048576] : ["KB", 1024];
  return `${new Intl.NumberFormat(state.lang, { maximumFractionDigits: 1 }).format(bytes / unit[1])} ${unit[0]}`;
}

function chooseFile(file) {
  const fileError = $("file-error");
  if (!file) return;
  const dicom = isDicomFile(file);
  if (!dicom && !IMAGE_TYPES.has(file.type)) {
    fileError.dataset.key = "drop.unsupported";
    fileError.textContent = t("drop.unsupported");
    return;
  }
  fileError.textContent = "";
  delete fileError.dataset.key;
  state.file = file;
  state.isDicom = dicom;
  state.result = null;
  state.heatmap = null;
  state.summary = null;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = dicom ? null : URL.createObjectURL(file);

  const img = $("preview-img");
  img.hidden = dicom;
  if (dicom) img.removeAttribute("src");
  else img.src = state.previewUrl;
  img.alt = file.name;
  $("dicom-card").hidden = !dicom;
  $("file-name").textContent = file.name;
  $("file-size").textContent = formatSize(file.size);
  $("preview").hidden = false;
  $("heatmap-toggle").checked = false;
  showHeatmap();
  renderResult();
}

function setupDropzone() {
  const zone = $("dropzone");
  const input = $("file-input");
  zone.addEventListener("click", () => input.click()); // a <button>: Enter and Space click it
  input.addEventListener("change", () => {
    chooseFile(input.files[0]);
    input.value = "";
  });
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("dragover");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragover"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragover");
    chooseFile(event.dataTransfer.files[0]);
  });
  // A file dropped beside the zone must not make the browser navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

function showHeatmap() {
  const on = Boolean(state.heatmap) && $("heatmap-toggle").checked;
  const heat = $("heatmap-img");
  heat.hidden = !on;
  if (state.heatmap) heat.src = state.heatmap;
  heat.alt = on ? t("heatmap.caption") : "";
  $("heatmap-caption").hidden = !on;
  $("heatmap-row").hidden = !state.heatmap;
}

// ---- patient fields ---------------------------------------------------------------------

const FIELDS = ["patient_name", "patient_age", "patient_sex", "history"];

function setFieldError(field, message, key = null) {
  const input = $(field);
  const box = $(`error-${field}`);
  if (!input || !box) return false;
  box.textContent = message || "";
  if (key) box.dataset.key = key;
  else delete box.dataset.key;
  if (message) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
  return true;
}

function clearErrors() {
  for (const field of FIELDS) setFieldError(field, "");
  $("form-error").textContent = "";
  delete $("form-error").dataset.key;
}

function validateAge() {
  const raw = $("patient_age").value.trim();
  const ok = raw === "" || (/^\d{1,3}$/.test(raw) && Number(raw) <= 130);
  setFieldError("patient_age", ok ? "" : t("error.age"), ok ? null : "error.age");
  return ok;
}

function validateForm() {
  let ok = validateAge();
  if (!state.file) {
    $("file-error").dataset.key = "drop.required";
    $("file-error").textContent = t("drop.required");
    ok = false;
  }
  return ok;
}

function revalidateShownErrors() {
  // Localized messages follow the language; messages the server wrote stay as they are.
  for (const box of document.querySelectorAll(".field-error[data-key], .form-error[data-key]")) {
    box.textContent = t(box.dataset.key);
  }
}

function showProblem(problem, status) {
  if (status === 401) {
    // The sign-in was cancelled: say what is needed, in the page's language.
    $("form-error").dataset.key = "auth.required";
    $("form-error").textContent = t("auth.required");
    return;
  }
  const errors = Array.isArray(problem?.errors) ? problem.errors : [];
  let placed = false;
  for (const { field, message } of errors) {
    const key = field === "patient_age" ? "error.age" : null;
    placed = setFieldError(field, key ? t(key) : message, key) || placed;
  }
  if (!placed) {
    const detail = problem?.detail || problem?.title || `HTTP ${status}`;
    $("form-error").textContent = `${t("error.request")} ${detail}`;
  }
  const first = errors.find(({ field }) => $(field));
  if (first) $(first.field).focus();
}

async function readProblem(response) {
  try {
    return await response.json();
  } catch {
    return { detail: `HTTP ${response.status}` };
  }
}

// ---- classification result --------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

// The one triage decision comes from the server (`referral`); the page never re-decides it.
function renderUrgent() {
  const referral = state.result?.referral;
  const level = referral?.level || (state.urgent ? "urgent" : "routine");
  const show = level === "urgent" || level === "soon";
  const box = $("urgent");
  box.hidden = !show;
  box.classList.toggle("soon", level === "soon");
  box.dataset.level = level;
  box.querySelector(".urgent-title").textContent = t(level === "soon" ? "soon.title" : "urgent.title");
  let text = "";
  if (level === "soon") text = t("urgent.inconclusive");
  else if (level === "urgent") text = t(referral?.runner_up ? "urgent.runner_up" : "urgent.carcinoma");
  $("urgent-text").textContent = text;
}

function renderResult() {
  const box = $("result");
  const r = state.result;
  renderUrgent();
  showHeatmap();
  if (!r) {
    box.replaceChildren(el("p", { class: "empty", text: t("result.empty") }));
    return;
  }
  const status = ["ok", "inconclusive", "rejected"].includes(r.status) ? r.status : "inconclusive";
  const reasons = [...new Set([...(r.reasons || []), ...(r.gate?.reasons || [])])];
  const verdict = el(
    "div",
    { class: `verdict verdict-${status}`, "data-status": status },
    el(
      "p",
      { class: "verdict-head" },
      el("span", { text: `${t("result.check")}:` }),
      el("span", { class: `badge badge-${status}`, text: t(`status.${status}`) }),
    ),
  );
  if (status !== "ok") {
    verdict.append(el("p", { class: "verdict-text", text: t(`verdict.${status}`) }));
  }
  if (reasons.length) {
    verdict.append(el("p", { class: "verdict-text", text: `${t("result.reasons")}:` }));
    const list = el("ul", { class: "reasons" });
    for (const code of reasons) {
      list.append(el("li", { "data-reason": code }, el("span", { text: reasonText(code) }), " ",
        el("span", { class: "reason-code", text: `(${code})` })));
    }
    verdict.append(list);
  }
  const parts = [verdict];

  if (status !== "rejected" && r.probabilities) {
    const sorted = Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]);
    const [topLabel, topP] = sorted[0];
    const label = r.label || topLabel;
    const confidence = r.confidence ?? topP;
    parts.push(
      el(
        "div",
        { class: "top-finding" },
        el("span", { class: "label-kicker", text: t("result.top") }),
        el("span", { class: "label-name", id: "top-label", "data-label": label, text: className(label) }),
        el("span", { class: "label-conf", text: formatPercent(confidence) }),
      ),
    );
    parts.push(el("p", { class: "bars-title", id: "bars-title", text: t("result.probabilities") }));
    const bars = el("ol", { class: "bars", id: "bars", "aria-labelledby": "bars-title" });
    for (const [code, p] of sorted) {
      const fill = el("span", { class: "bar-fill" });
      fill.style.width = `${Math.max(0, Math.min(1, p)) * 100}%`;
      const top = code === label;
      const item = el(
        "li",
        { class: `bar${top ? " top" : ""}${top && code === "Carcinoma" ? " bar-danger" : ""}`, "data-class": code },
        el("span", { class: "bar-name", text: className(code) }),
        el("span", { class: "bar-track", "aria-hidden": "true" }, fill),
        el("span", { class: "bar-pct", text: formatPercent(p) }),
      );
      bars.append(item);
    }
    parts.push(bars);
  }
  if (state.summary) {
    parts.push(el("div", { class: "summary" },
      el("h3", { text: t("result.summary") }), el("p", { text: state.summary })));
  }
  if (r.model) {
    parts.push(el("p", { class: "model-line",
      text: `${t("result.model")}: ${r.model.name} ${r.model.version || ""}`.trim() }));
  }
  box.replaceChildren(...parts);
}

function imageForm() {
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  return form;
}

async function classify() {
  clearErrors();
  if (!state.file) {
    validateForm();
    $("dropzone").focus();
    return;
  }
  const button = $("classify-btn");
  button.disabled = true;
  $("result").setAttribute("aria-busy", "true");
  $("result").replaceChildren(el("p", { class: "empty", text: t("progress.classifying") }));
  try {
    const response = await apiFetch("/api/v1/classify?explain=true", {
      method: "POST",
      body: imageForm(),
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      state.result = null;
      renderResult();
      showProblem(await readProblem(response), response.status);
      return;
    }
    const body = await response.json();
    state.result = body;
    state.heatmap = body.heatmap || null;
    state.summary = null;
    renderResult();
  } catch {
    renderResult();
    $("form-error").dataset.key = "error.network";
    $("form-error").textContent = t("error.network");
  } finally {
    button.disabled = false;
    $("result").setAttribute("aria-busy", "false");
  }
}

// ---- SSE --------------------------------------------------------------------------------

/** An incremental text/event-stream parser (WHATWG HTML §9.2.6). */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = "";
    this.reset();
    this.retry = null;
  }

  reset() {
    this.data = [];
    this.event = "";
    this.id = null;
  }

  feed(chunk) {
    this.buffer += chunk;
    for (;;) {
      const match = /\r\n|\r|\n/.exec(this.buffer);
      if (!match) break;
      // A "\r" at the very end may be the first half of "\r\n": wait for the next chunk.
      if (match[0] === "\r" && match.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, match.index);
      this.buffer = this.buffer.slice(match.index + match[0].length);
      this.line(line);
    }
  }

  line(line) {
    if (line === "") {
      if (this.data.length) {
        this.onEvent({ id: this.id, event: this.event || "message", data: this.data.join("\n") });
      }
      this.reset();
      return;
    }
    if (line.startsWith(":")) return; // comment / keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    else if (field === "id" && !value.includes("\0")) this.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const run = { jobId: null, lastId: 0, text: "", chunks: 0, gate: null, finished: false, failed: false, retryMs: 3000 };

function setStep(step, value) {
  const node = document.querySelector(`.step[data-step="${step}"]`);
  if (!node) return;
  node.dataset.state = value;
  // Mark every earlier step done: a re-attached stream may skip none, but be safe.
  if (value === "done") {
    for (const earlier of STEPS.slice(0, STEPS.indexOf(step))) {
      const prev = document.querySelector(`.step[data-step="${earlier}"]`);
      if (prev && prev.dataset.state !== "done") prev.dataset.state = "done";
    }
  }
}

function setProgress(key, detail = null) {
  state.progress = key;
  state.progressError = detail;
  renderProgress();
}

function renderProgress() {
  const box = $("stream-status");
  if (!state.progress) {
    box.textContent = "";
    return;
  }
  box.textContent = state.progressError ? `${t(state.progress)} ${state.progressError}` : t(state.progress);
  box.classList.toggle("error", state.progress === "progress.failed");
}

// ---- narrative (Markdown-ish, rendered safely) ------------------------------------------

function inline(parent, text) {
  // **bold** → <strong>; everything else is plain text.
  const parts = text.split("**");
  parts.forEach((part, i) => {
    if (!part) return;
    parent.append(i % 2 === 1 && i < parts.length - 1 ? el("strong", { text: part }) : part);
  });
}

export function renderNarrative(container, text) {
  const nodes = [];
  let paragraph = null;
  let list = null;
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    const bullet = /^\s*[-*•]\s+(.*)$/.exec(line);
    const numbered = /^\s*\d+[.)]\s+(.*)$/.exec(line);
    if (!line.trim()) {
      paragraph = null;
      list = null;
    } else if (heading) {
      paragraph = null;
      list = null;
      const node = el(heading[1].length <= 2 ? "h3" : "h4");
      inline(node, heading[2].replace(/\s*#+\s*$/, ""));
      nodes.push(node);
    } else if (bullet || numbered) {
      paragraph = null;
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = el(tag);
        nodes.push(list);
      }
      const item = el("li");
      inline(item, (bullet || numbered)[1]);
      list.append(item);
    } else {
      list = null;
      if (!paragraph) {
        paragraph = el("p");
        nodes.push(paragraph);
      } else {
        paragraph.append(el("br"));
      }
      inline(paragraph, line.trim());
    }
  }
  container.replaceChildren(...nodes);
}

let renderPending = false;
function scheduleNarrative() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderNarrative($("narrative"), run.text);
  });
}

// ---- the run ----------------------------------------------------------------------------

function handleEvent(name, data) {
  const step = EVENT_STEP[name];
  if (step) setStep(step, "done");
  switch (name) {
    case "accepted":
      setStep("validated", "active");
      break;
    case "validated":
      run.gate = data.gate || null;
      setStep("classified", "active");
      break;
    case "classified":
      state.result = { ...data, gate: run.gate ?? state.result?.gate };
      renderResult();
      setStep("analysis", "active");
      break;
    case "analysis":
      state.summary = data.summary || null;
      renderResult();
      setStep("writing", "active");
      break;
    case "narrator.fallback":
      $("fallback-notice").hidden = false;
      break;
    case "report.reset": // the text so far is superseded: the deltas that follow replace it
      run.text = "";
      run.chunks = 0;
      scheduleNarrative();
      break;
    case "report.delta":
      setStep("writing", "active");
      run.text += data.text || "";
      run.chunks += 1;
      $("narrative").dataset.chunks = String(run.chunks);
      $("narrative").hidden = false;
      scheduleNarrative();
      break;
    case "report.completed":
      state.urgent = data.report?.referral?.level === "urgent";
      if (data.report?.gate && state.result) state.result.gate = data.report.gate;
      renderResult();
      setStep("pdf", "active");
      break;
    case "pdf.ready":
      if (data.url) $("pdf-link").href = data.url;
      setStep("done", "active");
      break;
    case "completed":
      run.finished = true;
      finishRun(data);
      break;
    case "error":
      run.finished = true;
      run.failed = true;
      for (const s of STEPS) {
        const node = document.querySelector(`.step[data-step="${s}"]`);
        if (node?.dataset.state === "active") node.dataset.state = "error";
      }
      setProgress("progress.failed", data.detail || data.title || "");
      break;
    default:
      break;
  }
}

function finishRun(data) {
  const links = data.links || {};
  state.links = links;
  $("narrative").setAttribute("aria-busy", "false");
  renderNarrative($("narrative"), run.text);
  $("case-id").textContent = data.case_id || run.jobId || "";
  if (links.pdf) $("pdf-link").href = links.pdf;
  $("pdf-link").hidden = $("pdf-link").getAttribute("href") === "#";
  $("fhir-link").hidden = !links.fhir;
  if (links.fhir) $("fhir-link").href = links.fhir;
  $("fhir-details").hidden = !links.fhir;
  $("fhir-details").open = false;
  $("fhir-json").textContent = "";
  $("downloads").hidden = false;
  showReviewPanel(data.case_id || run.jobId || "");
  setProgress("progress.done");
}

async function consume(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser((message) => {
    const seq = Number(message.id);
    if (message.id !== null && Number.isFinite(seq)) {
      if (seq <= run.lastId) return; // already seen (replayed after a re-attach)
      run.lastId = seq;
    }
    let data = {};
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    handleEvent(message.event, data);
  });
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(decoder.decode(value, { stream: true }));
      if (parser.retry) run.retryMs = parser.retry;
      if (run.finished) break;
    }
  } catch {
    // The connection dropped: the caller re-attaches.
  }
  if (run.finished) reader.cancel().catch(() => {});
  return run.finished;
}

async function reattach() {
  let attempt = 0;
  while (!run.finished && run.jobId && attempt < MAX_RECONNECTS) {
    attempt += 1;
    setProgress("progress.reconnecting");
    await sleep(Math.min(250 * 2 ** attempt, run.retryMs, 4000));
    try {
      const response = await apiFetch(`/api/v1/jobs/${encodeURIComponent(run.jobId)}/events`, {
        headers: { Accept: "text/event-stream", "Last-Event-ID": String(run.lastId) },
        cache: "no-store",
      });
      if (response.status === 404 || response.status === 401) break; // gone, or sign-in cancelled
      if (!response.ok) continue;
      setProgress("progress.streaming");
      const before = run.lastId;
      await consume(response);
      if (run.lastId > before) attempt = 0; // progress was made: start the backoff again
    } catch {
      // network still down: back off and try again
    }
  }
}

function resetReport() {
  Object.assign(run, { jobId: null, lastId: 0, text: "", chunks: 0, gate: null, finished: false, failed: false, retryMs: 3000 });
  state.urgent = false;
  state.links = null;
  $("report-empty").hidden = true;
  $("steps").hidden = false;
  for (const node of document.querySelectorAll(".step")) node.dataset.state = "pending";
  setStep("accepted", "active");
  $("fallback-notice").hidden = true;
  $("narrative").replaceChildren();
  $("narrative").hidden = true;
  $("narrative").setAttribute("aria-busy", "true");
  $("downloads").hidden = true;
  $("review-panel").hidden = true;
  $("pdf-link").setAttribute("href", "#");
}

async function generateReport(event) {
  event?.preventDefault();
  if (state.running) return;
  clearErrors();
  if (!validateForm()) {
    (state.file ? $("patient_age") : $("dropzone")).focus();
    return;
  }
  const form = imageForm();
  for (const field of FIELDS) {
    const value = $(field).value.trim();
    if (value) form.append(field, value);
  }
  form.append("language", state.lang);

  state.running = true;
  $("report-btn").disabled = true;
  $("classify-btn").disabled = true;
  resetReport();
  setProgress("progress.streaming");
  try {
    let response;
    try {
      response = await apiFetch("/api/v1/diagnose-stream", {
        method: "POST",
        body: form,
        headers: { Accept: "text/event-stream" },
      });
    } catch {
      setStep("accepted", "error");
      setProgress("progress.failed");
      $("form-error").dataset.key = "error.network";
      $("form-error").textContent = t("error.network");
      return;
    }
    if (!response.ok) {
      setStep("accepted", "error");
      setProgress("progress.failed");
      showProblem(await readProblem(response), response.status);
      return;
    }
    run.jobId = response.headers.get("X-Job-Id");
    await consume(response);
    if (!run.finished) await reattach();
    if (!run.finished) {
      handleEvent("error", { detail: "" });
      $("form-error").dataset.key = "error.network";
      $("form-error").textContent = t("error.network");
    }
  } finally {
    state.running = false;
    $("narrative").setAttribute("aria-busy", "false");
    $("report-btn").disabled = false;
    $("classify-btn").disabled = false;
  }
}

async function loadFhir() {
  const details = $("fhir-details");
  const pre = $("fhir-json");
  if (!details.open || pre.textContent || !state.links?.fhir) return;
  try {
    const response = await apiFetch(state.links.fhir, {
      headers: { Accept: "application/fhir+json, application/json" },
    });
    if (!response.ok) throw new Error(String(response.status));
    pre.textContent = JSON.stringify(await response.json(), null, 2);
  } catch {
    pre.textContent = t("report.fhir.error");
  }
}

// With auth on a plain link cannot send the key: the PDF and the FHIR JSON are fetched with it
// and saved from a blob. With auth off the links work as plain links, as they always did.
function attachmentName(response, fallback) {
  const disposition = response.headers.get("Content-Disposition") || "";
  const match = /filename="?([^";]+)"?/i.exec(disposition);
  return match ? match[1] : fallback;
}

async function downloadWithKey(event) {
  if (!storedKey() && !auth.required) return;
  event.preventDefault();
  const link = event.currentTarget;
  const href = link.getAttribute("href");
  if (!href || href === "#" || link.getAttribute("aria-busy") === "true") return;
  const pdf = link.id === "pdf-link";
  const caseId = $("case-id").textContent || "report";
  link.setAttribute("aria-busy", "true");
  clearErrors();
  try {
    const response = await apiFetch(href, {
      headers: { Accept: pdf ? "application/pdf" : "application/fhir+json, application/json" },
    });
    if (!response.ok) {
      showProblem(await readProblem(response), response.status);
      return;
    }
    const url = URL.createObjectURL(await response.blob());
    const name = attachmentName(response, `skinscreen-${caseId}.${pdf ? "pdf" : "fhir.json"}`);
    const save = el("a", { href: url, download: name });
    save.hidden = true;
    document.body.append(save);
    save.click();
    save.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch {
    $("form-error").dataset.key = "error.network";
    $("form-error").textContent = t("error.network");
  } finally {
    link.removeAttribute("aria-busy");
  }
}

// ---- clinician review ---------------------------------------------------------------------
// The panel appears once a report exists. Signing posts to /api/v1/reports/{id}/review; the
// server makes the new version (PDF, FHIR, DICOM) and the page only shows what it answered.

function reviewDecision() {
  return document.querySelector('input[name="review-decision"]:checked')?.value || "confirm";
}

function showReviewPanel(caseId) {
  state.review = null;
  const panel = $("review-panel");
  panel.dataset.caseId = caseId;
  panel.hidden = !caseId;
  $("review-error").textContent = "";
  renderReviewState();
}

function renderReviewState() {
  const node = $("review-state");
  const review = state.review;
  node.dataset.state = review ? "reviewed" : "pending";
  node.textContent = review
    ? t("review.done")
        .replace("{name}", review.reviewer.name)
        .replace("{version}", String(review.version))
        .replace("{decision}", t(`review.${review.decision}`))
    : t("review.pending");
  $("review-finding").disabled = reviewDecision() !== "revise";
}

async function submitReview(event) {
  event.preventDefault();
  const caseId = $("review-panel").dataset.caseId;
  const name = $("review-name").value.trim();
  $("review-error").textContent = "";
  if (!name) {
    $("review-error").textContent = t("review.error.name");
    $("review-name").focus();
    return;
  }
  const decision = reviewDecision();
  const body = {
    reviewer: { name, id: $("review-id").value.trim() || null },
    decision,
    comment: $("review-comment").value.trim() || null,
  };
  if (decision === "revise") body.finding = $("review-finding").value;
  $("review-btn").disabled = true;
  try {
    const response = await apiFetch(`/api/v1/reports/${encodeURIComponent(caseId)}/review`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const problem = await readProblem(response);
      $("review-error").textContent = problem.detail || problem.title || `HTTP ${response.status}`;
      return;
    }
    const report = await response.json();
    state.review = report.review;
    renderReviewState();
  } catch {
    $("review-error").textContent = t("error.network");
  } finally {
    $("review-btn").disabled = false;
  }
}

// ---- wiring -----------------------------------------------------------------------------

function init() {
  setupDropzone();
  setupSignIn();
  $("pdf-link").addEventListener("click", downloadWithKey);
  $("fhir-link").addEventListener("click", downloadWithKey);
  $("language").addEventListener("change", (event) => applyLanguage(event.target.value));
  $("heatmap-toggle").addEventListener("change", showHeatmap);
  $("classify-btn").addEventListener("click", classify);
  $("patient-form").addEventListener("submit", generateReport);
  $("patient_age").addEventListener("input", () => {
    if ($("patient_age").getAttribute("aria-invalid")) validateAge();
  });
  $("patient_age").addEventListener("blur", validateAge);
  for (const field of ["patient_name", "patient_sex", "history"]) {
    $(field).addEventListener("input", () => setFieldError(field, ""));
  }
  $("fhir-details").addEventListener("toggle", loadFhir);
  $("review-form").addEventListener("submit", submitReview);
  for (const radio of document.querySelectorAll('input[name="review-decision"]')) {
    radio.addEventListener("change", renderReviewState);
  }
  document.documentElement.lang = state.lang;
  document.body.dataset.ready = "true";
}

init();
