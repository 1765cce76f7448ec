// The License page's activation wizard: online, offline and floating activation, the key checks
// as the operator types (keys.js), and "Buy a license" in trial. app.js owns the page state and
// the link to the broker; the wizard gets what it uses from it.

import { checkKey } from "./keys.js";
import { $, el, focusTop, setMessage, show, timeNode, wireDrop } from "./dom.js";

export function createWizard({ page, busy, request, canAct }) {
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
    renderBuy(s, updating);
    $("offline-step1-title").textContent = pending ? "Or make a new usage request (replaces the one above)" : "2. Generate a usage request";
    renderFeatureBoxes();
  }

  // In trial or unlicensed: a way to buy. store_url names the store's upgrade page; the store's
  // front page (where a new license is bought) is the folder it is in.
  function renderBuy(s, updating) {
    const offer = Boolean(page.config.store_url) && !updating && (s.state === "trial" || s.state === "unlicensed");
    show($("buy-box"), offer);
    if (offer) $("buy").href = new URL("./", new URL(page.config.store_url, location.href)).toString();
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
    $(buttonId).disabled = !result.ok || !canAct();
    return result.ok ? result.key : null;
  }

  function refreshKeyChecks() {
    onKeyInput("online-key", "online-key-check", "online-activate");
    onKeyInput("offline-key", "offline-key-check", "offline-generate");
    $("offline-apply").disabled = !$("offline-license").value.trim() || !canAct();
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

  function wire() {
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
  }

  return { render: renderWizard, refreshKeyChecks, wire };
}
