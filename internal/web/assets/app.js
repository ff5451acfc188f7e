// haven dashboard: plain JavaScript, no build step. The server sends the
// cluster status over server-sent events whenever it changes; every action
// is a JSON POST with the session's CSRF token and the re-typed password.
'use strict';

const $ = (id) => document.getElementById(id);
const state = {
  session: null,   // {user, role, csrf, node, cluster}
  status: null,    // last status from the server
  offset: 0,       // server clock minus browser clock, ms
  es: null,        // EventSource
  detail: null,    // node shown in the detail panel
  roles: {},       // node -> role, to announce changes
};

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'href' || k === 'title' || k === 'type' || k === 'download') e.setAttribute(k, v);
    else e[k] = v;
  }
  for (const c of children) e.append(c);
  return e;
}

async function request(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  if (method !== 'GET' && state.session) opts.headers['X-CSRF-Token'] = state.session.csrf;
  const r = await fetch(path, opts);
  const type = r.headers.get('Content-Type') || '';
  const data = type.startsWith('application/json') ? await r.json().catch(() => null) : await r.text();
  if (!r.ok) {
    const msg = (data && data.error) || (typeof data === 'string' && data) || ('HTTP ' + r.status);
    const err = new Error(msg);
    err.status = r.status;
    throw err;
  }
  return data;
}

// ---- formatting

function fmtDuration(ms) {
  if (ms == null || isNaN(ms)) return '-';
  if (ms < 0) ms = 0;
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + Math.floor(s % 60) + ' s';
  const h = Math.floor(m / 60);
  if (h < 48) return h + ' h ' + (m % 60) + ' min';
  return Math.floor(h / 24) + ' d ' + (h % 24) + ' h';
}

function serverNow() { return Date.now() + state.offset; }

function ageOf(t) {
  if (!t) return null;
  const v = Date.parse(t);
  return isNaN(v) ? null : serverNow() - v;
}

function fmtTime(t) {
  const d = new Date(t);
  if (isNaN(d)) return '';
  const p = (n, w) => String(n).padStart(w || 2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function show(msg, bad) {
  const t = $('toast');
  t.textContent = msg;
  t.classList.toggle('bad', !!bad);
  t.hidden = false;
  clearTimeout(show.timer);
  show.timer = setTimeout(() => { t.hidden = true; }, bad ? 12000 : 6000);
}

// ---- login and session

async function start() {
  try {
    state.session = await request('GET', '/ui/api/session');
    enterApp();
  } catch (e) {
    showLogin();
  }
}

function showLogin(msg) {
  stopStream();
  state.session = null;
  // Nothing of the last session stays in the page.
  state.status = null;
  state.roles = {};
  state.prevRows = null;
  state.detail = null;
  $('nodes-body').replaceChildren();
  $('active-banner').replaceChildren();
  delete $('active-banner').dataset.key;
  $('timeline').replaceChildren();
  $('detail').hidden = true;
  $('detail-log').textContent = '';
  $('config-text').textContent = '';
  $('live').textContent = '';
  document.body.classList.remove('viewer', 'operator');
  $('app-view').hidden = true;
  $('whoami').hidden = true;
  $('login-view').hidden = false;
  $('login-error').textContent = msg || '';
  $('login-user').focus();
}

async function login(ev) {
  ev.preventDefault();
  const user = $('login-user').value.trim();
  const password = $('login-password').value;
  if (!user || !password) {
    $('login-error').textContent = 'Enter your user name and password.';
    return;
  }
  $('login-submit').disabled = true;
  try {
    state.session = await request('POST', '/ui/api/login', { user, password });
    $('login-password').value = '';
    $('login-error').textContent = '';
    enterApp();
  } catch (e) {
    $('login-error').textContent = e.status === 429 ? e.message : (e.status === 401 ? 'Wrong user name or password.' : e.message);
    $('login-password').value = '';
    $('login-password').focus();
  } finally {
    $('login-submit').disabled = false;
  }
}

async function logout() {
  try { await request('POST', '/ui/api/logout', {}); } catch (e) { /* gone already */ }
  showLogin('You are logged out.');
}

function enterApp() {
  const s = state.session;
  $('login-view').hidden = true;
  $('app-view').hidden = false;
  $('whoami').hidden = false;
  $('user-name').textContent = s.user;
  $('user-role').textContent = s.role;
  $('self-node').textContent = s.node;
  $('cluster-name').textContent = s.cluster;
  document.title = 'haven ' + s.cluster + ' (' + s.node + ')';
  document.body.classList.toggle('viewer', s.role !== 'operator');
  document.body.classList.toggle('operator', s.role === 'operator');
  startStream();
  loadTimeline();
}

// ---- live status

function startStream() {
  stopStream();
  const es = new EventSource('/ui/events/stream');
  state.es = es;
  es.addEventListener('status', (e) => {
    $('conn').textContent = 'live';
    onStatus(JSON.parse(e.data));
  });
  es.addEventListener('logout', () => showLogin('Your session ended; log in again.'));
  es.onerror = () => {
    $('conn').textContent = 'reconnecting…';
    if (es.readyState === EventSource.CLOSED) {
      // The server refused the stream: the session is gone, or the agent restarted.
      setTimeout(async () => {
        if (state.es !== es) return;
        try {
          await request('GET', '/ui/api/session');
          startStream();
        } catch (err) {
          if (err.status === 401) showLogin('Your session ended; log in again.');
          else setTimeout(() => state.es === es && startStream(), 1000);
        }
      }, 500);
    }
  };
}

function stopStream() {
  if (state.es) state.es.close();
  state.es = null;
}

function roleOf(n) { return n.role || 'down'; }

function onStatus(st) {
  state.offset = Date.parse(st.time) - Date.now();
  const changes = [];
  for (const n of st.nodes) {
    const before = state.roles[n.name];
    if (before !== undefined && before !== roleOf(n)) {
      changes.push(n.name + ' is now ' + roleOf(n) + (n.role === 'active' ? ' (epoch ' + n.epoch + ')' : ''));
    }
  }
  const first = state.status === null;
  state.status = st;
  state.roles = Object.fromEntries(st.nodes.map((n) => [n.name, roleOf(n)]));
  renderNodes(st, changes.length ? changes : null);
  if (changes.length) {
    $('live').textContent = changes.join('; ') + '.';
    loadTimelineSoon();
  } else if (first) {
    const a = st.nodes.find((n) => n.role === 'active');
    $('live').textContent = a ? a.name + ' is active (epoch ' + a.epoch + ').' :
      st.leader_unknown ? 'Active node unknown (' + st.leader_unknown + ').' : 'No node is active.';
  }
  if (state.detail) renderDetail();
}

// renderActive says which node is active, with a link to its dashboard.
// It does not redirect: a standby's dashboard keeps working (and acting)
// when the active is down. Redrawn only when it changes, so that keyboard
// focus on the link survives the live updates.
// renderWarnings shows the reporting agent's warnings: a cluster without
// TLS, a certificate close to its expiry, an etcd member's database near
// its quota.
function renderWarnings(st) {
  const w = $('security-warning');
  const list = st.warnings || [];
  const text = list.join(' ');
  if (w.textContent === text && w.hidden === !list.length) return;
  w.hidden = !list.length;
  w.textContent = text;
}

function renderActive(st) {
  const b = $('active-banner');
  const self = state.session ? state.session.node : '';
  const aliases = st.aliases || {};
  const actives = st.nodes.filter((n) => roleOf(n) === 'active');
  const promoting = st.nodes.filter((n) => roleOf(n) === 'promoting');
  const key = JSON.stringify([self, actives.map((n) => [n.name, n.epoch, n.api, aliases[n.name]]), promoting.map((n) => n.name), st.leader_unknown || '']);
  if (b.dataset.key === key) return;
  b.dataset.key = key;
  const parts = [];
  if (st.leader_unknown) {
    // The agent has no current view of the store: "no node is active"
    // would be a guess.
    b.className = 'active-banner none';
    parts.push(el('strong', { text: 'Active node unknown' }));
    parts.push(' (' + st.leader_unknown + '). This dashboard keeps working from ' + self + '.');
    b.replaceChildren(...parts);
    return;
  }
  if (!actives.length) {
    b.className = 'active-banner none';
    parts.push(el('strong', { text: promoting.length ? promoting.map((n) => n.name).join(', ') + ' is taking over (promoting).' : 'No node is active.' }));
    parts.push(' This dashboard keeps working from ' + self + '.');
    b.replaceChildren(...parts);
    return;
  }
  b.className = 'active-banner';
  parts.push(actives.length > 1 ? 'Active nodes: ' : 'Active: ');
  actives.forEach((n, i) => {
    if (i) parts.push('; ');
    parts.push(el('strong', { text: n.name + (aliases[n.name] ? ' (' + aliases[n.name] + ')' : '') }));
    if (n.epoch) parts.push(' at epoch ' + n.epoch);
    if (n.name === self) {
      parts.push(' — this dashboard runs on it');
    } else if (n.api) {
      parts.push(' — ', el('a', { href: n.api + '/ui/', class: 'active-link', 'data-node': n.name, text: 'open ' + n.name + '\u2019s dashboard' }));
    }
  });
  parts.push(el('span', { class: 'muted small', text: 'Actions work from any node\u2019s dashboard; each node has its own logins.' }));
  b.replaceChildren(...parts);
}

// renderRedundancy shows the cluster's redundancy as the agent judges it
// (`haven status` exits 1 on degraded): hidden while it is intact.
function renderRedundancy(st) {
  const p = $('redundancy');
  const r = st.redundancy;
  if (!r || r.state === 'ok' || st.leader_unknown) { // unknown: the banner says so
    p.hidden = true;
    p.replaceChildren();
    return;
  }
  p.hidden = false;
  p.className = 'redundancy ' + r.state;
  const head = r.state === 'degraded' ? 'Redundancy lost: ' : 'No active node: ';
  const text = r.standbys + ' of ' + r.want_standbys + ' standbys ready' +
    (r.members ? '; store members ' + r.healthy_members + ' of ' + r.members + ' answer (quorum ' + r.quorum + ')' : '') + '. ';
  p.replaceChildren(el('strong', { text: head }), text, (r.reasons || []).join('; '));
}

function renderNodes(st, changed) {
  const body = $('nodes-body');
  const focusKey = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.key : null;
  const op = state.session && state.session.role === 'operator';
  $('mode').textContent = '(' + st.mode + ', as seen by ' + st.reporter + ')';
  renderWarnings(st);
  renderActive(st);
  renderRedundancy(st);
  const rows = [];
  for (const n of st.nodes) {
    const role = roleOf(n);
    const alias = (st.aliases || {})[n.name] || '';
    const health = n.witness ? el('span', { text: 'witness (etcd vote only)' }) : role === 'down'
      ? el('span', { class: 'health' }, el('span', { class: 'dot bad', 'aria-hidden': 'true' }), el('span', { text: 'unknown' }, el('span', { class: 'why', text: n.why || '' })))
      : el('span', { class: 'health' },
        el('span', { class: 'dot ' + (n.healthy ? 'ok' : 'bad'), 'aria-hidden': 'true' }),
        el('span', { text: n.healthy ? 'healthy' : 'unhealthy' }, el('span', { class: 'why', text: n.health || '' })));
    const acts = el('div', { class: 'acts' });
    acts.append(el('button', { type: 'button', text: 'Details', 'data-key': n.name + ':details', 'aria-label': 'Details of ' + n.name, onclick: () => openDetail(n.name) }));
    if (!n.witness && role !== 'down') {
      if (op) {
        const standby = !['active', 'promoting', 'demoting'].includes(role);
        if (role === 'standby' && st.leader && st.leader.node) {
          acts.append(button(n.name, 'switchover', 'Switch over here', () => doSwitchover(n.name)));
        }
        if (role === 'backup' || (role !== 'active' && !(st.leader && st.leader.node) && standby)) {
          acts.append(button(n.name, 'promote', 'Promote', () => doPromote(n.name)));
        }
        if (role === 'maintenance') acts.append(button(n.name, 'maint-off', 'Maintenance off', () => doMaintenance(n.name, false)));
        else acts.append(button(n.name, 'maint-on', 'Maintenance on', () => doMaintenance(n.name, true)));
        if (standby) {
          for (const a of ['start', 'stop', 'restart']) {
            acts.append(button(n.name, 'svc-' + a, a[0].toUpperCase() + a.slice(1), () => doService(n.name, a), a === 'stop' ? 'danger' : ''));
          }
        }
      }
      if (op) {
        acts.append(el('a', { class: 'button', href: '/ui/api/logs/download?node=' + encodeURIComponent(n.name), download: '', text: 'Download log', 'data-key': n.name + ':log', 'aria-label': 'Download the log of ' + n.name }));
      }
    }
    const tr = el('tr', { 'data-node': n.name, 'data-role': role, class: role === 'active' ? 'is-active' : '' },
      el('th', { scope: 'row', class: 'name', text: n.name }),
      el('td', { class: 'alias', text: alias || '-' }),
      el('td', { class: 'site', text: n.site || '-' }),
      el('td', { class: 'role' }, el('span', { class: 'badge role-' + role, text: role })),
      el('td', { class: 'health-cell' }, health),
      el('td', { class: 'epoch', text: n.epoch ? String(n.epoch) : '-' }),
      el('td', { class: 'hb', 'data-t': n.heartbeat || '' }),
      el('td', { class: 'up', 'data-t': n.started_at || '' }),
      el('td', { class: 'pid', text: n.service_pid ? String(n.service_pid) : '-' }),
      el('td', { class: 'actions' }, acts));
    if (changed && state.prevRows && state.prevRows[n.name] !== role) tr.classList.add('changed');
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  state.prevRows = Object.fromEntries(st.nodes.map((n) => [n.name, roleOf(n)]));
  tickAges();
  if (focusKey) {
    const again = body.querySelector('[data-key="' + CSS.escape(focusKey) + '"]');
    if (again) again.focus();
  }
  // The switchover target list: every standby.
  const sel = $('switchover-target');
  const keep = sel.value;
  const opts = [el('option', { value: '', text: 'best eligible standby' })];
  for (const n of st.nodes) {
    if (!n.witness && roleOf(n) === 'standby') opts.push(el('option', { value: n.name, text: n.name + (n.eligible ? '' : ' (not eligible: ' + (n.why || '') + ')') }));
  }
  sel.replaceChildren(...opts);
  if ([...sel.options].some((o) => o.value === keep)) sel.value = keep;
}

function button(node, key, label, fn, cls) {
  return el('button', { type: 'button', class: cls || '', text: label, 'data-key': node + ':' + key, 'aria-label': label + ' (' + node + ')', onclick: fn });
}

function tickAges() {
  for (const td of document.querySelectorAll('#nodes-body td.hb, #nodes-body td.up')) {
    const age = ageOf(td.dataset.t);
    td.textContent = age === null ? '-' : fmtDuration(age) + (td.classList.contains('hb') ? ' ago' : '');
  }
}

// ---- timeline

async function loadTimeline() {
  try {
    const evs = await request('GET', '/ui/api/events?limit=200');
    renderTimeline(evs);
  } catch (e) {
    if (e.status === 401) return showLogin('Your session ended; log in again.');
    $('timeline').replaceChildren(el('li', { text: 'Cannot read the history: ' + e.message }));
  }
}

function loadTimelineSoon() {
  clearTimeout(loadTimelineSoon.timer);
  loadTimelineSoon.timer = setTimeout(loadTimeline, 400);
}

function describeEvent(e) {
  const dur = e.duration ? e.duration / 1e6 : 0;
  switch (e.kind) {
    case 'role':
      return `${e.node}: ${e.from || '?'} → ${e.to}` + (e.epoch ? `, epoch ${e.epoch}` : '') + (dur ? ` (after ${fmtDuration(dur)} as ${e.from})` : '');
    case 'switchover':
    case 'promote':
      return `${e.from || 'none'} → ${e.to}` + (e.epoch ? `, epoch ${e.epoch}` : '') + (dur ? ` in ${fmtDuration(dur)}` : '');
    case 'health':
      return `${e.node}: ${e.to}`;
    case 'maintenance':
      return `${e.node}: maintenance ${e.to}`;
    case 'service':
      return `${e.node}: service ${e.to}`;
    case 'audit':
      return `${e.node}: ${e.to}`;
    case 'node':
      return `${e.node}: ${e.to}` + (dur ? ` after ${fmtDuration(dur)} lost` : '');
    case 'failover':
      return `${e.from} lost → ${e.to} active` + (e.epoch ? `, epoch ${e.epoch}` : '') + (dur ? ` in ${fmtDuration(dur)} from the loss` : '');
    default:
      return `${e.node}: ${e.from ? e.from + ' → ' : ''}${e.to || ''}`;
  }
}

function renderTimeline(evs) {
  const items = (evs || []).slice().reverse().map((e) => el('li', { 'data-kind': e.kind },
    el('time', { dateTime: e.time, text: fmtTime(e.time) }),
    el('span', { class: 'kind', text: e.kind }),
    el('span', { text: describeEvent(e) }),
    e.reason ? el('span', { class: 'muted', text: ' — ' + e.reason }) : '',
    e.who ? el('span', { class: 'muted', text: ' (by ' + e.who + ')' }) : ''));
  $('timeline').replaceChildren(...(items.length ? items : [el('li', { text: 'No events yet.' })]));
}

// ---- node detail

function openDetail(name) {
  state.detail = name;
  $('detail').hidden = false;
  renderDetail();
  if (state.session && state.session.role === 'operator') loadLog();
  loadConfig();
  $('alias-input').value = ((state.status && state.status.aliases) || {})[name] || '';
  $('detail-title').focus();
}

// folderText: per folder and standby, how far behind it is (on the
// active), or what a promotion of this node lost.
function folderText(fs) {
  if (!fs || !fs.length) return '-';
  return fs.map((f) => {
    if (!f.peer && f.error) return `${f.folder}: WARNING ${f.error}`;
    if (!f.peer) return `${f.folder}: ${f.lost} files of the old active lost at promotion`;
    const state = f.behind ? 'BEHIND max_lag' : (f.files ? 'shipping' : 'in sync');
    let t = `${f.folder} \u2192 ${f.peer}: ${state}, lacks ${f.files} files (${f.bytes} bytes)`;
    if (f.files) t += `, oldest ${f.oldest_path} ${(f.oldest_ms / 1000).toFixed(1)} s`;
    if (f.error) t += `; ${f.error}`;
    return t;
  }).join('; ');
}

// sessionsText: a node's copy of the session store (keys, bytes, listen).
function sessionsText(s) {
  if (!s) return '-';
  return `${s.keys} keys, ${s.bytes} bytes on ${s.listen}${s.writable ? ' (takes writes)' : ' (read-only copy)'}`;
}

// sessionsLayoutText: how the coordination store holds the sessions
// (docs/sessions.md): one key per session, and why not packed yet; or the
// packed layout's log and snapshot; and a warning when a node cannot read
// a packed store.
function sessionsLayoutText(s) {
  if (!s) return '-';
  let t;
  if (s.layout === 'packed' && s.log) {
    const l = s.log;
    t = `packed: log ${l.log_entries} entries (${l.log_bytes} bytes), `;
    t += l.snapshot_at ? `snapshot ${l.snapshot_keys} keys (${l.snapshot_bytes} bytes) ${fmtDuration(serverNow() - l.snapshot_at)} old` : 'no snapshot yet';
    t += `, ${l.compactions} compactions`;
  } else {
    t = 'one key per session';
    if (s.waiting) t += `; ${s.waiting}`;
  }
  if (s.warning) t += `; WARNING: ${s.warning}`;
  return t;
}

function renderDetail() {
  const name = state.detail;
  const n = state.status && state.status.nodes.find((x) => x.name === name);
  $('detail-name').textContent = name;
  $('log-download').href = '/ui/api/logs/download?node=' + encodeURIComponent(name);
  $('alias-note').textContent = state.status && state.status.aliases_shared
    ? 'Aliases are kept in the coordination store: every node\u2019s dashboard shows them.'
    : 'This store keeps no node properties, so aliases are kept by this node\u2019s dashboard only; other nodes\u2019 dashboards do not show them.';
  if (!n) return;
  const alias = (state.status.aliases || {})[name];
  const props = [
    ['Alias', alias || '-'], ['Site', n.site || '-'], ['Role', roleOf(n)], ['Healthy', n.witness ? 'n/a' : (n.healthy ? 'yes' : 'no')],
    ['Health', n.health || '-'], ['Eligible', n.eligible ? 'yes' : 'no'], ['Why', n.why || '-'],
    ['Held back by', n.held_by ? `switchover ${n.held_by} only: available once it is over` : '-'],
    ['Epoch', n.epoch || '-'], ['In this role since', n.since ? fmtTime(n.since) : '-'], ['Reason', n.reason || '-'],
    ['Agent PID', n.agent_pid || '-'], ['Service PID', n.service_pid || '-'], ['Containment', n.containment || '-'], ['API', n.api || '-'],
    ['Started', n.started_at ? fmtTime(n.started_at) : '-'], ['Last heartbeat', n.heartbeat ? fmtTime(n.heartbeat) : '-'],
    ['Version', n.version || '-'], ['Promotions', String(n.failovers || 0)],
    ['Virtual IP', n.vip || '-'],
    ['Sessions', sessionsText(n.sessions)],
    ['Sessions layout', sessionsLayoutText(n.sessions)],
    ['Replicated folders', folderText(n.folders)],
    ['Lock delay', lockDelayText(n.lock_delay)],
    ['VIP lock delay', lockDelayText(n.vip_lock_delay, 'adding the virtual IP')],
  ];
  $('detail-props').replaceChildren(...props.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
}

// lockDelayText: a promotion waiting for the old active's lease to run out
// (lock_delay, docs/stores.md), or the latest that waited.
// what: what waited ('acting'; the VIP's election: 'adding the virtual IP').
function lockDelayText(d, what = 'acting') {
  if (!d) return '-';
  if (d.until) return `waiting until ${fmtTime(d.until)} before ${what} at epoch ${d.epoch}: ${d.reason}`;
  return `waited ${(d.waited / 1e9).toFixed(3)} s before ${what} at epoch ${d.epoch}: ${d.reason}`;
}

async function loadLog() {
  const name = state.detail;
  $('detail-log').textContent = 'Loading…';
  try {
    const text = await request('GET', '/ui/api/logs?lines=200&node=' + encodeURIComponent(name));
    if (state.detail !== name) return;
    $('detail-log').textContent = text || '(empty)';
    $('detail-log').scrollTop = $('detail-log').scrollHeight;
  } catch (e) {
    $('detail-log').textContent = 'Cannot read the log: ' + e.message;
  }
}

async function loadConfig() {
  try {
    $('config-text').textContent = await request('GET', '/ui/api/config');
  } catch (e) {
    $('config-text').textContent = 'Cannot read the configuration: ' + e.message;
  }
}

// ---- actions, each confirmed with the password

function confirmAction(text, run) {
  const d = $('confirm');
  $('confirm-text').textContent = text;
  $('confirm-password').value = '';
  $('confirm-error').textContent = '';
  $('confirm-ok').disabled = false;
  $('confirm-ok').textContent = 'Confirm';
  confirmAction.run = run;
  confirmAction.opener = document.activeElement;
  d.showModal();
  $('confirm-password').focus();
}

function closeConfirm() {
  $('confirm').close();
  const o = confirmAction.opener;
  if (o && document.contains(o)) o.focus();
}

async function submitConfirm(ev) {
  ev.preventDefault();
  const password = $('confirm-password').value;
  if (!password) {
    $('confirm-error').textContent = 'Enter your password to confirm.';
    return;
  }
  $('confirm-ok').disabled = true;
  $('confirm-ok').textContent = 'Working…';
  try {
    const msg = await confirmAction.run(password);
    closeConfirm();
    show(msg);
    loadTimelineSoon();
  } catch (e) {
    if (e.status === 401) {
      closeConfirm();
      return showLogin('Your session ended; log in again.');
    }
    if (e.status === 403 || e.status === 429) {
      $('confirm-error').textContent = e.message;
      $('confirm-password').value = '';
      $('confirm-password').focus();
      $('confirm-ok').disabled = false;
      $('confirm-ok').textContent = 'Confirm';
      return;
    }
    closeConfirm();
    show('Failed: ' + e.message, true);
  }
}

function doSwitchover(to) {
  confirmAction(to ? `Switch the active role over to ${to}?` : 'Switch the active role over to the best eligible standby?', async (password) => {
    const r = await request('POST', '/ui/api/switchover', { to: to || '', password });
    return `Switched over from ${r.from} to ${r.to} (epoch ${r.epoch}) in ${r.took_ms.toFixed(1)} ms.`;
  });
}

function doPromote(node) {
  confirmAction(`Promote ${node} to active?`, async (password) => {
    const r = await request('POST', '/ui/api/promote', { node, password });
    return `${r.to} is active at epoch ${r.epoch}.`;
  });
}

function doMaintenance(node, on) {
  const text = on ? `Put ${node} in maintenance? It leaves elections${state.roles[node] === 'active' ? ', after a switchover to another node' : ''}.` : `Take ${node} out of maintenance?`;
  confirmAction(text, async (password) => {
    const r = await request('POST', '/ui/api/maintenance', { node, on, password });
    return (r.switchover ? `Switched over to ${r.switchover.to} first; ` : '') + `maintenance ${on ? 'on' : 'off'} for ${r.node}.`;
  });
}

function doService(node, action) {
  const who = node ? node : 'every standby';
  confirmAction(`${action[0].toUpperCase() + action.slice(1)} the service on ${who}?`, async (password) => {
    const body = node ? { node, action, password } : { all: true, action, password };
    const r = await request('POST', '/ui/api/service', body);
    return r.results.map((x) => x.ok ? `${x.node}: ${action} done${x.pid ? ' (pid ' + x.pid + ')' : ''}` : `${x.node}: ${x.error}`).join('; ');
  });
}

function saveAlias(ev) {
  ev.preventDefault();
  const node = state.detail;
  const alias = $('alias-input').value.trim();
  const where = state.status && state.status.aliases_shared ? 'on every node\u2019s dashboard' : 'on this dashboard';
  confirmAction(alias ? `Call ${node} "${alias}" ${where}?` : `Remove the alias of ${node} ${where}?`, async (password) => {
    await request('POST', '/ui/api/alias', { node, alias, password });
    return alias ? `${node} is now called "${alias}".` : `Alias of ${node} removed.`;
  });
}

// ---- wiring

document.addEventListener('DOMContentLoaded', () => {
  $('login-form').addEventListener('submit', login);
  $('logout').addEventListener('click', logout);
  $('switchover-form').addEventListener('submit', (ev) => { ev.preventDefault(); doSwitchover($('switchover-target').value); });
  for (const b of document.querySelectorAll('[data-all]')) b.addEventListener('click', () => doService('', b.dataset.all));
  $('confirm-form').addEventListener('submit', submitConfirm);
  $('confirm-cancel').addEventListener('click', closeConfirm);
  $('detail-close').addEventListener('click', () => { state.detail = null; $('detail').hidden = true; });
  $('log-refresh').addEventListener('click', loadLog);
  $('timeline-refresh').addEventListener('click', loadTimeline);
  $('alias-form').addEventListener('submit', saveAlias);
  setInterval(tickAges, 1000);
  setInterval(() => { if (state.session) loadTimeline(); }, 10000);
  start();
});
