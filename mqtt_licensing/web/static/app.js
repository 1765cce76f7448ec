// The License page's controller: login, the admin's actions and the page state (the activation
// wizard is wizard.js). The broker is reached only through LicenseLink (link.js), which speaks the
// $license topic contract; what is shown is drawn by view.js.

import {
  $, copy, download, errorText, focusTop, sentence, setMessage, shortTime, show, tickClock,
} from "./dom.js";
import { LicenseLink } from "./link.js";
import { createWizard } from "./wizard.js";
import { addEvent, clearEvents, featureTitles, held, renderEvents, renderStatus, shortFingerprint } from "./view.js";

const STATUS_REFRESH_MS = 15000;
const RECENT_EVENTS_SECONDS = 86400;

const page = {
  config: null, link: null, role: null, status: null, deactivationCode: null, refreshTimer: null,
  events: [], seen: new Set(), busyPrefix: null, connected: false,
};

function request(operation, fields) {
  return page.link.request(operation, fields);
}

const wizard = createWizard({ page, busy, request, canAct });

// ---------------------------------------------------------------- session

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
  page.link = new LicenseLink(wsUrl(), username, password, {
    onConnection: setConnState,
    onStatus: setStatus,
    onEvent: (event) => {
      if (!event.type || !remember(event)) return;
      page.events.push(event);
      addEvent(event);
      const ours = event.type === "waiting_for_server" && event.client_id === page.link.clientId;
      if (ours && page.busyPrefix) setMessage(`${page.busyPrefix}-progress`, `${sentence(event.message)}…`);
    },
    onRole: (role) => {
      $("password").value = "";
      page.role = role;
      $("who").textContent = username === role ? username : `${username} (${role})`;
      showView("app");
      clearInterval(page.refreshTimer);
      // Connection counts are not republished on every CONNECT; ask now and then.
      page.refreshTimer = setInterval(() => {
        if (page.connected) request("status").catch(() => {}); // away: the reconnect asks anyway
      }, STATUS_REFRESH_MS);
      render();
      loadRecentEvents();
    },
    onFailure: (message) => {
      page.link = null;
      page.role = null;
      clearInterval(page.refreshTimer);
      setMessage("login-error", message);
      $("login-button").disabled = false;
      showView("login");
      $("password").value = "";
      $("password").focus();
    },
  });
}

// An event seen twice (live, and again in the recent list) is shown once.
function remember(event) {
  const key = JSON.stringify(event);
  if (page.seen.has(key)) return false;
  page.seen.add(key);
  return true;
}

// What happened before this page was opened: the agent's recent events, merged with any
// live ones that arrived meanwhile, oldest first.
async function loadRecentEvents() {
  let reply;
  try {
    reply = await request("events_recent", { since: RECENT_EVENTS_SECONDS });
  } catch {
    return; // an older agent without the operation: live events only
  }
  const older = (reply.events || []).filter((e) => e && e.type && remember(e));
  page.events = [...older, ...page.events].sort((a, b) => String(a.at).localeCompare(String(b.at))).slice(-100);
  renderEvents(page.events);
}

function logout() {
  clearInterval(page.refreshTimer);
  page.connected = false;
  if (page.link) page.link.end();
  Object.assign(page, { link: null, role: null, status: null, deactivationCode: null, events: [], seen: new Set() });
  clearEvents();
  for (const id of ["online-key", "offline-key", "offline-license", "password"]) $(id).value = "";
  $("login-button").disabled = false;
  showView("login");
  $("username").focus();
}

// While the broker is away the page says so, greys the last status it had and disables the
// buttons (a request could not be answered); on return it asks for a fresh status.
function setConnState(text) {
  const up = text === "connected";
  const node = $("conn-state");
  node.textContent = up ? text : `not connected, ${text}`;
  node.className = `conn ${up ? "up" : "down"}`;
  const was = page.connected;
  page.connected = up;
  if (was === up) return;
  if (page.role) render();
  setButtons(); // on return, the link asks for a fresh status itself
}

function canAct() { return page.connected && !page.busyPrefix; }

// Every action button: off while a request runs or while the broker is away.
function setButtons() {
  const off = !canAct();
  for (const b of document.querySelectorAll("#actions button, #wizard button")) b.disabled = off;
  if (!off) wizard.refreshKeyChecks();
}

// The broker's name on this page: its label (instance_label, else its host name), the host the
// page came from and its instance (a fleet has many License pages). The label is text the broker's
// config chose: it only ever reaches textContent and title, never markup.
function renderIdentity(s) {
  const fp = s && s.instance && s.instance.fingerprint;
  const own = s && s.instance && typeof s.instance.label === "string" ? s.instance.label : "";
  const label = own && own !== location.hostname ? `${own} (${location.host})` : location.host;
  $("broker-name").textContent = fp ? `${label} · instance ${shortFingerprint(fp)}` : label;
  $("broker-name").title = fp ? `instance fingerprint ${fp}` : "";
  document.title = `License · ${(s && s.instance && s.instance.label) || location.hostname}`;
}

function showView(name) {
  show($("login-view"), name === "login");
  show($("app-view"), name === "app");
  show($("session"), name === "app");
}

function setStatus(status) {
  if (!status || typeof status !== "object" || !status.state) return;
  page.status = status;
  if (status.offline && status.offline.deactivation_code) page.deactivationCode = status.offline.deactivation_code;
  if (page.role) render();
}

function render() {
  const s = page.status;
  const admin = page.role === "admin";
  renderStatus(s, page);
  renderIdentity(s);
  show($("actions"), admin && held(s));
  show($("wizard"), admin && Boolean(s) && (!held(s) || s.model === "offline"));
  if (admin && s) {
    renderActions(s);
    wizard.render(s);
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
    url.searchParams.set("license", s.license_id); // the store's upgrade form preselects it
    upgrade.href = url.toString();
    upgrade.hidden = false;
  } else {
    upgrade.hidden = true;
  }
}

async function busy(prefix, work, message) {
  setMessage(`${prefix}-error`, "");
  setMessage(`${prefix}-progress`, message);
  page.busyPrefix = prefix; // a waiting_for_server event of ours updates the progress line
  setButtons();
  try {
    return await work();
  } catch (err) {
    setMessage(`${prefix}-error`, errorText(err));
    return null;
  } finally {
    page.busyPrefix = null;
    setMessage(`${prefix}-progress`, "");
    setButtons();
  }
}

async function reactivate() {
  setMessage("actions-ok", "");
  const before = new Set((page.status && page.status.features) || []);
  const reply = await busy("actions", () => request("reactivate"), "Asking the license server…");
  if (reply) {
    const titles = featureTitles(page.config, reply.status);
    const added = (reply.status.features || []).filter((f) => !before.has(f)).map((f) => titles.get(f) || f);
    setMessage("actions-ok", added.length ? `Reactivated: added ${added.join(", ")}.` : "Reactivated: the license is up to date.");
  }
}

// A modal question; Cancel has the focus (the safe choice) and Escape answers it.
let confirmed = null;
function confirmDialog(title, text, okLabel, onConfirm) {
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = okLabel;
  confirmed = onConfirm;
  $("confirm-dialog").showModal();
  $("confirm-cancel").focus();
}

function deactivate() {
  const s = page.status;
  const first = s.model === "offline"
    ? `The broker shows a deactivation code for the vendor, who frees license ${s.license_id}.`
    : s.model === "floating"
      ? "The seat goes back to the floating server."
      : `The vendor frees this activation of license ${s.license_id} so it can be used elsewhere.`;
  confirmDialog("Deactivate this license?", `${first} ${afterDeactivation(s)}`, "Deactivate", confirmDeactivate);
}

// What the broker does without the license: its evaluation period, if some is left, or nothing.
function afterDeactivation(s) {
  const ends = s.trial_ends_at && Date.parse(s.trial_ends_at);
  if (ends && ends > Date.now()) {
    return `The broker then falls back to its evaluation period (until ${shortTime(s.trial_ends_at)}) and stops serving clients after that.`;
  }
  return "The broker then stops serving clients.";
}

function cancelOffline() {
  confirmDialog("Cancel the offline request?",
    "A usage license the vendor makes for this request will be refused afterwards.",
    "Cancel request", async () => {
      await busy("offline", () => request("offline_cancel"), "Cancelling the request…");
    });
}

async function confirmDeactivate() {
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
  $("confirm-ok").addEventListener("click", () => {
    $("confirm-dialog").close("confirm");
    const action = confirmed;
    confirmed = null;
    if (action) action();
  });
  $("offline-cancel").addEventListener("click", cancelOffline);
  $("confirm-cancel").addEventListener("click", () => $("confirm-dialog").close("cancel"));
  for (const radio of document.querySelectorAll('input[name="method"]')) radio.addEventListener("change", render);

  wizard.wire();
  $("offline-copy").addEventListener("click", (e) => copy("offline-request-code", e.currentTarget));
  $("offline-download").addEventListener("click", () => download("request.txt", $("offline-request-code").value));
  $("copy-deactivation").addEventListener("click", (e) => copy("deactivation-code", e.currentTarget));
  $("download-deactivation").addEventListener("click", () => download("deactivation.txt", $("deactivation-code").value));

  renderIdentity(null);
  setInterval(tickClock, 30000); // relative times age while the page is open
  document.body.dataset.ready = "true";
  $("username").focus();
}

start();
