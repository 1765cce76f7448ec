// The License page: a client of the $license topic contract (topics.md) over MQTT over
// WebSocket, nothing else. Requests go to $license/<operation> with a correlation_id and
// come back on $license/reply/<our client id>; the state comes from the retained
// $license/status document and the $license/events stream.
// Credentials live in this module's memory only (no storage, no cookies).

import { checkKey } from "./keys.js";

const REQUEST_TIMEOUT_MS = 60000;
const STATUS_REFRESH_MS = 15000;
const MAX_EVENTS = 100;
const HELD_MODELS = new Set(["online", "offline", "floating"]);
const STATE_CLASS = {
  active: "good", trial: "info", grace: "warn", pending_offline: "warn",
  expired: "bad", unlicensed: "bad", suspended: "bad", revoked: "bad", clock_tampered: "bad",
};
const TOPICS = {
  activate: "$license/activate", reactivate: "$license/reactivate", deactivate: "$license/deactivate",
  status: "$license/status", offline_request: "$license/offline/request",
};

const $ = (id) => document.getElementById(id);
const page = {
  config: null, client: null, clientId: null, replyTopic: null, username: null,
  role: null, status: null, events: [], pending: new Map(), nextId: 1, refreshTimer: null, clockTimer: null,
  deactivationCode: null,
};

// ---------------------------------------------------------------- formatting

function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  const units = [["year", 31536000], ["month", 2592000], ["day", 86400], ["hour", 3600], ["minute", 60]];
  let text = "just now";
  for (const [unit, size] of units) {
    if (abs >= size) {
      const n = Math.floor(abs / size);
      text = `${n} ${unit}${n === 1 ? "" : "s"}`;
      break;
    }
  }
  if (text === "just now" && abs >= 10) text = `${abs} seconds`;
  if (text === "just now") return text;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

function when(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  const shown = date.toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$/, " UTC").replace(/:\d\dZ$/, " UTC");
  return { shown, rel: relative(iso), iso };
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function timeNode(iso) {
  const w = when(iso);
  if (!w) return document.createTextNode("—");
  return el("span", {}, el("time", { datetime: w.iso, text: w.shown }), " ", el("span", { class: "rel", "data-rel": w.iso, "data-paren": "1", text: `(${w.rel})` }));
}

function show(node, visible) { node.hidden = !visible; }

function setMessage(id, text) {
  const node = $(id);
  node.textContent = text || "";
  node.hidden = !text;
}

function errorText(error) {
  if (!error) return "";
  return error.code ? `${error.message} (${error.code})` : String(error.message || error);
}

// ---------------------------------------------------------------- MQTT

function randomId() {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes); // available on plain http, unlike crypto.randomUUID
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function wsUrl() {
  const c = page.config;
  if (c.ws_url) return c.ws_url;
  const secure = c.ws_tls || location.protocol === "https:";
  const port = c.ws_port || (secure ? 443 : 80);
  const host = location.hostname.includes(":") ? `[${location.hostname}]` : location.hostname;
  return `${secure ? "wss" : "ws"}://${host}:${port}${c.ws_path || "/mqtt"}`;
}

function login(username, password) {
  setMessage("login-error", "");
  $("login-button").disabled = true;
  page.clientId = `web-${randomId()}`;
  page.replyTopic = `$license/reply/${page.clientId}`;
  page.username = username;
  let everConnected = false;
  const url = wsUrl();
  const client = window.mqtt.connect(url, {
    protocolVersion: 4, // amqtt speaks MQTT 3.1.1
    clientId: page.clientId,
    username,
    password,
    clean: true,
    reconnectPeriod: 0, // a refused login must not retry; enabled once logged in
    connectTimeout: 10000,
    keepalive: 30,
  });
  page.client = client;

  client.on("connect", async () => {
    if (!everConnected) {
      everConnected = true;
      client.options.reconnectPeriod = 3000;
      $("password").value = "";
    }
    setConnState("connected");
    try {
      await subscribe([page.replyTopic, "$license/status", "$license/events"]);
    } catch (err) {
      return failLogin(err.message);
    }
    await detectRole();
  });
  client.on("message", onMessage);
  client.on("error", (err) => {
    if (!everConnected) {
      const refused = err && (err.code === 5 || err.code === 4);
      failLogin(refused
        ? "Login refused: wrong username or password (or, for a reader, the license does not serve clients right now)."
        : `Cannot log in: ${err.message}`);
    }
  });
  client.on("close", () => {
    if (!everConnected) {
      failLogin(`Cannot reach the broker's WebSocket listener at ${url}.`, false);
    } else {
      setConnState("reconnecting…");
    }
  });
  client.on("reconnect", () => setConnState("reconnecting…"));
}

function failLogin(message, replace = true) {
  if (!page.client) return;
  const error = $("login-error");
  if (replace || error.hidden) setMessage("login-error", message);
  page.client.end(true);
  page.client = null;
  $("login-button").disabled = false;
  showView("login");
  $("password").value = "";
  $("password").focus();
}

function subscribe(topics) {
  return new Promise((resolve, reject) => {
    page.client.subscribe(topics, { qos: 1 }, (err, granted) => {
      if (err) return reject(new Error(`subscription refused: ${err.message}`));
      const refused = (granted || []).filter((g) => g.qos === 128).map((g) => g.topic);
      if (refused.includes("$license/status")) {
        return reject(new Error("This user may not read the license status (ask for a reader or admin account)."));
      }
      resolve(granted);
    });
  });
}

function request(operation, fields = {}) {
  const correlationId = `${page.clientId}-${page.nextId++}`;
  const payload = JSON.stringify({ ...fields, correlation_id: correlationId });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      page.pending.delete(correlationId);
      reject({ code: "timeout", message: "the broker did not answer in time" });
    }, REQUEST_TIMEOUT_MS);
    page.pending.set(correlationId, { resolve, reject, timer });
    page.client.publish(TOPICS[operation], payload, { qos: 1 }, (err) => {
      if (err) {
        clearTimeout(timer);
        page.pending.delete(correlationId);
        reject({ code: "publish_failed", message: err.message });
      }
    });
  });
}

function onMessage(topic, payload) {
  let data;
  try {
    data = JSON.parse(new TextDecoder().decode(payload));
  } catch {
    return; // not for us: the contract is JSON here
  }
  if (topic === page.replyTopic) {
    const waiter = page.pending.get(String(data.correlation_id));
    if (!waiter) return;
    page.pending.delete(String(data.correlation_id));
    clearTimeout(waiter.timer);
    if (data.status) setStatus(data.status);
    if (data.ok) waiter.resolve(data);
    else waiter.reject(data.error || { code: "unknown", message: "failed" });
  } else if (topic === "$license/status") {
    setStatus(data);
  } else if (topic === "$license/events") {
    addEvent(data);
  }
}

// Which role are we? The contract answers a status request from an admin and refuses a
// reader's with not_authorized; the page asks once and shows buttons only to admins.
async function detectRole() {
  try {
    await request("status");
    page.role = "admin";
  } catch (err) {
    if (err.code !== "not_authorized") return failLogin(`The broker did not answer: ${errorText(err)}`);
    page.role = "reader";
  }
  $("who").textContent = `${page.username} (${page.role})`;
  showView("app");
  clearInterval(page.refreshTimer);
  if (page.role === "admin") {
    // Connection counts are not republished on every CONNECT; ask now and then.
    page.refreshTimer = setInterval(() => request("status").catch(() => {}), STATUS_REFRESH_MS);
  }
  render();
}

function logout() {
  clearInterval(page.refreshTimer);
  if (page.client) page.client.end(true);
  Object.assign(page, { client: null, role: null, status: null, events: [], deactivationCode: null });
  for (const waiter of page.pending.values()) clearTimeout(waiter.timer);
  page.pending.clear();
  $("events").replaceChildren();
  for (const id of ["online-key", "offline-key", "offline-license", "password"]) $(id).value = "";
  $("login-button").disabled = false;
  showView("login");
  $("username").focus();
}

function setConnState(text) {
  const node = $("conn-state");
  node.textContent = text;
  node.className = `conn ${text === "connected" ? "up" : "down"}`;
}

function showView(name) {
  show($("login-view"), name === "login");
  show($("app-view"), name === "app");
  show($("session"), name === "app");
}

// ---------------------------------------------------------------- status

function setStatus(status) {
  if (!status || typeof status !== "object" || !status.state) return;
  page.status = status;
  if (status.offline && status.offline.deactivation_code) page.deactivationCode = status.offline.deactivation_code;
  if (page.role) render();
}

function held(status) { return Boolean(status && HELD_MODELS.has(status.model)); }

function render() {
  const s = page.status;
  const admin = page.role === "admin";
  renderStatus(s);
  show($("actions"), admin && held(s));
  show($("wizard"), admin && Boolean(s) && (!held(s) || s.model === "offline"));
  if (admin && s) {
    renderActions(s);
    renderWizard(s);
  }
}

function detail(label, value, id) {
  if (value === null || value === undefined || value === "") return [];
  const dd = el("dd", { id: id ? `d-${id}` : null });
  dd.append(typeof value === "string" ? document.createTextNode(value) : value);
  return [el("dt", { text: label }), dd];
}

function renderStatus(s) {
  const badge = $("state-badge");
  if (!s) {
    badge.textContent = "waiting for status…";
    badge.className = "badge";
    $("details").replaceChildren();
    return;
  }
  badge.textContent = s.state.replace("_", " ");
  badge.className = `badge ${STATE_CLASS[s.state] || "info"}`;
  badge.dataset.state = s.state;
  $("state-reason").textContent = s.reason ? s.reason[0].toUpperCase() + s.reason.slice(1) : "";

  const rows = [];
  rows.push(...detail("Model", s.model || "none", "model"));
  rows.push(...detail("License id", s.license_id, "license-id"));
  rows.push(...detail("Key", s.key ? el("code", { text: s.key }) : null, "key"));
  rows.push(...detail("Activation", s.activation_id, "activation"));
  if (s.features && s.features.length) {
    const titles = new Map((page.config.features || []).map((f) => [f.name, f.title]));
    const chips = el("ul", { class: "chips", "aria-label": "Features" });
    for (const f of s.features) chips.append(el("li", { class: "chip", "data-feature": f, title: f, text: titles.get(f) || f }));
    rows.push(...detail("Features", chips, "features"));
  }
  if (s.expires_at) rows.push(...detail("Expires", timeNode(s.expires_at), "expires"));
  if (s.support_until) rows.push(...detail("Support until", timeNode(s.support_until), "support"));
  if (s.valid_until) rows.push(...detail("Valid until", timeNode(s.valid_until), "valid"));
  if (s.deadline && s.deadline !== s.valid_until && s.deadline !== s.expires_at) rows.push(...detail("State ends", timeNode(s.deadline), "deadline"));
  rows.push(...detail("Connections", connectionsNode(s), "connections"));
  if (s.state === "trial" && s.trial) {
    rows.push(...detail("Trial", `up to ${s.trial.max_connections} connections`, "trial"));
  }
  if (s.check_in && s.model === "online") rows.push(...detail("Check-in", checkInNode(s.check_in), "check-in"));
  if (s.floating && (s.floating.lease_id || s.floating.server)) rows.push(...detail("Lease", leaseNode(s.floating), "lease"));
  if (s.offline && s.offline.pending_request_at) {
    rows.push(...detail("Offline request", timeNode(s.offline.pending_request_at), "offline-request"));
  }
  if (s.instance && s.instance.fingerprint) rows.push(...detail("Instance", el("code", { text: s.instance.fingerprint }), "instance"));
  $("details").replaceChildren(...rows);

  const alarms = [...(s.alarms || []), ...(s.problems || [])];
  const list = $("alarms");
  list.replaceChildren(...alarms.map((a) => el("li", { class: `alarm ${a.severity || ""}`, text: typeof a === "string" ? a : a.message || a.code })));
  show(list, alarms.length > 0);

  const code = page.role === "admin" ? page.deactivationCode : null;
  show($("deactivation-code-box"), Boolean(code) && !held(s));
  $("deactivation-code").value = code || "";
  $("updated").replaceChildren("Updated ", timeNode(s.updated_at));
}

function connectionsNode(s) {
  const n = s.connections ?? 0;
  const max = s.max_connections ?? (s.state === "trial" && s.trial ? s.trial.max_connections : null);
  const wrap = el("div", { class: "connections" });
  let text = s.serving === false ? `${n} (not serving clients)` : max ? `${n} of ${max}` : `${n} (no limit)`;
  // Only admins can ask for a fresh count; the retained document is not republished for it.
  if (page.role !== "admin") text += " at the last status change";
  wrap.append(el("span", { text }));
  if (max && s.serving !== false) {
    const bar = el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": String(max), "aria-valuenow": String(n), "aria-label": "Connections used" });
    const fill = el("div", { class: "fill" });
    const ratio = Math.min(1, n / max);
    fill.style.width = `${Math.round(ratio * 100)}%`; // CSSOM: allowed by the page's CSP
    if (ratio >= 0.8) fill.classList.add("high");
    bar.append(fill);
    wrap.append(bar);
  }
  return wrap;
}

function checkInNode(c) {
  const wrap = el("div", { class: c.failing_since ? "health bad" : "health good" });
  if (c.last_ok_at) wrap.append("last ok ", el("span", { class: "rel", "data-rel": c.last_ok_at, text: relative(c.last_ok_at) }));
  if (c.next_at) wrap.append(", next ", el("span", { class: "rel", "data-rel": c.next_at, text: relative(c.next_at) }));
  if (c.failing_since) wrap.append(el("br"), `failing since ${relative(c.failing_since)}: ${c.last_error || ""}`);
  return wrap;
}

function leaseNode(f) {
  const wrap = el("div", { class: f.last_error ? "health bad" : "health good" });
  if (f.server) wrap.append(el("code", { text: f.server }));
  if (f.seats !== undefined && f.seats !== null) wrap.append(el("br"), `${f.seats} seats in the pool`);
  if (f.lease_expires_at) wrap.append(el("br"), "lease expires ", el("span", { class: "rel", "data-rel": f.lease_expires_at, text: relative(f.lease_expires_at) }));
  if (f.next_renewal_at) wrap.append(", renews ", el("span", { class: "rel", "data-rel": f.next_renewal_at, text: relative(f.next_renewal_at) }));
  if (f.last_error) wrap.append(el("br"), `last error: ${f.last_error}`);
  return wrap;
}

// Relative times age while the page is open.
function tickClock() {
  for (const node of document.querySelectorAll("[data-rel]")) {
    const text = relative(node.dataset.rel);
    node.textContent = node.dataset.paren ? `(${text})` : text;
  }
}

// ---------------------------------------------------------------- events

function addEvent(event) {
  if (!event || !event.type) return;
  // Our own role probe is refused for a reader: not news for the person looking at the page.
  if (event.type === "request_refused" && event.client_id === page.clientId && event.operation === "status") return;
  page.events.unshift(event);
  page.events.length = Math.min(page.events.length, MAX_EVENTS);
  const item = el("li", { class: `event ${event.type}`, "data-type": event.type },
    el("time", { datetime: event.at || "", title: event.at || "", text: event.at ? new Date(event.at).toISOString().slice(11, 19) : "" }),
    el("strong", { text: event.type.replaceAll("_", " ") }),
    el("span", { text: eventSummary(event) }));
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  show($("events-empty"), false);
}

function eventSummary(e) {
  switch (e.type) {
    case "state_changed": return `${e.previous} → ${e.state}: ${e.reason || ""}`;
    case "connection_refused": return `${e.client_id || "?"}${e.username ? ` (${e.username})` : ""}: ${e.message || e.reason}`;
    case "client_disconnected": return `${e.client_id}: ${e.reason}`;
    case "request_refused": return `${e.client_id}: ${e.operation} (${e.reason})`;
    case "command": return `${e.operation} → ${e.state}`;
    case "command_failed": return `${e.operation}: ${errorText(e.error)}`;
    case "activated": return e.license_id ? `${e.method}: ${e.license_id}` : `${e.method}: ${e.server || ""}`;
    case "deactivated": return e.method === "floating" ? `floating (seat released: ${e.seat_released})` : `${e.method}: ${e.activation_id || ""}`;
    case "offline_request_created": return e.superseded_previous ? "replaces the previous request" : "";
    case "activation_lost": return e.message || "";
    default: return Object.entries(e).filter(([k]) => !["type", "at"].includes(k)).map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  }
}

// ---------------------------------------------------------------- actions

function renderActions(s) {
  $("reactivate").hidden = s.model === "offline";
  $("actions-hint").textContent = s.model === "offline"
    ? "An offline license is updated with a new usage request below; it keeps serving meanwhile."
    : "Reactivate pulls changed features or dates from the vendor without a restart.";
  const upgrade = $("upgrade");
  if (page.config.store_url && s.license_id) {
    const url = new URL(page.config.store_url, location.href);
    url.searchParams.set("license_id", s.license_id);
    upgrade.href = url.toString();
    upgrade.hidden = false;
  } else {
    upgrade.hidden = true;
  }
}

async function busy(prefix, work, message) {
  setMessage(`${prefix}-error`, "");
  setMessage(`${prefix}-progress`, message);
  const buttons = document.querySelectorAll("#actions button, #wizard button");
  for (const b of buttons) b.disabled = true;
  try {
    return await work();
  } catch (err) {
    setMessage(`${prefix}-error`, errorText(err));
    return null;
  } finally {
    setMessage(`${prefix}-progress`, "");
    for (const b of buttons) b.disabled = false;
    refreshKeyChecks();
  }
}

async function reactivate() {
  setMessage("actions-ok", "");
  const before = new Set((page.status && page.status.features) || []);
  const reply = await busy("actions", () => request("reactivate"), "Asking the license server…");
  if (reply) {
    const titles = new Map((page.config.features || []).map((f) => [f.name, f.title]));
    const added = (reply.status.features || []).filter((f) => !before.has(f)).map((f) => titles.get(f) || f);
    setMessage("actions-ok", added.length ? `Reactivated: added ${added.join(", ")}.` : "Reactivated: the license is up to date.");
  }
}

function deactivate() {
  const s = page.status;
  const dialog = $("confirm-dialog");
  $("confirm-text").textContent = s.model === "offline"
    ? `The broker stops serving clients and shows a deactivation code for the vendor, who frees license ${s.license_id}.`
    : s.model === "floating"
      ? "The seat goes back to the floating server and the broker stops serving clients."
      : `The vendor frees this activation of license ${s.license_id} so it can be used elsewhere; the broker stops serving clients.`;
  dialog.returnValue = "";
  dialog.showModal();
  $("confirm-cancel").focus();
}

async function confirmDeactivate() {
  $("confirm-dialog").close("confirm");
  setMessage("actions-ok", "");
  const reply = await busy("actions", () => request("deactivate"), "Deactivating…");
  if (!reply) return;
  if (reply.deactivation_code) {
    page.deactivationCode = reply.deactivation_code;
    render();
    focusTop("deactivation-code");
  }
  if (reply.seat_released === false) setMessage("actions-ok", "The floating server could not be reached: the seat frees itself when the lease expires.");
}

// ---------------------------------------------------------------- wizard

function method() {
  return document.querySelector('input[name="method"]:checked').value;
}

function renderWizard(s) {
  const updating = s.model === "offline";
  const chosen = updating || s.state === "pending_offline" ? "offline" : method();
  if (chosen !== method()) document.querySelector(`input[name="method"][value="${chosen}"]`).checked = true;
  $("wizard-title").textContent = updating ? "Update the offline license" : "Activate a license";
  show($("methods"), !updating);
  show($("online-form"), chosen === "online");
  show($("offline-form"), chosen === "offline");
  show($("floating-form"), chosen === "floating");
  const pending = s.offline && s.offline.pending_request_at && s.offline.request_code;
  show($("offline-pending"), Boolean(pending));
  if (pending) {
    $("offline-pending-at").replaceChildren("Request made ", timeNode(s.offline.pending_request_at), ". Waiting for the vendor's usage license.");
    $("offline-request-code").value = s.offline.request_code;
  }
  $("offline-step1-title").textContent = pending ? "Or make a new usage request (replaces the one above)" : "2. Generate a usage request";
  renderFeatureBoxes();
}

function renderFeatureBoxes() {
  const box = $("floating-features");
  if (box.querySelector("input")) return;
  for (const f of page.config.features || []) {
    const id = `feature-${f.name}`;
    box.append(el("label", { class: "feature", for: id },
      el("input", { type: "checkbox", id, value: f.name, checked: f.name === "mqtt_server" }), ` ${f.title}`));
  }
}

function onKeyInput(inputId, checkId, buttonId) {
  const text = $(inputId).value;
  const node = $(checkId);
  if (!text.trim()) {
    $(inputId).removeAttribute("aria-invalid");
    node.textContent = "";
    node.className = "check";
    $(buttonId).disabled = true;
    return null;
  }
  const result = checkKey(text);
  node.textContent = result.ok ? "✓ Format and checksum are right." : `✗ ${result.message[0].toUpperCase()}${result.message.slice(1)}.`;
  node.className = `check ${result.ok ? "good" : "bad"}`;
  $(inputId).setAttribute("aria-invalid", result.ok ? "false" : "true");
  $(buttonId).disabled = !result.ok;
  return result.ok ? result.key : null;
}

function refreshKeyChecks() {
  onKeyInput("online-key", "online-key-check", "online-activate");
  onKeyInput("offline-key", "offline-key-check", "offline-generate");
  $("offline-apply").disabled = !$("offline-license").value.trim();
}

async function activateOnline(event) {
  event.preventDefault();
  const key = onKeyInput("online-key", "online-key-check", "online-activate");
  if (!key) return;
  const reply = await busy("online", () => request("activate", { method: "online", license_key: key }), "Activating with the vendor…");
  if (reply) {
    $("online-key").value = "";
    refreshKeyChecks();
  }
}

async function generateOffline(event) {
  event.preventDefault();
  const key = onKeyInput("offline-key", "offline-key-check", "offline-generate");
  if (!key) return;
  const reply = await busy("offline", () => request("offline_request", { license_key: key }), "Generating the request…");
  if (reply) {
    $("offline-key").value = "";
    refreshKeyChecks();
    focusTop("offline-request-code");
  }
}

async function applyOffline(event) {
  event.preventDefault();
  const text = $("offline-license").value;
  if (!text.trim()) return;
  const reply = await busy("offline", () => request("activate", { method: "offline", usage_license: text }), "Applying the usage license…");
  if (reply) {
    $("offline-license").value = "";
    refreshKeyChecks();
  }
}

async function leaseFloating(event) {
  event.preventDefault();
  const url = $("floating-url").value.trim();
  const features = [...document.querySelectorAll("#floating-features input:checked")].map((i) => i.value);
  if (!url) return setMessage("floating-error", "Enter the floating license server's URL.");
  if (!features.length) return setMessage("floating-error", "Choose at least one feature.");
  await busy("floating", () => request("activate", { method: "floating", server_url: url, features }), "Leasing a seat…");
}

// ---------------------------------------------------------------- files, copy, download

function focusTop(textareaId) {
  const area = $(textareaId);
  area.focus({ preventScroll: true });
  area.setSelectionRange(0, 0);
  area.scrollTop = 0;
  area.scrollIntoView({ block: "nearest" });
}

function wireDrop(zoneId, fileId, chooseId, onText) {
  const zone = $(zoneId);
  const input = $(fileId);
  const read = async (file) => {
    if (!file) return;
    if (file.size > 65536) return onText(null, "That file is too large to be a license file.");
    onText(await file.text());
  };
  $(chooseId).addEventListener("click", () => input.click());
  input.addEventListener("change", () => { read(input.files[0]); input.value = ""; });
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    read(e.dataTransfer.files[0]);
  });
}

async function copy(textareaId, button) {
  const area = $(textareaId);
  try {
    await navigator.clipboard.writeText(area.value); // secure contexts only
  } catch {
    area.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
}

function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---------------------------------------------------------------- start

async function start() {
  try {
    const response = await fetch("page-config.json", { cache: "no-store" });
    page.config = await response.json();
  } catch {
    page.config = { ws_port: null, features: [] };
  }
  if (!window.mqtt) setMessage("login-error", "The MQTT client did not load (vendor/mqtt.min.js).");

  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const username = $("username").value.trim();
    const password = $("password").value;
    if (!username) return setMessage("login-error", "Enter a username.");
    login(username, password);
  });
  $("logout").addEventListener("click", logout);
  $("reactivate").addEventListener("click", reactivate);
  $("deactivate").addEventListener("click", deactivate);
  $("refresh").addEventListener("click", () => busy("actions", () => request("status"), "Refreshing…"));
  $("confirm-ok").addEventListener("click", confirmDeactivate);
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close("cancel"));
  for (const radio of document.querySelectorAll('input[name="method"]')) radio.addEventListener("change", render);

  $("online-key").addEventListener("input", () => onKeyInput("online-key", "online-key-check", "online-activate"));
  $("offline-key").addEventListener("input", () => onKeyInput("offline-key", "offline-key-check", "offline-generate"));
  $("offline-license").addEventListener("input", refreshKeyChecks);
  $("online-form").addEventListener("submit", activateOnline);
  $("offline-request-form").addEventListener("submit", generateOffline);
  $("offline-apply-form").addEventListener("submit", applyOffline);
  $("floating-form").addEventListener("submit", leaseFloating);

  wireDrop("online-drop", "online-file", "online-choose", (text, error) => {
    setMessage("online-error", error || "");
    if (text === null || text === undefined) return;
    $("online-key").value = text.trim();
    onKeyInput("online-key", "online-key-check", "online-activate");
    $("online-key").focus();
  });
  wireDrop("offline-drop", "offline-file", "offline-choose", (text, error) => {
    setMessage("offline-error", error || "");
    if (text === null || text === undefined) return;
    $("offline-license").value = text;
    refreshKeyChecks();
    $("offline-apply").focus();
  });
  $("offline-copy").addEventListener("click", (e) => copy("offline-request-code", e.currentTarget));
  $("offline-download").addEventListener("click", () => download("request.txt", $("offline-request-code").value));
  $("copy-deactivation").addEventListener("click", (e) => copy("deactivation-code", e.currentTarget));
  $("download-deactivation").addEventListener("click", () => download("deactivation.txt", $("deactivation-code").value));

  page.clockTimer = setInterval(tickClock, 30000);
  document.body.dataset.ready = "true";
  $("username").focus();
}

start();
