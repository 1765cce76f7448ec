// What the page shows: the status document (topics.md, "The status document") and the
// live list of $license/events. Read-only; the same for admins and readers.

import { $, el, errorText, readableTimes, relative, relNode, sentence, show, timeNode } from "./dom.js";

const MAX_EVENTS = 100;
const HELD_MODELS = new Set(["online", "offline", "floating"]);
const STATE_CLASS = {
  active: "good", trial: "info", grace: "warn", pending_offline: "warn",
  expired: "bad", unlicensed: "bad", suspended: "bad", revoked: "bad", clock_tampered: "bad",
};

// A license is held while its certificate or lease is, serving or not (a suspended one can be
// reactivated once the vendor reinstates it): the Manage card stays.
export function held(status) {
  return Boolean(status && (HELD_MODELS.has(status.model) || status.activation_id));
}

// Short enough to read aloud; the full value is in the title.
export function shortFingerprint(fp) { return fp ? String(fp).slice(0, 8) : ""; }

// The titles the license's own signed definitions give win over the page's built-in list.
export function featureTitles(config, status) {
  const defined = ((status && status.definitions) || []).map((f) => [f.name, f.title]);
  return new Map([...(config.features || []).map((f) => [f.name, f.title]), ...defined]);
}

function detail(label, value, id) {
  if (value === null || value === undefined || value === "") return [];
  const dd = el("dd", { id: `d-${id}` });
  dd.append(typeof value === "string" ? document.createTextNode(value) : value);
  return [el("dt", { text: label }), dd];
}

// ctx: {config, role, deactivationCode, connected}
export function renderStatus(s, ctx) {
  const badge = $("state-badge");
  $("status-card").classList.toggle("stale", ctx.connected === false);
  if (!s) {
    badge.textContent = "waiting for status…";
    badge.className = "badge";
    $("details").replaceChildren();
    return;
  }
  // Active but granting nothing a client may connect with is not a green ACTIVE.
  const servesNone = s.serving && s.serves_clients === false;
  badge.textContent = s.state.replace("_", " ") + (servesNone ? " — serves no client" : "");
  badge.className = `badge ${servesNone ? "bad" : STATE_CLASS[s.state] || "info"}${ctx.connected === false ? " stale" : ""}`;
  badge.dataset.state = s.state;
  $("state-reason").textContent = sentence(s.reason);

  const rows = [
    ...detail("Model", s.model || "none", "model"),
    ...detail("License id", s.license_id, "license-id"),
    ...detail("Key", s.key ? el("code", { text: s.key }) : null, "key"), // masked by the agent
    ...detail("Activation", s.activation_id, "activation"),
  ];
  if (s.features && s.features.length) {
    const titles = featureTitles(ctx.config, s);
    const chips = el("ul", { class: "chips", "aria-label": "Features" });
    for (const f of s.features) chips.append(el("li", { class: "chip", "data-feature": f, title: f, text: titles.get(f) || f }));
    rows.push(...detail("Features", chips, "features"));
  }
  if (s.expires_at) rows.push(...detail("Expires", timeNode(s.expires_at), "expires"));
  if (s.support_until) rows.push(...detail("Support until", timeNode(s.support_until), "support"));
  // Not once the license has stopped: "valid until" next to an expiry or a suspension misleads.
  if (s.valid_until && s.serving !== false) rows.push(...detail("Valid until", timeNode(s.valid_until), "valid"));
  if (s.deadline && s.deadline !== s.valid_until && s.deadline !== s.expires_at) {
    const label = { trial: "Trial ends", grace: "Grace ends" }[s.state] || "State ends";
    rows.push(...detail(label, timeNode(s.deadline), "deadline"));
  }
  rows.push(...detail("Connections", connectionsNode(s), "connections"));
  if (s.state === "trial" && s.trial) rows.push(...detail("Trial", `up to ${s.trial.max_connections} connections`, "trial"));
  if (s.check_in && s.model === "online") rows.push(...detail("Check-in", checkInNode(s.check_in), "check-in"));
  if (s.floating && (s.floating.lease_id || s.floating.server)) rows.push(...detail("Lease", leaseNode(s.floating), "lease"));
  if (s.offline && s.offline.pending_request_at) {
    rows.push(...detail("Offline request", timeNode(s.offline.pending_request_at), "offline-request"));
  }
  if (s.last_failure) {
    const f = s.last_failure;
    const recovered = resolvedSince(s, f.at);
    const node = el("div", { class: recovered ? "health past" : "health bad" },
      `${f.operation}: ${sentence(f.message)} (${f.code}), `, relNode(f.at));
    if (recovered) node.append(el("br"), "since then: ", recovered);
    rows.push(...detail(recovered ? "Earlier failure" : "Last failure", node, "last-failure"));
  }
  if (s.instance && s.instance.fingerprint) {
    const fp = s.instance.fingerprint;
    const code = el("code", { title: fp, text: fp });
    // The label is the broker's own name (its config or host name): text, never markup.
    const label = typeof s.instance.label === "string" && s.instance.label
      ? [el("span", { class: "instance-label", text: s.instance.label }), " "] : [];
    rows.push(...detail("Instance", el("span", {}, ...label, code), "instance"));
  }
  $("details").replaceChildren(...rows);

  const alarms = [...(s.alarms || []), ...(s.problems || [])];
  const list = $("alarms");
  list.replaceChildren(...alarms.map((a) => {
    if (typeof a === "string") return el("li", { class: "alarm", text: a });
    const text = sentence(readableTimes(a.message || a.code));
    const item = el("li", { class: `alarm ${a.severity || ""}`, "data-code": a.code || "" }, text);
    if (a.deadline) item.append(" (", relNode(a.deadline), ")");
    return item;
  }));
  show(list, alarms.length > 0);

  const code = ctx.role === "admin" ? ctx.deactivationCode : null;
  show($("deactivation-code-box"), Boolean(code) && !held(s));
  $("deactivation-code").value = code || "";
  if (ctx.connected === false) {
    $("updated").replaceChildren(el("strong", { text: "Not connected to the broker: " }),
      "this is the status of ", timeNode(s.updated_at), ", it may have changed since.");
  } else {
    $("updated").replaceChildren("Updated ", timeNode(s.updated_at));
  }
}

// A failed request is over once a later check-in succeeded (ISO times compare as text).
function resolvedSince(s, at) {
  if (!at) return null;
  const ok = s.check_in && s.check_in.last_ok_at;
  return ok && ok > at ? el("span", {}, "a check-in succeeded ", relNode(ok)) : null;
}

function connectionsNode(s) {
  const n = s.connections ?? 0;
  const max = s.max_connections ?? (s.state === "trial" && s.trial ? s.trial.max_connections : null);
  const wrap = el("div", { class: "connections" });
  const text = s.serving === false ? `${n} (not serving clients)` : max ? `${n} of ${max}` : `${n} (no limit)`;
  wrap.append(el("span", { text }));
  if (max && s.serving !== false) {
    const bar = el("div", {
      class: "bar", role: "meter", "aria-label": "Connections used",
      "aria-valuemin": "0", "aria-valuemax": String(max), "aria-valuenow": String(n),
    });
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
  if (c.last_ok_at) wrap.append("last ok ", relNode(c.last_ok_at));
  if (c.next_at) wrap.append(", next ", relNode(c.next_at));
  const hb = c.heartbeat;
  if (hb) {
    wrap.append(el("br"), `heartbeat every ${hb.interval} s`);
    if (hb.last_ok_at) wrap.append(", last ", relNode(hb.last_ok_at));
    if (hb.release_after) wrap.append(`; released by the vendor after ${hb.release_after} s without one`);
  }
  if (c.failing_since) {
    wrap.append(el("br"), "failing since ", timeNode(c.failing_since));
    if (c.last_error) wrap.append(`: ${errorText(c.last_error)}`);
  }
  return wrap;
}

function leaseNode(f) {
  const wrap = el("div", { class: f.last_error ? "health bad" : "health good" });
  if (f.server) wrap.append(el("code", { text: f.server }));
  if (f.seats !== undefined && f.seats !== null) wrap.append(el("br"), `${f.seats} seats in the pool`);
  if (f.lease_expires_at) wrap.append(el("br"), "lease expires ", relNode(f.lease_expires_at));
  if (f.next_renewal_at) wrap.append(", renews ", relNode(f.next_renewal_at));
  if (f.last_error) wrap.append(el("br"), `last error: ${errorText(f.last_error)}`);
  return wrap;
}

export function addEvent(event) {
  const time = event.at ? new Date(event.at).toISOString().slice(11, 19) : "";
  const item = el("li", { class: `event ${event.type}`, "data-type": event.type },
    el("time", { datetime: event.at || "", title: event.at || "", text: time }),
    el("strong", { text: String(event.type).replaceAll("_", " ") }),
    el("span", { text: eventSummary(event) }));
  const list = $("events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
  show($("events-empty"), false);
}

export function renderEvents(events) {
  clearEvents();
  for (const event of events) addEvent(event);
}

export function clearEvents() {
  $("events").replaceChildren();
  show($("events-empty"), true);
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
    case "deactivated":
      return e.method === "floating" ? `floating (seat released: ${e.seat_released})` : `${e.method}: ${e.activation_id || ""}`;
    case "offline_request_created": return e.superseded_previous ? "replaces the previous request" : "";
    case "activation_lost": return e.message || "";
    case "activation_released": return e.message || "";
    case "alarm_raised": return `${e.severity}: ${readableTimes(e.message || e.code)}`;
    case "alarm_cleared": return `${e.code} (raised ${relative(e.since)})`;
    case "offline_request_cancelled": return "the pending offline request was dropped";
    case "waiting_for_server": return sentence(e.message || e.server);
    case "metering_overdue": return `usage has waited ${Math.round(e.overdue_seconds / 3600)} h for the vendor`;
    default:
      return Object.entries(e).filter(([k]) => k !== "type" && k !== "at")
        .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  }
}
