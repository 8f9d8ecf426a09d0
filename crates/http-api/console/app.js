// Petrel's console: reads the admin API every second and draws the pages.
// No framework and nothing fetched from elsewhere; every request is a JSON
// call to this same listener, so the API's own trust rules apply.
'use strict';

const KINDS = ['received', 'delivered', 'deferred', 'bounced'];
const COLORS = { received: '#3b7dd8', delivered: '#2e9d57', deferred: '#e0a100', bounced: '#d13b3b' };
const state = { snap: null, summary: null, suspensions: [], sort: {}, page: 'overview' };

const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c == null ? '-' : String(c)));
  return e;
}
function row(...cells) { return el('tr', {}, ...cells.map((c) => (c instanceof Node && c.tagName === 'TD') ? c : el('td', {}, c))); }
function fill(tbody, rows) { tbody.replaceChildren(...rows); }
function age(secs) {
  if (secs == null) return '-';
  if (secs < 120) return secs + 's'; if (secs < 7200) return Math.floor(secs / 60) + 'm';
  if (secs < 172800) return Math.floor(secs / 3600) + 'h'; return Math.floor(secs / 86400) + 'd';
}
function notice(text, error) {
  const n = $('notice'); n.textContent = text; n.hidden = !text; n.className = error ? 'error' : '';
}

async function api(method, path, body) {
  const init = { method, headers: {} };
  if (body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body); }
  const r = await fetch(path, init);
  const text = await r.text();
  let v = null; try { v = text ? JSON.parse(text) : null; } catch (_) { v = text; }
  if (!r.ok) throw new Error((v && v.error) || (v && v.message) || (r.status + ' ' + text));
  return v;
}
async function act(what, method, path, body) {
  try { const v = await api(method, path, body); notice(what + ': done' + (v && v.affected != null ? ' (' + v.affected + ')' : '')); await refresh(); return v; }
  catch (e) { notice(what + ': ' + e.message, true); return null; }
}

// ---- charts ---------------------------------------------------------------
function series(buckets, now, step, points) {
  const start = now - now % step - step * (points - 1);
  const out = KINDS.map(() => new Array(points).fill(0));
  for (const b of buckets) {
    const i = Math.floor((b.at - start) / step);
    if (i >= 0 && i < points) KINDS.forEach((_, k) => { out[k][i] += b.counts[k]; });
  }
  return out;
}
function chart(canvas, data) {
  const ctx = canvas.getContext('2d'); const w = canvas.width, h = canvas.height, pad = 28;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(4, ...data.flat());
  ctx.strokeStyle = '#e3e6ea'; ctx.fillStyle = '#5a6474'; ctx.font = '11px sans-serif';
  for (let g = 0; g <= 4; g++) {
    const y = h - pad / 2 - (h - pad) * g / 4; ctx.beginPath(); ctx.moveTo(pad, y); ctx.lineTo(w, y); ctx.stroke();
    ctx.fillText(String(Math.round(max * g / 4)), 0, y + 4);
  }
  data.forEach((points, k) => {
    ctx.strokeStyle = COLORS[KINDS[k]]; ctx.lineWidth = 1.5; ctx.beginPath();
    points.forEach((v, i) => {
      const x = pad + (w - pad) * i / Math.max(1, points.length - 1), y = h - pad / 2 - (h - pad) * v / max;
      if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
    });
    ctx.stroke();
  });
}

// ---- pages ----------------------------------------------------------------
function overview() {
  const s = state.snap; if (!s) return;
  KINDS.forEach((k, i) => {
    $('total-' + k).textContent = s.totals[i];
    const recent = s.seconds.filter((b) => b.at > s.now - 10).reduce((a, b) => a + b.counts[i], 0);
    $('rate-' + k).textContent = (recent / 10).toFixed(1) + '/s now';
  });
  $('total-queued').textContent = s.scheduled_messages + s.ready_messages;
  $('oldest').textContent = 'oldest ' + age(s.oldest_age_secs);
  chart($('chart-hour'), series(s.seconds, s.now, 1, 3600));
  chart($('chart-day'), series(s.minutes, s.now, 60, 1440));
  fill($('daemon'), [
    row('Host', s.hostname), row('Up', age(s.now - s.started)), row('Policy generation', s.generation),
    row('Listeners', s.listeners.join(', ')),
    row('Spool', s.spool + (s.spool_healthy ? ' — accepting mail' : ' — NOT accepting mail (below its free-space reserve or failing writes; new mail gets 451)')),
    row('Scheduled / ready', s.scheduled_messages + ' / ' + s.ready_messages),
  ]);
}

function suspensionOf(kind, target) {
  return state.suspensions.find((x) => x.kind === kind && x.target === target);
}
function stateCell(text) {
  const cls = text.startsWith('suspended') ? 'state-suspended' : text.startsWith('held') ? 'state-held' : 'state-active';
  return el('td', { class: cls }, text);
}
function describeSuspension(x) {
  return 'suspended: ' + x.reason + (x.expires ? ' (until ' + new Date(x.expires).toLocaleString() + ')' : '');
}

function sources() {
  const s = state.snap, q = state.summary || {}; if (!s) return;
  fill($('sources'), s.sources.map((src) => {
    const bounces = {};
    for (const b of (q.bounces_last_hour || []).filter((b) => b.source === src.name)) {
      bounces[b.classification] = (bounces[b.classification] || 0) + b.deferred + b.bounced;
    }
    const top = Object.entries(bounces).sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, n]) => c + ' ' + n).join(', ');
    const warm = (q.warmup || []).filter((w) => w.source === src.name)
      .map((w) => (w.site ? w.site + ': ' : '') + 'day ' + w.day + ', ' + w.used + '/' + (w.cap == null ? 'no cap' : w.cap)).join('; ');
    const susp = suspensionOf('source', src.name);
    const button = susp
      ? el('button', { 'data-source': src.name, class: 'resume-source', onclick: () => act('resume ' + src.name, 'DELETE', '/api/admin/suspend-ready-q/v1', { name: src.name }) }, 'Resume')
      : el('button', { 'data-source': src.name, class: 'suspend-source', onclick: () => act('suspend ' + src.name, 'POST', '/api/admin/suspend-ready-q/v1', { name: src.name, duration: $('source-duration').value, reason: $('source-reason').value }) }, 'Suspend');
    const tr = row(src.name, src.address, src.ehlo, src.pools.map((p) => p.pool + ' (' + p.weight + ')').join(', '),
      src.connections, src.delivered, src.deferred, src.bounced, top || '-', warm || '-',
      stateCell(susp ? describeSuspension(susp) : 'active'), el('td', {}, button));
    tr.setAttribute('data-source', src.name);
    return tr;
  }));
}

function pct(n, total) { return total ? (100 * n / total).toFixed(1) + '%' : '-'; }
function bar(n, total, cls) { return el('span', { class: 'bar ' + (cls || ''), style: 'width:' + (total ? 200 * n / total : 0) + 'px' }); }
function pools() {
  const s = state.snap; if (!s) return;
  $('pools').replaceChildren(...s.pools.map((p) => {
    const w = p.entries.reduce((a, e) => a + e.weight, 0), d = p.entries.reduce((a, e) => a + e.delivered_last_hour, 0);
    const k = p.entries.reduce((a, e) => a + e.recent_picks, 0);
    const body = el('tbody', {}, ...p.entries.map((e) => {
      const tr = row(e.source, e.weight, el('td', {}, bar(e.weight, w, 'configured'), ' ', pct(e.weight, w)),
        el('td', {}, bar(e.delivered_last_hour, d), ' ', pct(e.delivered_last_hour, d) + ' (' + e.delivered_last_hour + ')'),
        el('td', { class: 'picks' }, bar(e.recent_picks, k), ' ', pct(e.recent_picks, k) + ' (' + e.recent_picks + ')'));
      tr.setAttribute('data-source', e.source);
      return tr;
    }));
    return el('div', { class: 'pool', 'data-pool': p.name }, el('h2', {}, 'Pool ' + p.name),
      el('table', {}, el('thead', {}, row(el('th', {}, 'Source'), el('th', {}, 'Weight'), el('th', {}, 'Configured share'),
        el('th', {}, 'Delivered, last hour'), el('th', {}, 'Last ' + k + ' picks'))), body));
  }));
}

function sorted(table, rows) {
  const s = state.sort[table]; if (!s) return rows;
  return rows.slice().sort((a, b) => {
    const x = a[s.key], y = b[s.key];
    const c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x == null ? '' : x).localeCompare(String(y == null ? '' : y));
    return s.desc ? -c : c;
  });
}
function queues() {
  const q = state.summary; if (!q) return;
  const f = $('queue-filter').value.trim().toLowerCase();
  const scheduled = q.scheduled.map((x) => Object.assign({}, x, {
    state: x.held ? 'held: ' + x.held : x.suspended ? 'suspended' + (x.suspension ? ': ' + x.suspension : '') : 'active',
  })).filter((x) => !f || x.name.toLowerCase().includes(f));
  fill($('scheduled'), sorted('scheduled', scheduled).map((x) => {
    const name = x.name;
    const b = (label, fn) => el('button', { class: label.toLowerCase(), 'data-queue': name, onclick: fn }, label);
    const tr = row(name, x.messages, age(x.oldest_age_secs), x.last_error, stateCell(x.state), el('td', {},
      x.suspended ? b('Resume', () => act('resume ' + name, 'DELETE', '/api/admin/suspend/v1', { queue: name }))
        : b('Suspend', () => act('suspend ' + name, 'POST', '/api/admin/suspend/v1', { queue: name, duration: $('queue-duration').value, reason: $('queue-reason').value })),
      b('Flush', () => act('flush ' + name, 'POST', '/api/admin/flush/v1', { queue: name })),
      b('Bounce', () => act('bounce ' + name, 'POST', '/api/admin/bounce/v1', { queue: name, reason: $('queue-reason').value })),
      b('Rebind', () => act('rebind ' + name, 'POST', '/api/admin/rebind/v1', { queue: name, to_pool: $('queue-pool').value }))));
    tr.setAttribute('data-queue', name);
    return tr;
  }));
  const ready = q.ready.map((x) => Object.assign({}, x, {
    state: x.source_suspended ? 'suspended' + (x.source_suspension ? ': ' + x.source_suspension : '') : x.source_unhealthy ? 'unhealthy' : 'active',
  })).filter((x) => !f || [x.name, x.source, x.site].some((v) => v.toLowerCase().includes(f)));
  fill($('ready'), sorted('ready', ready).map((x) => row(x.name, x.source, x.site, x.messages, x.connections, stateCell(x.state))));
  fill($('suspensions'), state.suspensions.map((x) => row(x.id, x.kind, x.target, x.reason, x.creator,
    x.expires ? new Date(x.expires).toLocaleString() : 'until lifted',
    el('td', {}, el('button', { class: 'lift', onclick: () => act('lift ' + x.id, 'DELETE', '/api/admin/suspend/v1', { id: x.id }) }, 'Lift')))));
}

async function searchMessage(query) {
  const out = $('message-result'); out.replaceChildren(el('p', {}, 'Searching…'));
  try {
    if (/^[0-9a-fA-F]{32}$/.test(query)) {
      const [info, recs] = await Promise.all([
        api('GET', '/api/admin/inspect-message/v1?id=' + query).catch(() => null),
        api('GET', '/api/admin/message-records/v1?id=' + query),
      ]);
      out.replaceChildren(...messageView(query, info, recs.records));
    } else {
      const recs = await api('GET', '/api/admin/message-records/v1?address=' + encodeURIComponent(query));
      const ids = [...new Set(recs.records.map((r) => r.id))];
      out.replaceChildren(el('h2', {}, ids.length + ' message(s) for ' + query),
        el('ul', {}, ...ids.map((id) => el('li', {}, el('a', { href: '#message', class: 'message-link', onclick: () => { $('message-query').value = id; searchMessage(id); } }, id)))));
    }
  } catch (e) { out.replaceChildren(el('p', { class: 'state-held' }, e.message)); }
}
function messageView(id, info, records) {
  const reception = records.find((r) => r.type === 'Reception') || {};
  const attempts = records.filter((r) => ['Delivery', 'TransientFailure', 'Bounce'].includes(r.type)).length;
  const last = records[records.length - 1];
  const facts = el('tbody', {},
    row('Id', id), row('Sender', (info && info.sender) || reception.sender), row('Recipient', (info && info.recipient) || reception.recipient),
    row('Queue', (info && info.queue) || reception.queue), row('State', info ? 'waiting (due ' + (info.due || 'now') + ')' : last ? last.type : 'unknown'),
    row('Attempts', attempts), row('Size', (info && info.size) || reception.size));
  const meta = (info && info.meta) || reception.meta || {};
  const headers = reception.headers || {};
  return [
    el('h2', {}, 'Message ' + id), el('table', { id: 'message-facts' }, facts),
    el('h2', {}, 'Meta'), el('table', {}, el('tbody', {}, ...Object.entries(meta).map(([k, v]) => row(k, JSON.stringify(v))))),
    el('h2', {}, 'Headers (as logged)'), el('table', {}, el('tbody', {}, ...Object.entries(headers).map(([k, v]) => row(k, typeof v === 'string' ? v : JSON.stringify(v))))),
    el('h2', {}, 'Log records'),
    el('table', { id: 'message-records' }, el('thead', {}, row(el('th', {}, 'Time'), el('th', {}, 'Type'), el('th', {}, 'Source'), el('th', {}, 'Peer'), el('th', {}, 'Response'))),
      el('tbody', {}, ...records.map((r) => {
        const tr = row(r.event_time || r.timestamp, r.type, r.egress_source, r.peer_address && (r.peer_address.addr || r.peer_address.name),
          r.response && (r.response.code + ' ' + r.response.content));
        tr.setAttribute('data-type', r.type);
        return tr;
      }))),
  ];
}

// ---- plumbing -------------------------------------------------------------
const PAGES = { overview, sources, pools, queues, message: () => {} };
function show() {
  const page = (location.hash || '#overview').slice(1);
  state.page = PAGES[page] ? page : 'overview';
  for (const p of Object.keys(PAGES)) { $('page-' + p).hidden = p !== state.page; $('nav-' + p).classList.toggle('active', p === state.page); }
  PAGES[state.page]();
}
async function refresh() {
  try {
    const [snap, summary, suspensions] = await Promise.all([
      api('GET', '/api/admin/console/v1'), api('GET', '/api/admin/queue-summary/v1'), api('GET', '/api/admin/suspend/v1'),
    ]);
    Object.assign(state, { snap, summary, suspensions });
    $('host').textContent = snap.hostname;
    $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    document.body.setAttribute('data-loaded', 'true');
    PAGES[state.page]();
  } catch (e) { notice('cannot read the daemon: ' + e.message, true); }
}

document.addEventListener('DOMContentLoaded', () => {
  window.addEventListener('hashchange', show);
  document.querySelectorAll('table.sortable th[data-key]').forEach((th) => th.addEventListener('click', () => {
    const table = th.closest('table').dataset.table, key = th.dataset.key, s = state.sort[table];
    state.sort[table] = { key, desc: s && s.key === key ? !s.desc : false }; queues();
  }));
  $('queue-filter').addEventListener('input', queues);
  $('reload').addEventListener('click', async () => {
    const v = await act('reload', 'POST', '/api/admin/reload/v1', {});
    if (v) { const r = $('reload-report'); r.hidden = false; r.textContent = JSON.stringify(v, null, 2); }
  });
  $('message-search').addEventListener('submit', (e) => { e.preventDefault(); searchMessage($('message-query').value.trim()); });
  show();
  refresh();
  setInterval(refresh, 1000);
});
