// Small DOM and formatting helpers. Everything from the broker is put on the page as
// text (textContent, attributes), never as markup: event fields such as client ids
// come from anyone who can open a socket.

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
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

export function show(node, visible) { node.hidden = !visible; }

export function setMessage(id, text) {
  const node = $(id);
  node.textContent = text || "";
  node.hidden = !text;
}

export function sentence(text) {
  const s = String(text || "");
  return s ? s[0].toUpperCase() + s.slice(1) : s;
}

export function errorText(error) {
  if (!error) return "";
  const text = sentence(error.message || error) || "Failed";
  return error.code ? `${text} (${error.code})` : text;
}

// "in 1 h 59 min", "3 days 4 h ago", "just now": two units while the larger one is small,
// never rounded up (1 h 59 min is not "1 hour").
const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;

function plural(n, unit) { return `${n} ${unit}${n === 1 ? "" : "s"}`; }

export function span(abs) {
  if (abs < MINUTE) return `${abs} s`;
  if (abs < HOUR) return `${Math.floor(abs / MINUTE)} min`;
  if (abs < DAY) {
    const h = Math.floor(abs / HOUR);
    const m = Math.floor((abs % HOUR) / MINUTE);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const days = Math.floor(abs / DAY);
  if (days < 7) {
    const h = Math.floor((abs % DAY) / HOUR);
    return h ? `${plural(days, "day")} ${h} h` : plural(days, "day");
  }
  if (days < 60) return plural(days, "day");
  if (days < 730) return plural(Math.floor(days / 30), "month");
  return plural(Math.floor(days / 365), "year");
}

export function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 10) return "just now";
  return seconds >= 0 ? `in ${span(abs)}` : `${span(abs)} ago`;
}

// "2026-12-06 21:43 UTC": the form every time on the page takes.
export function shortTime(iso) {
  return new Date(iso).toISOString().slice(0, 16).replace("T", " ") + " UTC";
}

// Times inside the agent's message texts ("… since 2026-12-06T21:43:07Z …") in that form.
export function readableTimes(text) {
  return String(text || "").replace(/\b\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z\b/g, (iso) => shortTime(iso));
}

// "2026-12-06 21:43 UTC (in 6 days)"; the relative part ages with tickClock().
export function timeNode(iso) {
  if (!iso) return document.createTextNode("—");
  return el("span", {},
    el("time", { datetime: iso, text: shortTime(iso) }), " ",
    el("span", { class: "rel", "data-rel": iso, "data-paren": "1", text: `(${relative(iso)})` }));
}

export function relNode(iso) {
  return el("span", { class: "rel", "data-rel": iso, text: relative(iso) });
}

export function tickClock() {
  for (const node of document.querySelectorAll("[data-rel]")) {
    const text = relative(node.dataset.rel);
    node.textContent = node.dataset.paren ? `(${text})` : text;
  }
}

export function focusTop(textareaId) {
  const area = $(textareaId);
  area.focus({ preventScroll: true });
  area.setSelectionRange(0, 0);
  area.scrollTop = 0;
  area.scrollIntoView({ block: "nearest" });
}

export async function copy(textareaId, button) {
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

// A file made in the browser: works with no network at all.
export function download(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// A drop zone plus a "choose a file" button feeding one handler with the file's text.
export function wireDrop(zoneId, fileId, chooseId, onText) {
  const zone = $(zoneId);
  const input = $(fileId);
  const read = async (file) => {
    if (!file) return;
    if (file.size > 65536) return onText(null, "That file is too large to be a license file.");
    onText(await file.text(), null);
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
