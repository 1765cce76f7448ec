// The page's only channel to the broker: MQTT 3.1.1 over WebSocket (MQTT.js), speaking
// the $license topic contract of topics.md and nothing else. Requests go to
// $license/<operation> with a correlation_id; replies come back on
// $license/reply/<our client id>; the state is the retained $license/status and the
// $license/events stream. The password lives in this object's memory only.

const REQUEST_TIMEOUT_MS = 60000;
// Reading operations: asked again when the connection comes back. Any other request that was
// out when the connection broke fails at once (it may or may not have run: the status tells).
const REPEATABLE = new Set(["status", "events_recent", "role_probe"]);
const TOPICS = {
  activate: "$license/activate", reactivate: "$license/reactivate", deactivate: "$license/deactivate",
  status: "$license/status", offline_request: "$license/offline/request", offline_cancel: "$license/offline/cancel",
  events_recent: "$license/events/recent",
  // No operation lives here: nothing runs and no event is emitted. The agent answers an admin
  // unknown_operation and anyone else not_authorized, which tells the page its role
  // (readers may send status requests too, so those cannot tell).
  role_probe: "$license/role-probe",
};

function randomHex(bytes) {
  const buf = new Uint8Array(bytes);
  crypto.getRandomValues(buf); // available on plain http, unlike crypto.randomUUID
  return [...buf].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// MQTT 3.1.1 has only a return code for a refused CONNECT; each says what the broker meant.
function loginRefusal(err) {
  const code = err && err.code;
  if (code === 4 || code === 5) return "Login refused: wrong username or password.";
  if (code === 3) { // the login was right: a session limit was reached (admin_limit, reader_limit)
    return "Login refused: too many admin or reader sessions are open (max_admin_connections, "
      + "max_reader_connections). Close one, e.g. another License page tab, and try again.";
  }
  if (code === 2) return "Login refused: the broker rejected this page's client id; reload the page and try again.";
  return `Cannot log in: ${err && err.message}`;
}

export class LicenseLink {
  // handlers: onStatus(doc), onEvent(event), onRole(role), onConnection(text), onFailure(message)
  constructor(url, username, password, handlers) {
    this.url = url;
    this.username = username;
    this.clientId = `web-${randomHex(6)}`; // no "/", "+" or "#": it must be usable as a reply topic
    this.replyTopic = `$license/reply/${this.clientId}`;
    this.handlers = handlers;
    this.pending = new Map();
    this.nextId = 1;
    this.everConnected = false;
    this.client = window.mqtt.connect(url, {
      protocolVersion: 4, // amqtt speaks MQTT 3.1.1
      clientId: this.clientId,
      username,
      password,
      clean: true,
      reconnectPeriod: 0, // a refused login must not retry; enabled once logged in
      connectTimeout: 10000,
      keepalive: 30,
    });
    this.client.on("connect", () => this.onConnect());
    this.client.on("message", (topic, payload) => this.onMessage(topic, payload));
    this.client.on("error", (err) => {
      if (this.everConnected) return;
      this.fail(loginRefusal(err));
    });
    this.client.on("close", () => {
      if (!this.everConnected) return this.fail(`Cannot reach the broker's WebSocket listener at ${url}.`);
      this.connected = false;
      this.interrupt();
      handlers.onConnection("reconnecting…");
    });
    this.client.on("reconnect", () => handlers.onConnection("reconnecting…"));
  }

  // The connection broke: repeatable requests wait for it (their clocks stop), others fail now.
  interrupt() {
    for (const [id, waiter] of this.pending) {
      clearTimeout(waiter.timer);
      waiter.timer = null;
      if (REPEATABLE.has(waiter.operation)) continue;
      this.pending.delete(id);
      waiter.reject({
        code: "disconnected",
        message: "the connection to the broker broke before it answered; the status shows whether it was done",
      });
    }
  }

  // Connected again: send what waited, with a fresh timeout.
  resume() {
    for (const [id, waiter] of this.pending) if (waiter.timer === null) this.send(id, waiter);
  }

  fail(message) {
    if (this.closed) return;
    this.end();
    this.handlers.onFailure(message);
  }

  end() {
    this.closed = true;
    for (const waiter of this.pending.values()) clearTimeout(waiter.timer);
    this.pending.clear();
    this.client.end(true);
  }

  async onConnect() {
    if (!this.everConnected) {
      this.everConnected = true;
      this.client.options.reconnectPeriod = 3000;
    }
    try {
      await this.subscribe([this.replyTopic, "$license/status", "$license/events"]);
    } catch (err) {
      return this.fail(err.message);
    }
    this.connected = true;
    this.handlers.onConnection("connected");
    this.resume();
    // Which role are we? Only admins get buttons (the agent refuses everyone else anyway).
    let role;
    try {
      await this.request("role_probe");
      return this.fail("The broker answered a request that is no operation: is this the licensing broker?");
    } catch (err) {
      if (err.code === "unknown_operation") role = "admin";
      else if (err.code === "not_authorized") role = "reader";
      else return this.fail(`The broker did not answer: ${err.message}`);
    }
    try {
      await this.request("status");
    } catch (err) {
      return this.fail(`The broker did not answer: ${err.message}`);
    }
    this.handlers.onRole(role);
  }

  subscribe(topics) {
    return new Promise((resolve, reject) => {
      this.client.subscribe(topics, { qos: 1 }, (err, granted) => {
        if (err) return reject(new Error(`subscription refused: ${err.message}`));
        const refused = (granted || []).filter((g) => g.qos === 128).map((g) => g.topic);
        if (refused.includes("$license/status")) {
          return reject(new Error("This user may not read the license status (ask for a reader or admin account)."));
        }
        resolve(granted);
      });
    });
  }

  // Resolves with the reply ({ok: true, ...}); rejects with its error {code, message}.
  // While the connection is down a repeatable request waits for it and any other is refused:
  // MQTT.js would queue it and run it whenever the broker returns, long after the click.
  request(operation, fields = {}) {
    const correlationId = `${this.clientId}-${this.nextId++}`;
    const payload = JSON.stringify({ ...fields, correlation_id: correlationId });
    return new Promise((resolve, reject) => {
      const waiter = { operation, payload, resolve, reject, timer: null };
      if (this.connected === false && !REPEATABLE.has(operation)) {
        return reject({ code: "disconnected", message: "not connected to the broker; wait until it is back" });
      }
      this.pending.set(correlationId, waiter);
      if (this.connected !== false) this.send(correlationId, waiter);
    });
  }

  send(correlationId, waiter) {
    waiter.timer = setTimeout(() => {
      this.pending.delete(correlationId);
      waiter.reject({ code: "timeout", message: "the broker did not answer in time" });
    }, REQUEST_TIMEOUT_MS);
    this.client.publish(TOPICS[waiter.operation], waiter.payload, { qos: 1 }, (err) => {
      if (!err || !this.pending.has(correlationId)) return;
      clearTimeout(waiter.timer);
      this.pending.delete(correlationId);
      waiter.reject({ code: "publish_failed", message: err.message });
    });
  }

  onMessage(topic, payload) {
    let data;
    try {
      data = JSON.parse(new TextDecoder().decode(payload));
    } catch {
      return; // the contract is JSON on these topics
    }
    if (!data || typeof data !== "object") return;
    if (topic === this.replyTopic) {
      const waiter = this.pending.get(String(data.correlation_id));
      if (!waiter) return;
      this.pending.delete(String(data.correlation_id));
      clearTimeout(waiter.timer);
      if (data.status) this.handlers.onStatus(data.status);
      if (data.ok) waiter.resolve(data);
      else waiter.reject(data.error || { code: "unknown", message: "failed" });
    } else if (topic === "$license/status") {
      this.handlers.onStatus(data);
    } else if (topic === "$license/events") {
      this.handlers.onEvent(data);
    }
  }
}
