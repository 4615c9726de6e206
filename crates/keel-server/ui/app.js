// Keel's web UI: a client of the node's HTTP API (Temporal's /api/v1/... and Keel's
// /api/v1/keel/...). No build step, no dependencies. Pages: #/workflows, #/workflow/ID/RUN,
// #/task-queues, #/cluster.
"use strict";

const app = document.getElementById("app");
let timer = null; // the current page's refresh loop
let ns = localStorage.getItem("keel.namespace") || "default";

// ---- helpers ---------------------------------------------------------------------------

function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Nodes with API keys answer 401 without one: ask once, keep it for this tab only.
async function api(path, options, asked) {
  const headers = { "content-type": "application/json" };
  const key = sessionStorage.getItem("keel.apiKey");
  if (key) headers.authorization = `Bearer ${key}`;
  const res = await fetch(path, { headers, ...options });
  if (res.status === 401 && !asked) {
    // Another request may have asked already.
    const current = sessionStorage.getItem("keel.apiKey");
    if (current && current !== key) return api(path, options, true);
    const entered = prompt("This Keel cluster requires an API key:");
    if (entered) {
      sessionStorage.setItem("keel.apiKey", entered.trim());
      return api(path, options, true);
    }
  }
  const text = await res.text();
  let body;
  try { body = text ? JSON.parse(text) : {}; } catch { body = { message: text }; }
  if (!res.ok) throw new Error(body.message || `${res.status} ${res.statusText}`);
  return body;
}

const nsPath = () => `/api/v1/namespaces/${encodeURIComponent(ns)}`;

function toast(message, error) {
  const t = document.getElementById("toast");
  t.textContent = message;
  t.className = error ? "error" : "";
  t.style.display = "block";
  clearTimeout(t._h);
  t._h = setTimeout(() => (t.style.display = "none"), 5000);
}

function b64text(s) {
  try { return new TextDecoder().decode(Uint8Array.from(atob(s), (c) => c.charCodeAt(0))); } catch { return null; }
}

// Temporal payloads ({metadata: {encoding}, data}) with a readable encoding become values.
function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    const keys = Object.keys(v);
    if (v.metadata && typeof v.metadata.encoding === "string" && keys.every((k) => k === "metadata" || k === "data")) {
      const enc = b64text(v.metadata.encoding);
      const data = v.data ? b64text(v.data) : "";
      if (enc === "json/plain" && data !== null) { try { return JSON.parse(data); } catch { /* raw */ } }
      if (enc === "binary/null") return null;
      if ((enc === "text/plain" || enc === "binary/plain") && data !== null) return data;
    }
    const out = {};
    for (const k of keys) out[k] = decode(v[k]);
    return out;
  }
  return v;
}

// WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW -> ContinuedAsNew
function camel(s, prefix) {
  return String(s || "").replace(prefix, "").toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c) => c.toUpperCase());
}
const statusName = (s) => camel(s, "WORKFLOW_EXECUTION_STATUS_");
const eventName = (t) => camel(t, "EVENT_TYPE_");
const badge = (s) => `<span class="badge ${esc(s)}">${esc(s)}</span>`;
const time = (t) => (t ? esc(new Date(t).toLocaleString()) : "");
const wfLink = (id, run, text) => `<a href="#/workflow/${encodeURIComponent(id)}/${encodeURIComponent(run || "")}">${esc(text || id)}</a>`;

function attrsOf(e) {
  const k = Object.keys(e).find((k) => k.endsWith("EventAttributes"));
  return k ? decode(e[k]) : {};
}

function every(ms, fn) {
  clearInterval(timer);
  fn();
  timer = setInterval(fn, ms);
}

// ---- workflows -------------------------------------------------------------------------

async function workflowsPage(params) {
  const q = params.get("q") || "";
  const live = params.get("live") !== "0";
  app.innerHTML = `
    <h1>Workflows</h1>
    <div class="cards" id="counts"></div>
    <form class="toolbar" id="filter">
      <input type="text" id="q" placeholder="WorkflowType = 'order' AND ExecutionStatus = 'Running'" value="${esc(q)}">
      <button type="submit">Filter</button>
      <button type="button" id="live" class="${live ? "on" : ""}">Live refresh ${live ? "on" : "off"}</button>
    </form>
    <table><thead><tr><th>Workflow id</th><th>Run id</th><th>Type</th><th>Status</th><th>Task queue</th><th>Start</th><th>Close</th></tr></thead>
    <tbody id="rows"><tr><td colspan="7" class="muted">Loading…</td></tr></tbody></table>`;
  document.getElementById("filter").onsubmit = (ev) => {
    ev.preventDefault();
    location.hash = `#/workflows?q=${encodeURIComponent(document.getElementById("q").value)}${live ? "" : "&live=0"}`;
  };
  document.getElementById("live").onclick = () => {
    location.hash = `#/workflows?q=${encodeURIComponent(q)}${live ? "&live=0" : ""}`;
  };
  const load = async () => {
    try {
      const list = await api(`${nsPath()}/workflows?pageSize=100&query=${encodeURIComponent(q)}`);
      const rows = (list.executions || []).map((x) => `<tr>
        <td>${wfLink(x.execution.workflowId, x.execution.runId)}</td>
        <td class="mono">${esc(x.execution.runId)}</td><td>${esc(x.type?.name)}</td>
        <td>${badge(statusName(x.status))}</td><td>${esc(x.taskQueue)}</td>
        <td>${time(x.startTime)}</td><td>${time(x.closeTime)}</td></tr>`);
      document.getElementById("rows").innerHTML = rows.join("") || `<tr><td colspan="7" class="muted">No workflows match.</td></tr>`;
      const grouped = await api(`${nsPath()}/workflow-count?query=${encodeURIComponent((q ? q + " " : "") + "GROUP BY ExecutionStatus")}`);
      document.getElementById("counts").innerHTML = `<div class="card"><div class="v">${esc(grouped.count || 0)}</div><div class="k">total</div></div>` +
        (grouped.groups || []).map((g) => `<div class="card"><div class="v">${esc(g.count)}</div><div class="k">${esc(statusName(decode(g.groupValues?.[0])))}</div></div>`).join("");
    } catch (e) {
      document.getElementById("rows").innerHTML = `<tr><td colspan="7">${esc(e.message)}</td></tr>`;
    }
  };
  if (live) every(2000, load); else load();
}

// ---- one workflow ----------------------------------------------------------------------

async function history(id, run) {
  let events = [];
  let token = "";
  do {
    const page = await api(`${nsPath()}/workflows/${encodeURIComponent(id)}/history?execution.runId=${encodeURIComponent(run)}&maximumPageSize=1000${token ? "&nextPageToken=" + encodeURIComponent(token) : ""}`);
    events = events.concat(page.history?.events || []);
    token = page.nextPageToken || "";
  } while (token);
  return events;
}

function timeline(events, running) {
  if (!events.length) return "";
  const t0 = Date.parse(events[0].eventTime);
  const t1 = Math.max(running ? Date.now() : Date.parse(events[events.length - 1].eventTime), t0 + 1);
  const span = t1 - t0;
  const rows = [];
  const open = new Map(); // scheduled event id -> row
  const pct = (t) => (100 * (Date.parse(t) - t0)) / span;
  for (const e of events) {
    const a = attrsOf(e);
    const type = eventName(e.eventType);
    if (type === "ActivityTaskScheduled" || type === "TimerStarted" || type === "StartChildWorkflowExecutionInitiated") {
      const label = type === "ActivityTaskScheduled" ? `activity ${a.activityType?.name} (${a.activityId})` : type === "TimerStarted" ? `timer ${a.timerId}` : `child ${a.workflowId}`;
      const row = { label, start: pct(e.eventTime), end: null, fail: false };
      open.set(e.eventId, row);
      rows.push(row);
      continue;
    }
    const ref = a.scheduledEventId || a.initiatedEventId;
    const closes = /^(ActivityTask(Completed|Failed|TimedOut|Canceled)|Timer(Fired|Canceled)|ChildWorkflowExecution(Completed|Failed|Canceled|TimedOut|Terminated))$/.test(type);
    const key = type.startsWith("Timer") ? events.find((x) => eventName(x.eventType) === "TimerStarted" && attrsOf(x).timerId === a.timerId)?.eventId : ref;
    if (closes && open.has(key)) {
      const row = open.get(key);
      row.end = pct(e.eventTime);
      row.fail = /Failed|TimedOut|Terminated/.test(type);
      continue;
    }
    if (!/^(WorkflowTask|ActivityTaskStarted)/.test(type)) rows.push({ label: type, start: pct(e.eventTime), end: null, point: true });
  }
  return `<div class="timeline">${rows.map((r) => {
    const w = r.point ? 0 : Math.max((r.end ?? 100) - r.start, 0.3);
    const cls = r.point ? "bar point" : r.end === null ? "bar open" : r.fail ? "bar fail" : "bar";
    return `<div class="row"><span class="label" title="${esc(r.label)}">${esc(r.label)}</span><span class="${cls}" style="left:${r.start}%;width:${r.point ? 3 + "px" : w + "%"}"></span></div>`;
  }).join("")}</div><p class="muted">From ${time(events[0].eventTime)} to ${time(events[events.length - 1].eventTime)}; striped: still open.</p>`;
}

async function workflowPage(id, run) {
  const view = new URLSearchParams(location.hash.split("?")[1] || "").get("view") || "table";
  app.innerHTML = `<h1>Workflow ${esc(id)}</h1><div id="wf">Loading…</div>`;
  const render = async () => {
    let d, events;
    try {
      d = await api(`${nsPath()}/workflows/${encodeURIComponent(id)}?execution.runId=${encodeURIComponent(run)}`);
      const runId = d.workflowExecutionInfo.execution.runId;
      events = await history(id, runId);
    } catch (e) {
      document.getElementById("wf").innerHTML = `<p>${esc(e.message)}</p>`;
      clearInterval(timer);
      return;
    }
    const info = decode(d.workflowExecutionInfo);
    const status = statusName(info.status);
    const runId = info.execution.runId;
    const started = attrsOf(events[0] || {});
    const closeEvent = events.length && /WorkflowExecution(Completed|Failed|TimedOut|Canceled|Terminated|ContinuedAsNew)$/.test(eventName(events[events.length - 1].eventType)) ? events[events.length - 1] : null;
    const close = closeEvent ? attrsOf(closeEvent) : {};
    const chain = [];
    if (started.continuedExecutionRunId) chain.push(`← continued from ${wfLink(id, started.continuedExecutionRunId, started.continuedExecutionRunId.slice(0, 8))}`);
    if (started.firstExecutionRunId && started.firstExecutionRunId !== runId) chain.push(`first run ${wfLink(id, started.firstExecutionRunId, started.firstExecutionRunId.slice(0, 8))}`);
    if (close.newExecutionRunId) chain.push(`→ next run ${wfLink(id, close.newExecutionRunId, close.newExecutionRunId.slice(0, 8))}`);
    const children = events.filter((e) => eventName(e.eventType) === "ChildWorkflowExecutionStarted").map((e) => attrsOf(e).workflowExecution);
    const timersOpen = events.filter((e) => eventName(e.eventType) === "TimerStarted").map(attrsOf)
      .filter((t) => !events.some((e) => /^Timer(Fired|Canceled)$/.test(eventName(e.eventType)) && attrsOf(e).timerId === t.timerId));
    const result = close.result ? JSON.stringify(close.result.payloads?.length === 1 ? close.result.payloads[0] : close.result.payloads) : close.failure ? close.failure.message : close.reason || "";
    const completedTasks = events.filter((e) => eventName(e.eventType) === "WorkflowTaskCompleted").map((e) => e.eventId);
    const running = status === "Running";
    document.getElementById("wf").innerHTML = `
      <div class="panel grid">
        <div>Status</div><div>${badge(status)}</div>
        <div>Run id</div><div class="mono">${esc(runId)}</div>
        <div>Type</div><div>${esc(info.type?.name)}</div>
        <div>Task queue</div><div><a href="#/task-queues?name=${encodeURIComponent(info.taskQueue)}">${esc(info.taskQueue)}</a></div>
        <div>Start</div><div>${time(info.startTime)}</div>
        <div>Close</div><div>${time(info.closeTime)}</div>
        <div>History</div><div>${esc(info.historyLength)} events, ${esc(info.historySizeBytes || 0)} bytes</div>
        ${info.parentExecution ? `<div>Parent</div><div>${wfLink(info.parentExecution.workflowId, info.parentExecution.runId)}</div>` : ""}
        ${chain.length ? `<div>Run chain</div><div class="chain">${chain.join(" ")}</div>` : ""}
        ${children.length ? `<div>Children</div><div>${children.map((c) => wfLink(c.workflowId, c.runId)).join(", ")}</div>` : ""}
        ${result ? `<div>${status === "Completed" ? "Result" : "Outcome"}</div><div class="mono">${esc(result)}</div>` : ""}
        ${info.memo ? `<div>Memo</div><div class="mono">${esc(JSON.stringify(info.memo.fields))}</div>` : ""}
        ${info.searchAttributes ? `<div>Search attributes</div><div class="mono">${esc(JSON.stringify(info.searchAttributes.indexedFields))}</div>` : ""}
      </div>
      <div class="toolbar" style="margin-top:12px">
        <button id="a-signal" ${running ? "" : "disabled"}>Signal…</button>
        <button id="a-cancel" ${running ? "" : "disabled"}>Cancel…</button>
        <button id="a-terminate" class="danger" ${running ? "" : "disabled"}>Terminate…</button>
        <button id="a-reset" ${completedTasks.length ? "" : "disabled"}>Reset…</button>
      </div>
      ${(d.pendingActivities || []).length ? `<h2>Pending activities</h2><table><tr><th>Activity id</th><th>Type</th><th>State</th><th class="num">Attempt</th><th>Last failure</th></tr>
        ${d.pendingActivities.map((p) => `<tr><td>${esc(p.activityId)}</td><td>${esc(p.activityType?.name)}</td><td>${esc(camel(p.state, "PENDING_ACTIVITY_STATE_"))}</td><td class="num">${esc(p.attempt)}</td><td>${esc(p.lastFailure?.message)}</td></tr>`).join("")}</table>` : ""}
      ${timersOpen.length ? `<h2>Pending timers</h2><table><tr><th>Timer id</th><th>Fires after</th></tr>${timersOpen.map((t) => `<tr><td>${esc(t.timerId)}</td><td>${esc(t.startToFireTimeout)}</td></tr>`).join("")}</table>` : ""}
      ${(d.pendingChildren || []).length ? `<h2>Pending children</h2><table><tr><th>Workflow id</th><th>Type</th></tr>${d.pendingChildren.map((c) => `<tr><td>${wfLink(c.workflowId, c.runId)}</td><td>${esc(c.workflowTypeName)}</td></tr>`).join("")}</table>` : ""}
      <h2>History <span class="muted">(${events.length} events)</span>
        <button id="v-table" class="${view === "table" ? "on" : ""}">Table</button>
        <button id="v-timeline" class="${view === "timeline" ? "on" : ""}">Timeline</button></h2>
      ${view === "timeline" ? timeline(events, running) : `<table id="history"><thead><tr><th class="num">Id</th><th>Time</th><th>Type</th><th>Details</th></tr></thead><tbody>
        ${events.map((e) => `<tr><td class="num">${esc(e.eventId)}</td><td>${time(e.eventTime)}</td><td>${esc(eventName(e.eventType))}</td><td class="details"><code>${esc(JSON.stringify(attrsOf(e)))}</code></td></tr>`).join("")}</tbody></table>`}`;
    const base = `${nsPath()}/workflows/${encodeURIComponent(id)}`;
    const act = async (what, path, body) => {
      try {
        await api(path, { method: "POST", body: JSON.stringify(body) });
        toast(`${what}: done`);
        render();
      } catch (e) { toast(`${what}: ${e.message}`, true); }
    };
    const execution = { workflowId: id, runId };
    document.getElementById("a-signal").onclick = () => {
      const name = prompt("Signal name");
      if (!name) return;
      const input = prompt("Input as JSON (empty for none)", "");
      let payloads;
      try { payloads = input ? [jsonPayload(JSON.parse(input))] : undefined; } catch (e) { return toast(`input is not JSON: ${e.message}`, true); }
      if (confirm(`Send signal "${name}" to ${id}?`)) act("signal", `${base}/signal/${encodeURIComponent(name)}`, { workflowExecution: execution, input: payloads ? { payloads } : undefined, identity: "keel-web-ui" });
    };
    document.getElementById("a-cancel").onclick = () => {
      if (confirm(`Request cancellation of ${id}?`)) act("cancel", `${base}/cancel`, { workflowExecution: execution, identity: "keel-web-ui", reason: "from the web UI" });
    };
    document.getElementById("a-terminate").onclick = () => {
      const reason = prompt(`Terminate ${id} at once. Reason:`, "from the web UI");
      if (reason !== null && confirm(`Terminate ${id}? This cannot be undone.`)) act("terminate", `${base}/terminate`, { workflowExecution: execution, reason, identity: "keel-web-ui" });
    };
    document.getElementById("a-reset").onclick = () => {
      const eventId = prompt(`Reset to which WorkflowTaskCompleted event? (${completedTasks.join(", ")})`, completedTasks[completedTasks.length - 1]);
      if (eventId && confirm(`Reset ${id} to event ${eventId}? A new run replays up to it.`)) act("reset", `${base}/reset`, { workflowExecution: execution, workflowTaskFinishEventId: eventId, reason: "from the web UI", requestId: crypto.randomUUID() });
    };
    document.getElementById("v-table").onclick = () => { location.hash = `#/workflow/${encodeURIComponent(id)}/${encodeURIComponent(run)}?view=table`; };
    document.getElementById("v-timeline").onclick = () => { location.hash = `#/workflow/${encodeURIComponent(id)}/${encodeURIComponent(run)}?view=timeline`; };
    if (!running) clearInterval(timer);
  };
  every(2000, render);
}

function jsonPayload(value) {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  return { metadata: { encoding: btoa("json/plain") }, data: btoa(String.fromCharCode(...bytes)) };
}

// ---- task queues -----------------------------------------------------------------------

async function taskQueuesPage(params) {
  const wanted = params.get("name");
  app.innerHTML = `<h1>Task queues</h1>
    <form class="toolbar" id="tq"><input type="text" id="tqname" placeholder="task queue name" value="${esc(wanted || "")}"><button>Show</button></form>
    <div id="queues">Loading…</div>
    <p class="muted">Pollers: workers that polled the node answering this page in the last 5 minutes. Backlog: tasks waiting, cluster-wide.</p>`;
  document.getElementById("tq").onsubmit = (ev) => { ev.preventDefault(); location.hash = `#/task-queues?name=${encodeURIComponent(document.getElementById("tqname").value)}`; };
  const load = async () => {
    try {
      let names = wanted ? [wanted] : [];
      if (!wanted) {
        const list = await api(`${nsPath()}/workflows?pageSize=200`);
        names = [...new Set((list.executions || []).map((x) => x.taskQueue))].sort();
      }
      const rows = [];
      for (const name of names) {
        for (const [type, label] of [["TASK_QUEUE_TYPE_WORKFLOW", "workflow"], ["TASK_QUEUE_TYPE_ACTIVITY", "activity"]]) {
          const q = await api(`${nsPath()}/task-queues/${encodeURIComponent(name)}?taskQueueType=${type}`);
          rows.push(`<tr><td>${esc(name)}</td><td>${label}</td><td class="num">${esc(q.stats?.approximateBacklogCount || 0)}</td>
            <td>${(q.pollers || []).map((p) => `${esc(p.identity)} <span class="muted">${time(p.lastAccessTime)}</span>`).join("<br>") || '<span class="muted">none</span>'}</td></tr>`);
        }
      }
      document.getElementById("queues").innerHTML = `<table><thead><tr><th>Task queue</th><th>Kind</th><th class="num">Backlog</th><th>Pollers</th></tr></thead><tbody id="tq-rows">${rows.join("") || '<tr><td colspan="4" class="muted">No task queues seen yet.</td></tr>'}</tbody></table>`;
    } catch (e) { document.getElementById("queues").innerHTML = esc(e.message); }
  };
  every(3000, load);
}

// ---- cluster ---------------------------------------------------------------------------

const leaderLog = JSON.parse(sessionStorage.getItem("keel.leaders") || "[]");
const commits = [];

function spark(points) {
  if (points.length < 2) return "";
  const w = 600, h = 80;
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const v0 = Math.min(...points.map((p) => p[1])), v1 = Math.max(...points.map((p) => p[1]), v0 + 1);
  const d = points.map((p, i) => `${i ? "L" : "M"}${((p[0] - t0) / Math.max(t1 - t0, 1)) * w},${h - ((p[1] - v0) / (v1 - v0)) * (h - 6) - 3}`).join(" ");
  const rate = ((points[points.length - 1][1] - points[0][1]) * 1000) / Math.max(t1 - t0, 1);
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><path d="${d}" fill="none" stroke="#1f5fbf" stroke-width="2"/></svg>
    <p class="muted">Commit index ${v0} → ${v1} over the last ${Math.round((t1 - t0) / 1000)} s (${rate.toFixed(1)} entries/s).</p>`;
}

async function clusterPage() {
  app.innerHTML = `<h1>Cluster</h1><div id="cluster">Loading…</div>`;
  const load = async () => {
    let s;
    try { s = await api("/api/v1/keel/cluster"); } catch (e) { document.getElementById("cluster").innerHTML = esc(e.message); return; }
    const local = s.local || {};
    const leader = Number(local.leaderId || 0);
    const term = Number(local.term || 0);
    const last = leaderLog[leaderLog.length - 1];
    if (!last || last.leader !== leader || last.term !== term) {
      leaderLog.push({ at: Date.now(), leader, term });
      sessionStorage.setItem("keel.leaders", JSON.stringify(leaderLog.slice(-100)));
    }
    const leaderStatus = (s.members || []).find((m) => Number(m.member?.nodeId) === leader)?.status;
    const leaderLast = Number(leaderStatus?.lastLogIndex || 0);
    commits.push([Date.now(), Number(leaderStatus?.commitIndex || local.commitIndex || 0)]);
    while (commits.length > 120) commits.shift();
    const rows = (s.members || []).map((m) => {
      const st = m.status || {};
      const role = m.reachable ? st.role || "?" : "unreachable";
      const lag = m.reachable && leaderLast ? leaderLast - Number(st.appliedIndex || 0) : "";
      return `<tr data-node="${esc(m.member?.nodeId)}"><td class="num">${esc(m.member?.nodeId)}</td><td>${badge(role)}</td><td>${m.member?.voter ? "voter" : "learner"}</td>
        <td class="num">${esc(st.term || "")}</td><td class="num">${esc(st.lastLogIndex || (m.reachable ? 0 : ""))}</td><td class="num">${esc(st.commitIndex || (m.reachable ? 0 : ""))}</td>
        <td class="num">${esc(st.appliedIndex || (m.reachable ? 0 : ""))}</td><td class="num">${esc(lag)}</td><td class="num">${esc(st.snapshotIndex || (m.reachable ? 0 : ""))}</td>
        <td class="num">${esc(st.purgedIndex || (m.reachable ? 0 : ""))}</td><td class="num">${st.lastLeaderContactMsAgo !== undefined ? esc(st.lastLeaderContactMsAgo) + " ms" : m.reachable ? "0 ms" : esc(m.error)}</td>
        <td class="mono">${esc(m.member?.clientAddr)}</td></tr>`;
    });
    document.getElementById("cluster").innerHTML = `
      <div class="cards">
        <div class="card"><div class="v">${esc(local.clusterId)}</div><div class="k">cluster</div></div>
        <div class="card"><div class="v" id="leader">${leader ? "node " + leader : "none"}</div><div class="k">leader</div></div>
        <div class="card"><div class="v">${term}</div><div class="k">term</div></div>
        <div class="card"><div class="v">${(s.members || []).length}</div><div class="k">members</div></div>
        <div class="card"><div class="v">${esc(local.nodeId)}</div><div class="k">answering node</div></div>
      </div>
      <table><thead><tr><th class="num">Node</th><th>Role</th><th>Vote</th><th class="num">Term</th><th class="num">Last log</th><th class="num">Commit</th><th class="num">Applied</th><th class="num">Lag</th><th class="num">Snapshot</th><th class="num">Purged</th><th class="num">Last contact</th><th>Client address</th></tr></thead>
      <tbody id="members">${rows.join("")}</tbody></table>
      <h2>Commits, live</h2>${spark(commits) || '<p class="muted">Collecting…</p>'}
      <h2>Leader changes <span class="muted">(seen by this page)</span></h2>
      <table><tr><th>When</th><th class="num">Term</th><th>Leader</th></tr>${leaderLog.slice().reverse().map((l) => `<tr><td>${esc(new Date(l.at).toLocaleString())}</td><td class="num">${l.term}</td><td>${l.leader ? "node " + l.leader : "none"}</td></tr>`).join("")}</table>`;
  };
  every(1000, load);
}

// ---- routing ---------------------------------------------------------------------------

async function namespaces() {
  const sel = document.getElementById("namespace");
  try {
    const r = await api("/api/v1/namespaces");
    const names = (r.namespaces || []).map((n) => n.namespaceInfo.name);
    if (!names.includes(ns)) ns = names[0] || "default";
    sel.innerHTML = names.map((n) => `<option ${n === ns ? "selected" : ""}>${esc(n)}</option>`).join("");
  } catch { sel.innerHTML = `<option>${esc(ns)}</option>`; }
  sel.onchange = () => { ns = sel.value; localStorage.setItem("keel.namespace", ns); route(); };
}

function route() {
  clearInterval(timer);
  const [path, query] = (location.hash.slice(1) || "/workflows").split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("header nav a").forEach((a) => a.classList.toggle("active", a.dataset.nav === (parts[0] === "workflow" ? "workflows" : parts[0])));
  if (parts[0] === "workflow" && parts[1]) return workflowPage(parts[1], parts[2] || "");
  if (parts[0] === "task-queues") return taskQueuesPage(params);
  if (parts[0] === "cluster") return clusterPage();
  return workflowsPage(params);
}

window.addEventListener("hashchange", route);
namespaces().then(route);
