"use strict";
// alkomd dispatcher console: plain JS, no build step. Live data arrives on /ws (a snapshot, then
// batches of changes at most 4 a second); actions go to /api/event with the session's CSRF token.
(() => {
  const OPEN = ["new", "offered", "answered", "assigned", "enroute", "onscene"];
  const NO_REPLY_MS = 5000;
  const S = {
    session: null, units: new Map(), calls: new Map(), alarms: [], link: { broker: false, node: "unknown" },
    wsUp: false, offsetMs: 0, selected: null, sent: [], unitsDirty: true, queueDirty: true,
    markers: new Map(), callLayers: new Map(), audio: null, jurisdictionNames: new Map(),
    early: new Map(),  // event_id -> the daemon's reply that came before the console told us the event's msg_id
  };
  const $ = (id) => document.getElementById(id);
  const now = () => Date.now() + S.offsetMs; // the server's clock

  function el(tag, props, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === "text") e.textContent = v;
      else if (k === "class") e.className = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }

  function age(iso) {
    if (!iso) return "";
    const s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
    if (s < 120) return s + " s";
    if (s < 7200) return Math.round(s / 60) + " min";
    return Math.round(s / 3600) + " h";
  }

  function countdown(iso) {
    const s = Math.round((Date.parse(iso) - now()) / 1000);
    if (s < 0) return { text: "overdue " + fmt(-s), overdue: true };
    return { text: fmt(s), overdue: false };
  }
  const fmt = (s) => Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");

  // -- the map ------------------------------------------------------------------------------------

  let map, cluster, callsLayer;
  const icons = {};
  function icon(status) {
    if (!icons[status]) icons[status] = L.divIcon({ className: "unit-icon st-" + status, iconSize: [14, 14] });
    return icons[status];
  }

  function initMap() {
    map = L.map("map", { preferCanvas: true, zoomControl: true, maxZoom: 19 }).setView([-2.5, 118], 5);
    if (S.session.tile_url) L.tileLayer(S.session.tile_url, { maxZoom: 19 }).addTo(map);
    cluster = L.markerClusterGroup({ chunkedLoading: true, disableClusteringAtZoom: 16, spiderfyOnMaxZoom: false });
    map.addLayer(cluster);
    callsLayer = L.layerGroup().addTo(map);
    fetch("/api/jurisdictions", { credentials: "same-origin" }).then((r) => r.json()).then((geo) => {
      if (!geo || !geo.features || !geo.features.length) return;
      const prop = S.session.name_property || "name";
      for (const f of geo.features) {
        const props = f.properties || {};
        if (props[S.session.id_property] !== undefined) S.jurisdictionNames.set(String(props[S.session.id_property]), String(props[prop] || ""));
      }
      S.queueDirty = true;
      const layer = L.geoJSON(geo, {
        style: { color: "#1565c0", weight: 2, fillOpacity: 0.05 },
        onEachFeature: (f, l) => l.bindTooltip(String((f.properties || {})[prop] || ""), { sticky: true }),
      }).addTo(map);
      layer.bringToBack();
      map.fitBounds(layer.getBounds());
    });
  }

  function unitTooltip(u) {
    const bits = [u.unit];
    if (u.callsign) bits.push(u.callsign);
    if (u.type) bits.push(u.type);
    bits.push(u.status);
    if (u.time) bits.push("fix " + age(u.time) + " old");
    return bits.join(" · ");
  }

  function drawUnit(u, fresh) {
    let m = S.markers.get(u.unit);
    if (u.lat === null || u.lon === null) return;
    if (!m) {
      m = L.marker([u.lat, u.lon], { icon: icon(u.status), title: u.unit });
      m.bindTooltip(() => unitTooltip(S.units.get(u.unit)));
      m._status = u.status;
      S.markers.set(u.unit, m);
      fresh.push(m); // added to the cluster in one go (chunked): thousands at a snapshot
      return;
    }
    const ll = m.getLatLng();
    if (ll.lat !== u.lat || ll.lng !== u.lon) m.setLatLng([u.lat, u.lon]);
    if (m._status !== u.status) { m._status = u.status; m.setIcon(icon(u.status)); }
  }

  function drawCall(c) {
    const old = S.callLayers.get(c.call_id);
    if (old) callsLayer.removeLayer(old);
    S.callLayers.delete(c.call_id);
    if (!OPEN.includes(c.state) || c.lat === null || c.lon === null) return;
    const g = L.layerGroup();
    const red = c.emergency || c.priority === 0;
    if (c.accuracy_m) L.circle([c.lat, c.lon], { radius: c.accuracy_m, color: red ? "#c62828" : "#e65100", weight: 1, fillOpacity: 0.1 }).addTo(g);
    for (const cand of c.candidates || []) {
      const u = S.units.get(cand.unit);
      if (u && u.lat !== null) L.polyline([[c.lat, c.lon], [u.lat, u.lon]], { color: "#6a1b9a", weight: 1, dashArray: "4 4" }).addTo(g);
    }
    L.circleMarker([c.lat, c.lon], { radius: 8, color: "#000", weight: 2, fillColor: red ? "#c62828" : "#ff9800", fillOpacity: 0.9 })
      .bindTooltip("call " + c.call_id + (c.category ? ": " + c.category : ""))
      .on("click", () => select(c.call_id))
      .addTo(g);
    g.addTo(callsLayer);
    S.callLayers.set(c.call_id, g);
  }

  // -- live data --------------------------------------------------------------------------------

  function applyUnits(list) {
    const fresh = [];
    for (const u of list) {
      S.units.set(u.unit, u);
      drawUnit(u, fresh);
    }
    if (fresh.length) cluster.addLayers(fresh);
    if (list.length) S.unitsDirty = true;
  }

  function applyCalls(list) {
    for (const c of list) {
      S.calls.set(c.call_id, c);
      drawCall(c);
    }
    if (list.length) S.queueDirty = true;
  }

  function onMessage(ev) {
    const m = JSON.parse(ev.data);
    if (m.server_time) S.offsetMs = Date.parse(m.server_time) - Date.now();
    if (m.type === "snapshot") {
      S.units.clear(); S.calls.clear();
      cluster.clearLayers(); S.markers.clear();
      callsLayer.clearLayers(); S.callLayers.clear();
    }
    if (m.units) applyUnits(m.units);
    if (m.calls) applyCalls(m.calls);
    if (m.alarms) { S.alarms = m.alarms; renderAlarms(); }
    if (m.link) { S.link = m.link; renderLink(); }
    if (m.results) for (const r of m.results) onResult(r);
    if (m.type === "snapshot") { S.wsUp = true; renderLink(); }
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onmessage = onMessage;
    ws.onclose = () => {
      S.wsUp = false;
      renderLink();
      fetch("/api/session", { credentials: "same-origin" }).then((r) => {
        if (r.status === 401) location.href = "/login";
        else setTimeout(connect, 1000);
      }, () => setTimeout(connect, 2000));
    };
  }

  // -- link state -------------------------------------------------------------------------------

  function renderLink() {
    const badge = $("link-state"), banner = $("link-banner");
    let problem = "";
    if (!S.wsUp) problem = "Connection to the console lost: reconnecting. The data shown is not live.";
    else if (!S.link.broker) problem = "Broker connection lost: the data shown is not live." + (S.link.detail ? " (" + S.link.detail + ")" : "");
    else if (S.link.node === "offline") problem = "The alkomd daemon is offline" + (S.link.node_since ? " since " + new Date(S.link.node_since).toLocaleTimeString() : "") + ": calls are not being handled here.";
    banner.textContent = problem;
    banner.hidden = !problem;
    document.body.classList.toggle("stale", !!problem);
    badge.className = problem ? "link-down" : "link-up";
    badge.textContent = problem ? (!S.wsUp ? "console down" : !S.link.broker ? "broker down" : "daemon offline") : "live";
    badge.dataset.state = problem ? "down" : "up";
  }

  // -- alarms -----------------------------------------------------------------------------------

  function beep() {
    try {
      if (!S.audio) S.audio = new AudioContext();
      if (S.audio.state === "suspended") S.audio.resume();
      const o = S.audio.createOscillator(), g = S.audio.createGain();
      o.frequency.value = 880; g.gain.value = 0.2;
      o.connect(g); g.connect(S.audio.destination);
      o.start(); o.stop(S.audio.currentTime + 0.35);
    } catch (e) { /* no audio device: the banner still blinks */ }
  }

  function renderAlarms() {
    const open = S.alarms.filter((a) => !a.acked_by);
    const list = $("alarm-list");
    list.replaceChildren(...open.map((a) => el("li", { "data-alarm": a.alarm_id },
      el("span", { text: a.text + " · " + new Date(a.time).toLocaleTimeString() }),
      a.lat !== null ? el("button", { type: "button", text: "Show", onclick: () => map.setView([a.lat, a.lon], 16) }) : null,
      a.kind === "call" ? el("button", { type: "button", text: "Open call", onclick: () => select(a.subject) }) : null,
      el("button", { type: "button", class: "ack", text: "Acknowledge", onclick: () => post("/api/ack", { alarm_id: a.alarm_id }) }),
    )));
    $("alarm").hidden = !open.length;
  }
  setInterval(() => { if (S.alarms.some((a) => !a.acked_by)) beep(); }, 1500);
  document.addEventListener("click", () => { if (S.audio && S.audio.state === "suspended") S.audio.resume(); });

  // -- the call queue ---------------------------------------------------------------------------

  function juris(id) {
    const name = S.jurisdictionNames.get(String(id));
    return name ? name + " (" + id + ")" : String(id);
  }

  function prio(c) {
    if (c.emergency || c.priority === 0) return 0;
    return typeof c.priority === "number" ? c.priority : 3;
  }

  function renderQueue() {
    const showClosed = $("show-closed").checked;
    const calls = [...S.calls.values()].filter((c) => showClosed || OPEN.includes(c.state) || c.state === "escalated");
    calls.sort((a, b) => prio(a) - prio(b) || (OPEN.includes(b.state) - OPEN.includes(a.state))
      || String(a.answer_deadline || "~").localeCompare(String(b.answer_deadline || "~"))
      || String(a.received_at).localeCompare(String(b.received_at)));
    const rows = calls.map((c) => {
      const flags = [];
      if (c.emergency) flags.push(el("span", { class: "flag emergency", text: "EMERGENCY" }));
      for (const f of c.flags || []) if (f !== "emergency") flags.push(el("span", { class: "flag", text: f.replace("_", " ") }));
      const state = c.state === "escalated" && c.escalated_to ? "escalated → " + c.escalated_to : c.state;
      const cd = el("td", { class: "countdown", "data-deadline": c.answer_deadline && ["new", "offered"].includes(c.state) ? c.answer_deadline : null });
      const p = prio(c);
      return el("tr", { "data-call": c.call_id, class: ["prio-" + p, c.state, S.selected === c.call_id ? "selected" : ""].join(" "), onclick: () => select(c.call_id) },
        el("td", { text: c.emergency || c.priority === 0 ? "0" : c.priority ?? "–" }),
        el("td", {}, el("span", { class: "callid", text: c.call_id }), ...flags, c.note ? el("div", { class: "muted", text: c.note }) : null),
        el("td", { text: (c.category_label || c.category || "?") + (c.dispatch === false ? " (no unit)" : "") + (c.unknown_category ? " (unknown)" : "") }),
        el("td", { text: c.location_status + (c.jurisdiction ? " · " + juris(c.jurisdiction) : "") }),
        el("td", { class: "state", text: state + " · " + c.tier }),
        cd);
    });
    $("queue").tBodies[0].replaceChildren(...rows);
    $("queue-empty").hidden = rows.length > 0;
    tickCountdowns();
    if (S.selected) renderDetail();
  }

  function tickCountdowns() {
    for (const td of document.querySelectorAll("#queue td.countdown[data-deadline]")) {
      const c = countdown(td.dataset.deadline);
      td.textContent = c.text;
      td.classList.toggle("overdue", c.overdue);
    }
  }

  // -- one call ---------------------------------------------------------------------------------

  function select(callId) {
    S.selected = callId;
    $("call-detail").hidden = false;
    $("action-unit").value = "";
    const c = S.calls.get(callId);
    if (c && c.lat !== null) map.setView([c.lat, c.lon], Math.max(map.getZoom(), 13));
    S.queueDirty = true;
  }

  function renderDetail() {
    const c = S.calls.get(S.selected);
    if (!c) return;
    $("detail-id").textContent = c.call_id;
    const f = [["state", c.state], ["tier", c.tier], ["category", c.category_label ? c.category_label + " (" + c.category + ")" : c.category], ["priority", c.priority], ["caller's note", c.note],
      ["location", c.location_status], ["jurisdiction", c.jurisdiction ? juris(c.jurisdiction) : null], ["uncertainty", c.accuracy_m ? c.accuracy_m + " m" : null],
      ["assigned unit", c.assigned_unit], ["answered by", c.answered_by], ["answer by", c.answer_deadline ? new Date(c.answer_deadline).toLocaleTimeString() : null],
      ["escalated to", c.escalated_to], ["escalated from", c.escalated_from], ["flags", (c.flags || []).join(", ")], ["received", c.received_at]];
    $("detail-fields").replaceChildren(...f.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
    $("detail-candidates").replaceChildren(...(c.candidates || []).map((cand) => {
      const u = S.units.get(cand.unit);
      return el("li", {}, el("span", { text: cand.unit + (u && u.callsign ? " (" + u.callsign + ")" : "") + " · " + Math.round(cand.distance_m) + " m"
        + (cand.eta_s !== null ? " · ETA " + fmt(Math.round(cand.eta_s)) : "") + " " }),
        el("button", { type: "button", class: "assign-candidate", "data-unit": cand.unit, text: "Assign", onclick: () => act("assign", cand.unit) }));
    }));
    if (!$("action-unit").value && c.assigned_unit) $("action-unit").value = c.assigned_unit;
    // the call's whole timeline, merged by the console: the daemon's steps (its call state's history) with what this
    // console saw and sent, in time order
    $("timeline").replaceChildren(...(c.timeline || []).map((t) => el("li", { class: t.what, "data-action": t.action || null, "data-seq": t.seq ?? null },
      el("span", { text: new Date(t.time).toLocaleTimeString() + " " + t.text }),
      t.detail ? el("span", { class: "muted", text: " · " + t.detail }) : null)));
    renderReplies();
  }

  // -- actions ----------------------------------------------------------------------------------

  async function post(path, body) {
    const r = await fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": S.session.csrf }, body: JSON.stringify(body),
    });
    if (r.status === 401) { location.href = "/login"; throw new Error("logged out"); }
    if (!r.ok) throw new Error(await r.text());
    return r.json();
  }

  async function act(action, unitOverride) {
    const callId = S.selected;
    if (!callId) return;
    const unit = unitOverride || $("action-unit").value.trim();
    const note = $("action-note").value.trim();
    const body = { call_id: callId, action };
    if (unit && action !== "answer" && action !== "close") body.unit = unit;
    if (note) body.note = note;
    const entry = { call_id: callId, action, unit: body.unit || "", sent: Date.now(), msg_id: null, result: null, error: null };
    S.sent.unshift(entry);
    S.sent.length = Math.min(S.sent.length, 50);
    try {
      entry.msg_id = (await post("/api/event", body)).msg_id;
      const early = S.early.get(entry.msg_id);  // the daemon answered before the console's own answer came back
      if (early) { entry.result = early; S.early.delete(entry.msg_id); }
      $("action-note").value = "";
    } catch (e) {
      entry.error = String(e.message || e);
    }
    renderReplies();
  }

  function onResult(r) {
    const entry = S.sent.find((e) => e.msg_id === r.event_id);
    if (entry) { entry.result = r; renderReplies(); return; }
    S.early.set(r.event_id, r);  // its event's msg_id is not known here yet (the POST's answer is on its way)
    if (S.early.size > 100) S.early.delete(S.early.keys().next().value);
  }

  function renderReplies() {
    const mine = S.sent.filter((e) => e.call_id === S.selected).slice(0, 10);
    $("replies").replaceChildren(...mine.map((e) => {
      let cls, text;
      if (e.error) { cls = "refused"; text = "not sent: " + e.error; }
      else if (e.result) { cls = e.result.result; text = e.result.result + (e.result.reason ? ": " + e.result.reason : "") + (e.result.state ? " (call " + e.result.state + ")" : ""); }
      else if (Date.now() - e.sent > NO_REPLY_MS) { cls = "noreply"; text = "no reply yet"; }
      else { cls = "waiting"; text = "sent, waiting for the daemon"; }
      return el("li", { class: "reply " + cls, "data-msg-id": e.msg_id || "" }, el("span", { text: new Date(e.sent).toLocaleTimeString() + " " + e.action + (e.unit ? " " + e.unit : "") + ": " + text }));
    }));
  }

  // -- units list -------------------------------------------------------------------------------

  function renderUnits() {
    const status = $("unit-status").value, q = $("unit-search").value.trim().toLowerCase();
    const all = [...S.units.values()];
    const match = all.filter((u) => (!status || u.status === status) && (!q || u.unit.toLowerCase().includes(q) || (u.callsign || "").toLowerCase().includes(q)));
    match.sort((a, b) => a.unit.localeCompare(b.unit));
    const shown = match.slice(0, 200);
    $("units").tBodies[0].replaceChildren(...shown.map((u) => el("tr", { "data-unit": u.unit, "data-status": u.status, "data-lat": u.lat, "data-lon": u.lon,
      onclick: () => { if (u.lat !== null) map.setView([u.lat, u.lon], 17); } },
      el("td", { text: u.unit }), el("td", { text: u.callsign || "" }), el("td", { text: u.type || "" }),
      el("td", {}, el("span", { class: "st st-" + u.status }), el("span", { text: u.status })), el("td", { text: age(u.time) }))));
    $("unit-count").textContent = match.length + " of " + all.length;
    $("units-more").textContent = match.length > shown.length ? (match.length - shown.length) + " more: narrow the filter" : "";
    if (all.length !== S.idsCount || now() - (S.idsAt || 0) > 5000) {  // the assign box's suggestions: seldom
      S.idsCount = all.length; S.idsAt = now();
      $("unit-ids").replaceChildren(...all.slice(0, 2000).map((u) => el("option", { value: u.unit, text: u.callsign || "" })));
    }
  }

  // -- start ------------------------------------------------------------------------------------

  async function start() {
    const r = await fetch("/api/session", { credentials: "same-origin" });
    if (r.status === 401) { location.href = "/login"; return; }
    S.session = await r.json();
    $("user").textContent = S.session.user;
    $("node-name").textContent = (S.session.name || S.session.node) + " · " + S.session.tier;
    document.title = (S.session.name || S.session.node) + ": alkomd console";
    $("logout").addEventListener("click", async () => { try { await post("/logout", {}); } finally { location.href = "/login"; } });
    $("detail-close").addEventListener("click", () => { S.selected = null; $("call-detail").hidden = true; S.queueDirty = true; });
    $("show-closed").addEventListener("change", () => { S.queueDirty = true; });
    $("unit-status").addEventListener("change", () => { S.unitsDirty = true; });
    $("unit-search").addEventListener("input", () => { S.unitsDirty = true; });
    for (const b of document.querySelectorAll("#actions button[data-action]")) b.addEventListener("click", () => act(b.dataset.action));
    initMap();
    connect();
    setInterval(() => { if (S.queueDirty) { S.queueDirty = false; renderQueue(); } }, 250);
    setInterval(() => { tickCountdowns(); if (S.selected) renderReplies(); }, 1000);
    setInterval(() => { if (S.unitsDirty) { S.unitsDirty = false; renderUnits(); } }, 250);  // as the server's pushes
  }
  document.addEventListener("DOMContentLoaded", start);
})();
