/* The dashboard: one page over the control API (daemon/http.py serves it; schemas/openapi.yaml documents the
   API). No framework and no build step: plain ES2020, run under a Content-Security-Policy that allows only
   this file's code and style.css (nothing inline, nothing from elsewhere).

   - Login: the user pastes a token (`orchestrator token create`), checked with GET /whoami and kept in
     sessionStorage (this tab only). Admin controls are built only for an admin token on a listener that is
     not --read-only: a read token's page has no such buttons at all.
   - Live: the event log is followed as server-sent events; every event refreshes the object table (debounced),
     and the table is read again every sampling interval for cpu and memory. EventSource cannot send the
     Authorization header, so streams are read with fetch and parsed here (Stream).
   - Connection: when the daemon stops answering the page says so, retries with a backoff of 1 s to 5 s, and
     once it answers again reads everything afresh and resumes its streams where they stopped (Last-Event-ID).
   - Every string the daemon sends (names, labels, messages, process output) goes into the page as text
     (textContent), never as HTML: process output is anyone's.
*/
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "orchestrator.token";
const MAX_EVENTS = 200; // events kept in the pane, newest first
const EVENTS_FIRST = 50; // read at (re)connection, before the live stream
const MAX_LOG_LINES = 1000;
const LOG_TAIL = 100;
const REFRESH_DEBOUNCE_MS = 150; // a burst of events (a restart is 3 or 4) costs one read of /objects
const BACKOFF_MS = [1000, 2000, 4000, 5000]; // between tries to reach a daemon that went away
const SPARK_POINTS = 60;
const REQUEST_MS = 15000; // a request the daemon does not answer in this long counts as the daemon gone
const SILENT_MS = 45000; // a stream with no byte for this long (keep-alives come every 15 s) is opened again
// Object states that need someone's attention (planning/status.py's phases): the row turns red.
const BAD_STATES = new Set(["Failed", "BackOff"]);
// States on the way somewhere: shown amber.
const WARN_STATES = new Set(["Pending", "Waiting", "Stopping", "Stopped", "Removing"]);
const BAD_EVENTS = new Set(["Invalid", "StartFailed", "BackOff", "HookFailed", "ProbeFailed", "Failed",
  "LimitExceeded", "InternalError", "LogRotationFailed", "StoreBusy", "StoreLost", "RolloutFailed", "SocketLost",
  "SyncFailed", "DriftDetected", "AccessDenied"]);
const WARN_EVENTS = new Set(["Exited", "Killing", "Restarting", "LimitNotApplied", "RollbackStarted", "RolledBack",
  "SyncSkipped", "PruneSkipped", "Shutdown"]);

const $ = (selector) => document.querySelector(selector);

const session = {
  token: null,
  scope: null,
  admin: false,
  state: "connecting", // of the connection: connecting, connected, lost
  revision: null, // the desired state's revision, from /objects
  latest: null, // the newest revision's document, from /revisions
  objects: [],
  usage: {}, // key -> {replica index: [[time, cpu %, memory bytes], ...]}
  interval: 20, // the daemon's sampling interval, seconds
  namespaces: new Set(),
  rows: new Map(), // key -> its <tr>
  lastEventId: null, // the newest event shown
  target: null, // the followed log: {key, replica}
  streams: { events: null, log: null },
  timers: { poll: null, ages: null, retry: null, refresh: null, message: null },
  asked: 0, // numbers of /objects reads: an answer older than the one shown is dropped
  shown: 0,
};

// -- the API ----------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, problems) {
    super(message);
    this.status = status;
    this.problems = problems || [];
  }
}

function headers(extra) {
  return { Authorization: `Bearer ${session.token}`, ...extra };
}

// One request; its JSON answer, or an ApiError with the daemon's message. fetch itself rejects (a TypeError)
// when the daemon cannot be reached: failed() tells the two apart.
async function api(method, path, body) {
  const init = { method, headers: headers(), cache: "no-store", signal: AbortSignal.timeout(REQUEST_MS) };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  return answer(await fetch(API + path, init));
}

async function answer(response) {
  let document = null;
  try {
    document = await response.json();
  } catch (error) {
    if (response.ok) throw error;
  }
  if (!response.ok) {
    const error = document && document.error;
    throw new ApiError(response.status, (error && error.message) || `${response.status} ${response.statusText}`,
      error && error.problems);
  }
  return document;
}

function errorText(error) {
  const problems = (error.problems || []).map((p) => p.message || JSON.stringify(p)).slice(0, 3);
  return [error.message, ...problems].join("; ");
}

// fetch's failures that mean the daemon is not answering (and not that it refused).
function unreachable(error) {
  return error instanceof TypeError || (error && error.name === "TimeoutError");
}

// Where every failure ends up: an unreachable daemon is a lost connection, a refused token a logout, and
// anything else a message to the user.
function failed(error) {
  if (!session.token || (error && error.name === "AbortError")) return;
  if (unreachable(error)) {
    lost();
  } else if (error instanceof ApiError && error.status === 401) {
    logout("the daemon no longer accepts this token");
  } else {
    say(errorText(error), true);
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function reachable() {
  try {
    await fetch(API + "/whoami", { headers: headers(), cache: "no-store", signal: AbortSignal.timeout(5000) });
    return true;
  } catch (error) {
    return false;
  }
}

// -- server-sent events over fetch ------------------------------------------------------------------------

// One SSE stream (WHATWG's format: `id:`, `event:`, `data:` and `retry:` fields, `:` comments, a blank line
// ends a message). A stream that ends is opened again after `retry` ms (at once after an `overflow` frame:
// the daemon let a slow reader go) with Last-Event-ID, so what the daemon kept is replayed, not lost. A cut
// stream whose daemon does not answer either makes the connection lost: its retries take over from there.
class Stream {
  constructor(path, onMessage, lastId) {
    this.path = path;
    this.onMessage = onMessage;
    this.lastId = lastId === undefined ? null : lastId;
    this.retry = 2000;
    this.stopped = false;
    this.controller = null; // of the request under way
    this.run();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async run() {
    while (!this.stopped) {
      let wait = this.retry;
      try {
        const sent = this.lastId === null ? headers() : headers({ "Last-Event-ID": String(this.lastId) });
        this.controller = new AbortController();
        const response = await fetch(API + this.path, { headers: sent, signal: this.controller.signal,
          cache: "no-store" });
        if (!response.ok) await answer(response); // throws its ApiError
        if (await this.read(response.body, this.controller)) wait = 0;
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && error.status !== 503) { // 503: every stream slot taken, try later
          failed(error);
          return;
        }
      }
      if (this.stopped) return;
      if (!(await reachable())) {
        lost();
        return;
      }
      await sleep(wait);
    }
  }

  // Reads frames until the stream ends; true when it ended with `overflow`.
  async read(body, controller) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    let event = "";
    let watchdog = null;
    try {
      for (;;) {
        clearTimeout(watchdog);
        watchdog = setTimeout(() => controller.abort(), SILENT_MS); // a stalled connection: open it again
        const { value, done } = await reader.read();
        if (done) return false;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n")) >= 0) { // the daemon ends lines with \n
          const line = buffer.slice(0, end).replace(/\r$/, "");
          buffer = buffer.slice(end + 1);
          if (line === "") { // a message is complete
            if (data.length) {
              const type = event || "message";
              this.onMessage(type, data.join("\n"));
              if (type === "overflow") return true;
            }
            data = [];
            event = "";
            continue;
          }
          if (line.startsWith(":")) continue; // a comment: the keep-alive
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let text = colon < 0 ? "" : line.slice(colon + 1);
          if (text.startsWith(" ")) text = text.slice(1);
          if (field === "data") data.push(text);
          else if (field === "event") event = text;
          else if (field === "id" && !text.includes("\0")) this.lastId = text;
          else if (field === "retry" && /^\d+$/.test(text)) this.retry = Number(text);
        }
      }
    } finally {
      clearTimeout(watchdog);
      reader.cancel().catch(() => {});
    }
  }
}

// -- login and the connection -----------------------------------------------------------------------------

async function login(token) {
  session.token = token;
  let me;
  try {
    me = await api("GET", "/whoami");
  } catch (error) {
    session.token = null;
    const text = !(error instanceof ApiError) ? "the daemon does not answer: is it running?"
      : error.status === 401 ? "this token is not accepted here (wrong, or revoked)" : error.message;
    showLogin(text);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("#login-view").hidden = true;
  $("#app").hidden = false;
  $("#token").value = "";
  applyScope(me);
  setConnection("connecting", "connecting…");
  try {
    await refreshAll();
    connected();
  } catch (error) {
    failed(error);
    if (session.state !== "lost" && session.token) lost();
  }
}

function logout(why) {
  stopLive();
  clearTimeout(session.timers.retry);
  sessionStorage.removeItem(TOKEN_KEY);
  session.token = null;
  session.scope = null;
  session.admin = false;
  session.target = null;
  session.streams.log = null;
  session.revision = null;
  session.latest = null;
  session.lastEventId = null;
  delete document.body.dataset.scope;
  delete document.body.dataset.connection;
  for (const row of session.rows.values()) row.remove();
  session.rows.clear();
  $("#events").replaceChildren();
  $("#log").replaceChildren();
  $("#log-target").textContent = "click a process to follow its output";
  $("#revision-actions").replaceChildren();
  showLogin(why);
}

function showLogin(error) {
  $("#app").hidden = true;
  $("#login-view").hidden = false;
  const shown = $("#login-error");
  shown.textContent = error || "";
  shown.hidden = !error;
  $("#token").focus();
}

// What this token may do; the admin controls exist only for an admin token on a writable listener.
function applyScope(me) {
  const admin = me.scope === "admin" && !me.read_only;
  session.scope = me.scope;
  document.body.dataset.scope = me.scope;
  if (admin === session.admin && session.rows.size) return;
  session.admin = admin;
  for (const row of session.rows.values()) row.remove(); // built again, with or without their buttons
  session.rows.clear();
  const head = $("#processes thead tr");
  const th = head.querySelector("th.actions");
  if (admin && !th) {
    const cell = document.createElement("th");
    cell.className = "actions";
    cell.textContent = "Actions";
    head.append(cell);
  } else if (!admin && th) {
    th.remove();
  }
  const place = $("#revision-actions");
  place.replaceChildren();
  if (admin) {
    const button = document.createElement("button");
    button.id = "rollback";
    button.type = "button";
    button.textContent = "Roll back";
    button.title = "make the previous revision desired again";
    button.addEventListener("click", rollback);
    place.append(button);
    renderRevision();
  }
}

function setConnection(state, text) {
  session.state = state;
  document.body.dataset.connection = state;
  const shown = $("#connection");
  shown.dataset.state = state;
  shown.textContent = text;
}

function connected() {
  if (!session.token) return; // logged out meanwhile
  setConnection("connected", "connected");
  startLive();
}

// The daemon went away: stop what reads it, and try it again until it answers (then read everything anew).
function lost() {
  if (!session.token || session.state === "lost") return;
  setConnection("lost", "daemon unreachable, retrying…");
  stopLive();
  retry(0);
}

function retry(attempt) {
  clearTimeout(session.timers.retry);
  const wait = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
  session.timers.retry = setTimeout(async () => {
    if (!session.token) return;
    try {
      applyScope(await api("GET", "/whoami"));
      await refreshAll();
      connected();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        failed(error);
        return;
      }
      if (error instanceof ApiError) say(errorText(error), true);
      retry(attempt + 1);
    }
  }, wait);
}

function startLive() {
  stopLive();
  const since = session.lastEventId === null ? 0 : session.lastEventId;
  session.streams.events = new Stream(`/events?watch=1&since=${since}`, onEvent, session.lastEventId);
  if (session.target) followLog(true);
  const every = Math.max(1, Number(session.interval) || 20) * 1000;
  session.timers.poll = setInterval(() => {
    Promise.all([refreshObjects(), refreshUsage()]).catch(failed);
  }, every);
  session.timers.ages = setInterval(renderAges, 1000);
}

function stopLive() {
  for (const name of ["events", "log"]) {
    if (session.streams[name]) session.streams[name].stop();
  }
  session.streams.events = null; // the log's stream is kept (stopped): its lastId is where to resume
  clearInterval(session.timers.poll);
  clearInterval(session.timers.ages);
  clearTimeout(session.timers.refresh);
  session.timers.refresh = null;
}

// -- reading --------------------------------------------------------------------------------------------

async function refreshAll() {
  session.revision = null; // read the revision again too
  const [events] = await Promise.all([api("GET", `/events?limit=${EVENTS_FIRST}`), refreshObjects(),
    refreshUsage()]);
  renderEventList(events.events);
}

function scheduleRefresh() {
  if (session.timers.refresh) return;
  session.timers.refresh = setTimeout(() => {
    session.timers.refresh = null;
    refreshObjects().catch(failed);
  }, REFRESH_DEBOUNCE_MS);
}

async function refreshObjects() {
  const asked = ++session.asked;
  const labels = $("#labels");
  const selector = labels.value.trim();
  let found;
  try {
    found = await api("GET", "/objects?usage=1" + (selector ? `&selector=${encodeURIComponent(selector)}` : ""));
  } catch (error) {
    if (selector && error instanceof ApiError && (error.status === 400 || error.status === 409)) {
      labels.classList.add("invalid");
      labels.title = error.message;
      return;
    }
    throw error;
  }
  if (asked < session.shown) return; // a later read was shown already
  session.shown = asked;
  labels.classList.remove("invalid");
  labels.title = "a label selector: key=value, key!=value, key, !key, joined by commas";
  session.objects = found.objects;
  for (const object of found.objects) session.namespaces.add(object.namespace);
  renderNamespaces();
  renderObjects();
  if (found.revision !== session.revision) {
    session.revision = found.revision;
    const revisions = await api("GET", "/revisions?limit=1");
    session.latest = revisions.revisions[0] || null;
    renderRevision();
  }
}

async function refreshUsage() {
  const found = await api("GET", "/usage");
  session.usage = found.objects || {};
  if (found.interval !== session.interval) {
    session.interval = found.interval;
    if (session.state === "connected") startLive(); // the poll follows the daemon's interval
  }
  for (const [key, row] of session.rows) renderChart(row.cells[8], session.usage[key]);
}

// -- the object table -----------------------------------------------------------------------------------

function renderNamespaces() {
  const select = $("#namespace");
  const have = new Set([...select.options].map((option) => option.value));
  for (const namespace of [...session.namespaces].sort()) {
    if (have.has(namespace)) continue;
    const option = document.createElement("option");
    option.value = namespace;
    option.textContent = namespace;
    const after = [...select.options].slice(1).find((o) => o.value > namespace);
    select.insertBefore(option, after || null);
  }
}

function renderObjects() {
  const namespace = $("#namespace").value;
  const shown = session.objects.filter((o) => !namespace || o.namespace === namespace);
  const body = $("#processes tbody");
  const kept = new Set();
  let previous = null;
  for (const object of shown) {
    let row = session.rows.get(object.key);
    if (!row) {
      row = makeRow(object.key);
      session.rows.set(object.key, row);
    }
    updateRow(row, object);
    kept.add(object.key);
    const place = previous ? previous.nextSibling : body.firstChild;
    if (place !== row) body.insertBefore(row, place); // moved only when out of order (an input keeps its focus)
    previous = row;
  }
  for (const [key, row] of session.rows) {
    if (!kept.has(key)) {
      row.remove();
      session.rows.delete(key);
    }
  }
  $("#empty").hidden = shown.length > 0;
  renderLogReplicas();
}

function cell(row, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  row.append(td);
  return td;
}

function makeRow(key) {
  const row = document.createElement("tr");
  row.dataset.key = key;
  cell(row, "name");
  cell(row, "namespace");
  const state = document.createElement("span");
  state.className = "state";
  cell(row).append(state);
  for (const name of ["ready", "restarts", "cpu", "memory", "age"]) cell(row, `number ${name}`);
  cell(row, "chart");
  if (session.admin) {
    const actions = cell(row, "actions");
    const restart = document.createElement("button");
    restart.type = "button";
    restart.className = "restart";
    restart.textContent = "Restart";
    restart.addEventListener("click", () => mutate(restart, "/restart", { name: key }, `restarting ${key}`));
    const count = document.createElement("input");
    count.type = "number";
    count.min = "0";
    count.className = "replicas";
    count.title = "replicas";
    const scale = document.createElement("button");
    scale.type = "button";
    scale.className = "scale";
    scale.textContent = "Scale";
    scale.addEventListener("click", () => {
      const replicas = Number(count.value);
      if (count.value === "" || !Number.isInteger(replicas) || replicas < 0) {
        say("replicas: a whole number, 0 or more", true);
        return;
      }
      mutate(scale, "/scale", { name: key, replicas }, `scaling ${key} to ${replicas}`);
    });
    const box = document.createElement("div");
    box.append(restart, count, scale);
    actions.append(box);
    actions.addEventListener("click", (event) => event.stopPropagation()); // not a click on the row
  }
  row.addEventListener("click", () => select(key, 0));
  return row;
}

function updateRow(row, object) {
  const [name, namespace, state, ready, restarts, cpu, memory] = row.cells;
  row.dataset.state = object.state;
  row.classList.toggle("bad", BAD_STATES.has(object.state));
  row.classList.toggle("warn", WARN_STATES.has(object.state));
  row.classList.toggle("selected", !!session.target && session.target.key === object.key);
  name.textContent = object.name;
  name.title = Object.entries(object.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
  namespace.textContent = object.namespace;
  state.firstChild.textContent = object.state;
  state.title = object.replica_status.map((r) => r.reason).filter(Boolean).join("; ");
  ready.textContent = `${object.replicas.ready}/${object.replicas.desired}`;
  restarts.textContent = String(object.restarts);
  const alive = object.replica_status.filter((r) => r.pid);
  const cpus = alive.map((r) => r.cpu_percent).filter((v) => typeof v === "number");
  const memories = alive.map((r) => r.memory_bytes).filter((v) => typeof v === "number");
  cpu.textContent = cpus.length ? `${sum(cpus).toFixed(1)}%` : "–";
  memory.textContent = memories.length ? bytesText(sum(memories)) : "–";
  row.created = object.created_at;
  renderAge(row);
  renderChart(row.cells[8], session.usage[object.key]);
  const count = row.querySelector("input.replicas");
  if (count && row.desired !== object.replicas.desired) { // what the user typed stays until it changes
    row.desired = object.replicas.desired;
    count.value = String(object.replicas.desired);
  }
}

function renderAges() {
  for (const row of session.rows.values()) renderAge(row);
}

function renderAge(row) {
  row.cells[7].textContent = typeof row.created === "number" ? humanAge(Date.now() / 1000 - row.created) : "–";
}

// A sparkline of the object's cpu (blue, 0 to its peak or 1 %) and memory (purple, 0 to its peak), summed
// over its replicas, from the sampler's history. Built as SVG elements: nothing is parsed from text.
function renderChart(td, history) {
  const NS = "http://www.w3.org/2000/svg";
  const width = 100;
  const height = 22;
  const byTime = new Map();
  for (const samples of Object.values(history || {})) {
    for (const [at, cpu, memory] of samples) {
      const point = byTime.get(at) || { cpu: 0, memory: 0 };
      point.cpu += typeof cpu === "number" ? cpu : 0;
      point.memory += typeof memory === "number" ? memory : 0;
      byTime.set(at, point);
    }
  }
  const points = [...byTime.entries()].sort((a, b) => a[0] - b[0]).slice(-SPARK_POINTS).map((entry) => entry[1]);
  let svg = td.firstChild;
  if (!svg) {
    svg = document.createElementNS(NS, "svg");
    svg.setAttribute("class", "spark");
    svg.setAttribute("width", String(width));
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    td.append(svg);
  }
  svg.replaceChildren();
  if (points.length < 2) return;
  const title = document.createElementNS(NS, "title");
  const last = points[points.length - 1];
  title.textContent = `cpu ${last.cpu.toFixed(1)}%, memory ${bytesText(last.memory)} (last ${points.length} samples)`;
  svg.append(title);
  for (const [name, top] of [["cpu", Math.max(1, ...points.map((p) => p.cpu))],
    ["memory", Math.max(1, ...points.map((p) => p.memory)) * 1.15]]) {
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("class", name);
    line.setAttribute("points", points.map((p, i) => {
      const x = (i / (points.length - 1)) * (width - 2) + 1;
      const y = height - 1 - (p[name] / top) * (height - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    }).join(" "));
    svg.append(line);
  }
}

// -- revision and the admin's changes -------------------------------------------------------------------

function renderRevision() {
  const shown = $("#revision");
  shown.replaceChildren(document.createTextNode(session.revision === null ? "" : `revision ${session.revision}`));
  const latest = session.latest;
  if (latest && latest.git_commit) {
    const commit = document.createElement("span");
    commit.className = "commit";
    commit.textContent = String(latest.git_commit).slice(0, 7);
    shown.append(" ", commit);
    if (latest.git_dirty) {
      const dirty = document.createElement("span");
      dirty.className = "dirty";
      dirty.textContent = "dirty";
      shown.append(" ", dirty);
    }
  }
  shown.title = latest ? [latest.action, latest.user, latest.message].filter(Boolean).join(" · ") : "";
  const button = $("#rollback");
  if (button) button.disabled = !(session.revision > 1);
}

async function rollback() {
  const target = session.revision - 1;
  if (!(target >= 1) || !confirm(`Roll back to revision ${target}? Its objects become desired again.`)) return;
  await mutate($("#rollback"), "/rollback", { revision: target }, `rolling back to revision ${target}`);
}

async function mutate(button, path, body, doing) {
  button.disabled = true;
  try {
    await api("POST", path, body);
    say(doing);
    scheduleRefresh();
  } catch (error) {
    failed(error);
  } finally {
    button.disabled = false;
    if (button.id === "rollback") renderRevision();
  }
}

function say(text, error) {
  const shown = $("#message");
  shown.textContent = text;
  shown.classList.toggle("error", !!error);
  shown.hidden = false;
  clearTimeout(session.timers.message);
  session.timers.message = setTimeout(() => { shown.hidden = true; }, error ? 10000 : 4000);
}

// -- events ---------------------------------------------------------------------------------------------

function renderEventList(events) {
  $("#events").replaceChildren();
  session.lastEventId = null;
  for (const event of events) addEvent(event);
}

function onEvent(type, data) {
  if (type !== "event") return; // overflow: the stream reconnects by itself
  addEvent(JSON.parse(data));
  scheduleRefresh();
}

function addEvent(event) {
  if (session.lastEventId !== null && event.id <= session.lastEventId) return; // replayed: shown already
  session.lastEventId = event.id;
  const item = document.createElement("li");
  item.dataset.id = String(event.id);
  item.dataset.type = event.type;
  item.classList.toggle("bad", BAD_EVENTS.has(event.type));
  item.classList.toggle("warn", WARN_EVENTS.has(event.type));
  const parts = [
    ["time", new Date(event.time * 1000).toLocaleTimeString([], { hour12: false })],
    ["type", event.type],
    ["object", (event.object || "orchestrator") + (event.replica === null ? "" : `[${event.replica}]`)],
    ["message", event.message],
  ];
  for (const [name, text] of parts) {
    const span = document.createElement("span");
    span.className = name;
    span.textContent = text;
    item.append(span);
  }
  item.title = event.message;
  const list = $("#events");
  list.prepend(item);
  while (list.children.length > MAX_EVENTS) list.lastChild.remove();
}

// -- logs -----------------------------------------------------------------------------------------------

// Follow one replica's output; the stream of the one followed before is closed.
function select(key, replica) {
  if (session.target && session.target.key === key && session.target.replica === replica) return;
  if (session.streams.log) session.streams.log.stop();
  session.streams.log = null;
  session.target = { key, replica };
  $("#log").replaceChildren();
  $("#log-target").textContent = `${key} [${replica}]`;
  for (const [k, row] of session.rows) row.classList.toggle("selected", k === key);
  renderLogReplicas();
  if (session.state === "connected") followLog(false);
}

function followLog(resume) {
  const old = session.streams.log;
  const lastId = resume && old ? old.lastId : null;
  if (old) old.stop();
  const { key, replica } = session.target;
  const path = `/logs?name=${encodeURIComponent(key)}&replica=${replica}&tail=${LOG_TAIL}&follow=1`;
  session.streams.log = new Stream(path, onLine, lastId);
}

function onLine(type, data) {
  if (type !== "line") return;
  const line = JSON.parse(data);
  const log = $("#log");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  const div = document.createElement("div");
  div.className = "line";
  div.textContent = line.text;
  log.append(div);
  while (log.children.length > MAX_LOG_LINES) log.firstChild.remove();
  if (atBottom) log.scrollTop = log.scrollHeight;
}

function renderLogReplicas() {
  const choice = $("#log-replica");
  const target = session.target;
  const object = target && session.objects.find((o) => o.key === target.key);
  const indexes = object ? object.replica_status.map((r) => r.index) : [];
  choice.hidden = indexes.length < 2;
  const wanted = indexes.map(String).join(",");
  if (choice.dataset.indexes !== wanted) {
    choice.dataset.indexes = wanted;
    choice.replaceChildren(...indexes.map((index) => {
      const option = document.createElement("option");
      option.value = String(index);
      option.textContent = `replica ${index}`;
      return option;
    }));
  }
  if (target) choice.value = String(target.replica);
}

// -- formats --------------------------------------------------------------------------------------------

const sum = (values) => values.reduce((a, b) => a + b, 0);

// Binary units as `get -o wide` shows memory (cli/render/common.py's human_bytes): 512B, 1.5Ki, 12Mi.
function bytesText(n) {
  if (n < 1024) return `${Math.round(n)}B`;
  let value = n;
  for (const unit of ["Ki", "Mi", "Gi", "Ti", "Pi"]) {
    value /= 1024;
    if (unit === "Pi" || Math.round(value) < 1024) {
      if (value < 10) {
        const text = value.toFixed(1);
        return (text === "10.0" ? "10" : text) + unit;
      }
      return `${Math.round(value)}${unit}`;
    }
  }
  return `${n}B`;
}

// kubectl-style ages, as cli/render/common.py's human_age: 45s, 3m20s, 45m, 2h5m, 20h, 4d6h, 45d, 2y30d.
function humanAge(seconds) {
  const s = Math.floor(Math.max(seconds, 0));
  const minutes = Math.floor(s / 60);
  const hours = Math.floor(s / 3600);
  const days = Math.floor(s / 86400);
  if (s < 120) return `${s}s`;
  if (minutes < 10) return s % 60 === 0 ? `${minutes}m` : `${minutes}m${s % 60}s`;
  if (minutes < 60) return `${minutes}m`;
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) return hours % 24 === 0 ? `${days}d` : `${days}d${hours % 24}h`;
  if (days < 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (years < 8) return days % 365 === 0 ? `${years}y` : `${years}y${days % 365}d`;
  return `${years}y`;
}

// -- start ----------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("#login").addEventListener("submit", (event) => {
    event.preventDefault();
    const token = $("#token").value.trim();
    if (token) login(token);
  });
  $("#logout").addEventListener("click", () => logout(""));
  $("#namespace").addEventListener("change", renderObjects);
  $("#labels").addEventListener("change", () => refreshObjects().catch(failed));
  $("#log-replica").addEventListener("change", (event) => {
    if (session.target) select(session.target.key, Number(event.target.value));
  });
  const stored = sessionStorage.getItem(TOKEN_KEY);
  if (stored) login(stored);
  else showLogin("");
});
