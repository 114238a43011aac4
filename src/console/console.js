// modelgate console. Plain DOM: every value is set with textContent or as an attribute,
// never parsed as HTML, so names and metadata (user input) always render as text.
'use strict';

const SECRET = 'modelgate.console.secret'; // sessionStorage: gone with the tab
const THEME = 'modelgate.console.theme'; // localStorage: not a secret
const SVG_NS = 'http://www.w3.org/2000/svg';

// ---------------------------------------------------------------- DOM helpers

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  setProps(node, props);
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function svg(tag, props, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === 'text') node.textContent = v;
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) node.append(c);
  return node;
}

function setProps(node, props) {
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'value') node.value = v;
    else if (v === true) node.setAttribute(k, '');
    else node.setAttribute(k, String(v));
  }
}

const $ = (id) => document.getElementById(id);

function fmtInt(n) { return Number(n || 0).toLocaleString('en-US'); }
// Axis labels of counts: halves of small maxima stay exact (0.5, not a second "1").
function fmtCount(n) { return Number.isInteger(n) ? fmtInt(n) : Number(n).toFixed(1); }
function fmtUsd(n) {
  const v = Number(n || 0);
  if (v > 0 && v < 0.0001) return '<$0.0001'; // mock-sized costs: not a misleading $0.0000
  return '$' + (v !== 0 && Math.abs(v) < 0.01 ? v.toFixed(4) : v.toFixed(2));
}
function fmtTime(s) {
  if (!s) return '—';
  const d = new Date(s);
  return isNaN(d) ? String(s) : d.toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}
function utcDay(offsetDays) {
  const d = new Date(Date.now() + (offsetDays || 0) * 86400000);
  return d.toISOString().slice(0, 10);
}

function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3000);
}

// ---------------------------------------------------------------- the API

class ApiError extends Error {
  constructor(status, message, body) { super(message); this.status = status; this.body = body; }
}

async function api(method, path, body, opts) {
  const headers = { Authorization: 'Bearer ' + (sessionStorage.getItem(SECRET) || '') };
  let payload;
  if (body !== undefined) {
    if (typeof body === 'string') {
      headers['Content-Type'] = 'application/yaml';
      payload = body;
    } else {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(body);
    }
  }
  const r = await fetch(path, { method, headers, body: payload, cache: 'no-store', credentials: 'omit' });
  if (opts && opts.raw && r.ok) return r;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) {
    const msg = (data && data.error && data.error.message) || ('HTTP ' + r.status);
    if (r.status === 401 && !(opts && opts.signingIn)) signOut('The secret was refused: sign in again.');
    throw new ApiError(r.status, msg, data);
  }
  return data;
}

// ---------------------------------------------------------------- sign in, theme, routing

function signOut(message) {
  sessionStorage.removeItem(SECRET);
  $('app').hidden = true;
  $('signin-view').hidden = false;
  $('signin-error').textContent = message || '';
  $('secret').value = '';
  $('secret').focus();
}

async function signIn(ev) {
  ev.preventDefault();
  const secret = $('secret').value.trim();
  if (!secret) return;
  sessionStorage.setItem(SECRET, secret);
  try {
    await api('GET', '/v0/management/providers', undefined, { signingIn: true });
  } catch (e) {
    sessionStorage.removeItem(SECRET);
    $('signin-error').textContent = e.status === 401 ? 'That is not the management secret.' : e.message;
    return;
  }
  $('secret').value = '';
  $('signin-error').textContent = '';
  $('signin-view').hidden = true;
  $('app').hidden = false;
  route();
}

function applyTheme() {
  const t = localStorage.getItem(THEME) || 'auto';
  if (t === 'auto') document.documentElement.removeAttribute('data-theme');
  else document.documentElement.setAttribute('data-theme', t);
  $('theme').textContent = 'Theme: ' + t;
}

function cycleTheme() {
  const order = ['auto', 'light', 'dark'];
  const t = localStorage.getItem(THEME) || 'auto';
  localStorage.setItem(THEME, order[(order.indexOf(t) + 1) % order.length]);
  applyTheme();
}

const PAGES = {
  overview: overviewPage,
  usage: usagePage,
  keys: keysPage,
  providers: providersPage,
  logs: logsPage,
  config: configPage,
};

let renderSeq = 0;

async function route() {
  const name = (location.hash || '#overview').slice(1);
  const page = PAGES[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const seq = ++renderSeq;
  const main = $('main');
  delete main.dataset.page; // set again when this page is drawn (tests wait for it)
  main.replaceChildren(el('p', { class: 'muted', text: 'Loading…' }));
  try {
    const content = await PAGES[page]();
    if (seq !== renderSeq) return; // a newer navigation won
    main.replaceChildren(...[].concat(content));
    main.dataset.page = page;
  } catch (e) {
    if (seq !== renderSeq) return;
    main.replaceChildren(el('div', { class: 'card' },
      el('h2', { text: 'Could not load this page' }), el('p', { class: 'error', text: e.message })));
    main.dataset.page = 'error';
  }
}

// ---------------------------------------------------------------- charts (SVG, no library)

// Vertical bars over days: `points` is [{label, value}], drawn in order.
function barChart(points, opts) {
  const W = 640, H = 180, left = 62, bottom = 22, top = 10;
  const max = Math.max(...points.map((p) => p.value), 0) || 1;
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title });
  chart.append(svg('title', { text: opts.title }));
  const plotW = W - left - 6, plotH = H - top - bottom;
  const bw = plotW / Math.max(points.length, 1);
  for (const frac of [0, 0.5, 1]) {
    const y = top + plotH * (1 - frac);
    chart.append(svg('line', { class: 'axis', x1: left, x2: W - 4, y1: y, y2: y }));
    chart.append(svg('text', { x: left - 6, y: y + 4, 'text-anchor': 'end', text: opts.fmt(max * frac) }));
  }
  points.forEach((p, i) => {
    const h = (p.value / max) * plotH;
    const rect = svg('rect', {
      class: opts.alt ? 'bar2' : 'bar', x: left + i * bw + 1, y: top + plotH - h,
      width: Math.max(bw - 2, 1), height: Math.max(h, p.value > 0 ? 1 : 0), rx: 1,
    });
    rect.append(svg('title', { text: `${p.label}: ${opts.fmt(p.value)}` }));
    chart.append(rect);
    if (i % Math.ceil(points.length / 6) === 0) {
      chart.append(svg('text', { x: left + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle', text: p.label.slice(5) }));
    }
  });
  return chart;
}

// Horizontal bars, one per row: for grouped usage.
function hbarChart(rows, opts) {
  const shown = rows.slice(0, 12);
  const W = 640, rowH = 24, left = 170, H = Math.max(shown.length, 1) * rowH + 8;
  const max = Math.max(...shown.map((r) => r.value), 0) || 1;
  const chart = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': opts.title });
  chart.append(svg('title', { text: opts.title }));
  shown.forEach((r, i) => {
    const y = 4 + i * rowH;
    const label = r.label.length > 26 ? r.label.slice(0, 25) + '…' : r.label;
    chart.append(svg('text', { x: left - 8, y: y + 15, 'text-anchor': 'end', text: label }));
    const w = ((W - left - 90) * r.value) / max;
    const rect = svg('rect', { class: 'bar', x: left, y: y + 3, width: Math.max(w, r.value > 0 ? 1 : 0), height: rowH - 8, rx: 2 });
    rect.append(svg('title', { text: `${r.label}: ${opts.fmt(r.value)}` }));
    chart.append(rect);
    chart.append(svg('text', { x: left + w + 6, y: y + 15, text: opts.fmt(r.value) }));
  });
  return chart;
}

function table(headers, rows, opts) {
  const head = el('tr', null, headers.map((h) => el('th', { class: h.num ? 'num' : null, text: h.label || h })));
  const body = rows.length
    ? rows
    : [el('tr', null, el('td', { colspan: headers.length, class: 'muted', text: (opts && opts.empty) || 'Nothing yet.' }))];
  return el('div', { class: 'table-wrap' }, el('table', { id: opts && opts.id }, el('thead', null, head), el('tbody', null, body)));
}

function td(text, cls) { return el('td', { class: cls, text: text === null || text === undefined ? '—' : String(text) }); }

// ---------------------------------------------------------------- Overview

async function overviewPage() {
  const today = utcDay(0);
  const [day, month, providers] = await Promise.all([
    api('GET', `/v0/management/usage?from=${today}&to=${today}&group_by=`),
    api('GET', `/v0/management/usage?from=${utcDay(-29)}&to=${today}&group_by=day`),
    api('GET', '/v0/management/providers'),
  ]);
  const t = day.totals || {};
  const m = month.totals || {};
  const byDay = new Map((month.rows || []).map((r) => [r.day, r]));
  const days = [];
  for (let i = -29; i <= 0; i++) days.push(utcDay(i));
  const series = (f) => days.map((d) => ({ label: d, value: Number((byDay.get(d) || {})[f] || 0) }));

  const stat = (id, value, label) => el('div', { class: 'card stat' },
    el('div', { class: 'value', id, text: value }), el('div', { class: 'label', text: label }));
  const healthy = (providers.providers || []).filter((p) => p.healthy).length;
  return [
    el('h1', { text: 'Overview' }),
    el('p', { class: 'muted', id: 'today-summary' },
      el('strong', { id: 'today-requests-count', text: fmtInt(t.requests) }), ' requests today (UTC), ',
      el('strong', { text: fmtInt(m.requests) }), ' in the last 30 days.'),
    el('div', { class: 'grid' },
      stat('today-requests', fmtInt(t.requests), 'requests today'),
      stat('today-errors', fmtInt(t.errors), 'errors today'),
      stat('today-tokens', fmtInt((t.prompt_tokens || 0) + (t.completion_tokens || 0)), 'tokens today'),
      stat('today-cost', fmtUsd(t.cost_usd), 'cost today'),
      stat('month-cost', fmtUsd(m.cost_usd), 'cost, last 30 days'),
      stat('providers-healthy', `${healthy} / ${(providers.providers || []).length}`, 'providers healthy')),
    el('div', { class: 'grid two' },
      el('div', { class: 'card' }, el('h2', { text: 'Requests per day, last 30 days' }),
        barChart(series('requests'), { title: 'Requests per day', fmt: fmtCount })),
      el('div', { class: 'card' }, el('h2', { text: 'Cost per day, last 30 days' }),
        barChart(series('cost_usd'), { title: 'Cost per day (USD)', fmt: fmtUsd, alt: true }))),
    el('div', { class: 'card' }, el('h2', { text: 'Providers' }),
      table(['provider', 'kind', 'health', 'targets'], (providers.providers || []).map((p) => el('tr', null,
        el('td', null, el('span', { class: p.healthy ? 'dot' : 'dot bad' }), p.name),
        td(p.kind),
        td(p.healthy ? 'healthy' : 'unhealthy', p.healthy ? 'ok' : 'bad'),
        td((p.targets || []).map((x) => x.model).join(', ')))), { empty: 'No providers.' })),
  ];
}

// ---------------------------------------------------------------- Usage

const usageState = { group: 'model', from: null, to: null };

async function usagePage() {
  if (!usageState.from) { usageState.from = utcDay(-29); usageState.to = utcDay(0); }
  const q = () => `from=${encodeURIComponent(usageState.from)}&to=${encodeURIComponent(usageState.to)}&group_by=${usageState.group}`;
  const data = await api('GET', `/v0/management/usage?${q()}`);
  const rows = (data.rows || []).slice();
  const labelOf = (r) => String(r[usageState.group] === null || r[usageState.group] === undefined ? '(none)' : r[usageState.group]);
  if (usageState.group === 'day') rows.sort((a, b) => String(a.day).localeCompare(String(b.day)));
  else rows.sort((a, b) => (b.cost_usd - a.cost_usd) || (b.requests - a.requests));

  const group = el('select', { id: 'usage-group', name: 'group_by' },
    ['key', 'model', 'provider', 'day'].map((g) => el('option', { value: g, selected: g === usageState.group, text: g })));
  const from = el('input', { type: 'date', id: 'usage-from', value: usageState.from });
  const to = el('input', { type: 'date', id: 'usage-to', value: usageState.to });
  const apply = () => { usageState.group = group.value; usageState.from = from.value; usageState.to = to.value; route(); };
  group.addEventListener('change', apply);
  const exportCsv = async () => {
    try {
      const r = await api('GET', `/v0/management/usage?${q()}&format=csv`, undefined, { raw: true });
      const blob = await r.blob();
      const a = el('a', { href: URL.createObjectURL(blob), download: `usage-${usageState.from}-${usageState.to}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
    } catch (e) { toast('Export failed: ' + e.message); }
  };
  const chart = usageState.group === 'day'
    ? barChart(rows.map((r) => ({ label: r.day, value: Number(r.requests) })), { title: 'Requests per day', fmt: fmtCount })
    : hbarChart(rows.map((r) => ({ label: labelOf(r), value: Number(r.cost_usd) })), { title: `Cost by ${usageState.group}`, fmt: fmtUsd });
  const t = data.totals || {};
  return [
    el('h1', { text: 'Usage' }),
    el('div', { class: 'card row' },
      el('label', { for: 'usage-group', text: 'Group by' }), group,
      el('label', { for: 'usage-from', text: 'From' }), from,
      el('label', { for: 'usage-to', text: 'To' }), to,
      el('button', { type: 'button', onclick: apply, text: 'Apply' }),
      el('span', { class: 'spacer' }),
      el('button', { type: 'button', id: 'usage-csv', onclick: exportCsv, text: 'Export CSV' })),
    el('div', { class: 'card' }, el('h2', { text: usageState.group === 'day' ? 'Requests per day' : `Cost by ${usageState.group}` }), chart),
    el('div', { class: 'card' }, table(
      [usageState.group, { label: 'requests', num: 1 }, { label: 'errors', num: 1 }, { label: 'prompt tokens', num: 1 },
        { label: 'completion tokens', num: 1 }, { label: 'cached', num: 1 }, { label: 'cost', num: 1 }],
      rows.map((r) => el('tr', null, td(labelOf(r)), td(fmtInt(r.requests), 'num'), td(fmtInt(r.errors), 'num'),
        td(fmtInt(r.prompt_tokens), 'num'), td(fmtInt(r.completion_tokens), 'num'), td(fmtInt(r.cached_tokens), 'num'),
        td(fmtUsd(r.cost_usd), 'num'))).concat(rows.length ? [el('tr', null, el('th', { text: 'total' }),
        td(fmtInt(t.requests), 'num'), td(fmtInt(t.errors), 'num'), td(fmtInt(t.prompt_tokens), 'num'),
        td(fmtInt(t.completion_tokens), 'num'), td(fmtInt(t.cached_tokens), 'num'), td(fmtUsd(t.cost_usd), 'num'))] : []),
      { id: 'usage-table', empty: 'No usage in this range.' })),
  ];
}

// ---------------------------------------------------------------- dialogs

// Opens the dialog with `body` nodes; `onOk` returns (a promise of) nothing to close it,
// or throws to show its message and stay open.
function openDialog(title, body, okText, onOk, danger) {
  const dialog = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(...body);
  $('dialog-error').textContent = '';
  const ok = $('dialog-ok');
  ok.textContent = okText;
  ok.className = danger ? 'danger' : 'primary';
  const form = $('dialog-form');
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    ok.disabled = true;
    try {
      await onOk();
      dialog.close();
    } catch (e) {
      $('dialog-error').textContent = e.message;
    } finally {
      ok.disabled = false;
    }
  };
  $('dialog-cancel').onclick = () => dialog.close();
  dialog.showModal();
}

// ---------------------------------------------------------------- Keys

let newSecret = null; // {name, key}: shown once, then forgotten

function budgetBars(k) {
  const budgets = k.budgets || [];
  if (!budgets.length) return el('span', { class: 'muted', text: 'none' });
  return el('div', null, budgets.map((b) => {
    const limit = Number(b.limit || 0);
    const used = Number(b.used || 0);
    const frac = limit > 0 ? Math.min(used / limit, 1) : 0;
    const cls = frac >= 1 ? 'bad' : frac >= 0.8 ? 'warn' : '';
    const fmt = b.unit === 'usd' ? fmtUsd : fmtInt;
    return el('div', { class: 'budget', title: b.resets_at ? 'resets ' + fmtTime(b.resets_at) : null },
      el('span', null, `${b.scope === 'team' ? 'team ' : ''}${b.unit}/${b.period}: ${fmt(used)} of ${fmt(limit)}`),
      el('div', { class: 'meter' }, el('span', { class: cls, style: null, 'data-frac': frac })));
  }));
}

// The meters' widths are set from script (CSP: no inline styles in markup).
function sizeMeters(root) {
  for (const s of root.querySelectorAll('.meter > span[data-frac]')) s.style.width = (Number(s.dataset.frac) * 100).toFixed(1) + '%';
}

function editableFields(k) {
  const out = {};
  for (const f of ['models', 'limits', 'budgets', 'budget_timezone', 'team', 'expires_at', 'allowed_ips', 'disabled', 'metadata']) {
    if (k[f] !== undefined && k[f] !== null) out[f] = k[f];
  }
  if (Array.isArray(out.budgets)) {
    out.budgets = out.budgets.filter((b) => b.scope !== 'team').map((b) => {
      const x = { [b.unit]: b.limit, period: b.period };
      if (b.models) x.models = b.models;
      return x;
    });
  }
  return out;
}

function editKey(k) {
  const text = el('textarea', { id: 'edit-json', class: 'code', spellcheck: 'false' });
  text.value = JSON.stringify(editableFields(k), null, 2);
  openDialog(`Edit ${k.name}`, [el('p', { class: 'muted', text: 'The key\'s fields as JSON: a field set to null returns to its default.' }), text], 'Save', async () => {
    let body;
    try { body = JSON.parse(text.value); } catch (e) { throw new Error('Not valid JSON: ' + e.message); }
    const before = editableFields(k);
    for (const f of Object.keys(before)) if (!(f in body)) body[f] = null;
    await api('PATCH', `/v0/management/keys/${encodeURIComponent(k.name)}`, body);
    toast(`Saved ${k.name}`);
    route();
  });
}

function rotateKey(k) {
  const grace = el('input', { id: 'rotate-grace', value: '1h', placeholder: 'e.g. 0s, 10m, 24h' });
  openDialog(`Rotate ${k.name}`, [
    el('p', null, 'A new secret is made and shown once. The old one keeps working for the grace period.'),
    el('div', { class: 'field' }, el('label', { for: 'rotate-grace', text: 'Grace period' }), grace)], 'Rotate', async () => {
    const r = await api('POST', `/v0/management/keys/${encodeURIComponent(k.name)}/rotate`, { grace: grace.value.trim() || '0s' });
    newSecret = { name: k.name, key: r.key };
    route();
  });
}

function deleteKey(k) {
  openDialog(`Delete ${k.name}?`, [el('p', null, 'Its secrets stop working at once, on every replica. This cannot be undone.')], 'Delete', async () => {
    await api('DELETE', `/v0/management/keys/${encodeURIComponent(k.name)}`);
    toast(`Deleted ${k.name}`);
    route();
  }, true);
}

async function setDisabled(k, disabled) {
  try {
    await api('PATCH', `/v0/management/keys/${encodeURIComponent(k.name)}`, { disabled });
    toast(`${k.name} ${disabled ? 'disabled' : 'enabled'}`);
    route();
  } catch (e) { toast(e.message); }
}

function secretPanel() {
  if (!newSecret) return null;
  const shown = newSecret;
  newSecret = null; // never rendered again, whatever happens next
  const field = el('input', { id: 'new-secret', readonly: true, value: shown.key, 'aria-label': 'New secret' });
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(shown.key);
    } catch (_) {
      field.select();
      document.execCommand('copy');
    }
    toast('Copied');
  };
  const panel = el('div', { class: 'card secret-box', id: 'secret-panel' },
    el('h2', { text: `Secret of ${shown.name}` }),
    el('p', null, 'Copy it now: it is shown only this once and is not stored anywhere readable.'),
    el('div', { class: 'row' }, field,
      el('button', { type: 'button', id: 'copy-secret', onclick: copy, text: 'Copy' }),
      el('button', { type: 'button', class: 'ghost', onclick: () => panel.remove(), text: 'Done' })));
  return panel;
}

function createForm() {
  const input = (id, label, attrs) => el('div', { class: 'field' }, el('label', { for: id, text: label }), el('input', Object.assign({ id, name: id.replace('new-', '') }, attrs || {})));
  const unit = el('select', { id: 'new-budget-unit' }, ['usd', 'tokens', 'requests'].map((u) => el('option', { value: u, text: u })));
  const period = el('select', { id: 'new-budget-period' }, ['day', 'week', 'month', 'total'].map((p) => el('option', { value: p, selected: p === 'month', text: p })));
  const error = el('p', { class: 'error', id: 'create-error', role: 'alert' });
  const form = el('form', { id: 'create-key', class: 'card', autocomplete: 'off' },
    el('h2', { text: 'Create a key' }),
    el('div', { class: 'form-grid' },
      input('new-name', 'Name', { required: true, placeholder: 'e.g. ana', maxlength: 128 }),
      input('new-models', 'Models (comma-separated globs; empty: all)', { placeholder: 'gpt-*, claude-*' }),
      input('new-team', 'Team'),
      input('new-rpm', 'Requests per minute', { type: 'number', min: 1 }),
      el('div', { class: 'field' }, el('label', { for: 'new-budget', text: 'Budget' }),
        el('div', { class: 'row' }, el('input', { id: 'new-budget', type: 'number', min: 0, step: 'any', placeholder: 'none' }), unit, period)),
      el('div', null, el('button', { type: 'submit', class: 'primary', text: 'Create' }))),
    error);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const v = (id) => form.querySelector('#' + id).value.trim();
    const body = { name: v('new-name') };
    const models = v('new-models').split(',').map((s) => s.trim()).filter(Boolean);
    if (models.length) body.models = models;
    if (v('new-team')) body.team = v('new-team');
    if (v('new-rpm')) body.limits = { rpm: Number(v('new-rpm')) };
    if (v('new-budget')) body.budgets = [{ [unit.value]: Number(v('new-budget')), period: period.value }];
    try {
      const r = await api('POST', '/v0/management/keys', body);
      newSecret = { name: r.name, key: r.key };
      route();
    } catch (e) {
      const details = e.body && e.body.errors ? e.body.errors.map((x) => `${x.field}: ${x.message}`).join('\n') : '';
      error.textContent = details || e.message;
    }
  });
  return form;
}

async function keysPage() {
  const data = await api('GET', '/v0/management/keys?budgets=status');
  const keys = data.keys || [];
  const rows = keys.map((k) => {
    const api_ = k.source === 'api';
    const status = k.disabled ? el('span', { class: 'badge bad', text: 'disabled' })
      : (k.expires_at && new Date(k.expires_at) < new Date()) ? el('span', { class: 'badge warn', text: 'expired' })
        : el('span', { class: 'badge ok', text: 'active' });
    const actions = api_ ? el('div', { class: 'row' },
      el('button', { type: 'button', class: 'small', onclick: () => editKey(k), text: 'Edit' }),
      el('button', { type: 'button', class: 'small', onclick: () => setDisabled(k, !k.disabled), text: k.disabled ? 'Enable' : 'Disable' }),
      el('button', { type: 'button', class: 'small', onclick: () => rotateKey(k), text: 'Rotate' }),
      el('button', { type: 'button', class: 'small danger', onclick: () => deleteKey(k), text: 'Delete' }))
      : el('span', { class: 'muted', text: 'in the config file' });
    const meta = Object.entries(k.metadata || {}).map(([a, b]) => `${a}=${b}`).join(', ');
    return el('tr', { 'data-key': k.name },
      el('td', null, el('strong', { class: 'key-name', text: k.name }), meta ? el('div', { class: 'muted', text: meta }) : null),
      td(k.source), td(k.key_hint ? '…' + k.key_hint : '—'), td(k.team), td((k.models || ['*']).join(', ')),
      el('td', null, budgetBars(k)), td(k.last_used_at ? fmtTime(k.last_used_at) : 'never'),
      el('td', null, status), el('td', null, actions));
  });
  const content = [
    el('h1', { text: 'Keys' }),
    secretPanel(),
    createForm(),
    el('div', { class: 'card' }, table(['name', 'source', 'secret', 'team', 'models', 'budgets', 'last used', 'status', ''], rows, { id: 'keys-table', empty: 'No keys yet.' })),
  ].filter(Boolean);
  for (const c of content) sizeMeters(c);
  return content;
}

// ---------------------------------------------------------------- Providers

async function providersPage() {
  const data = await api('GET', '/v0/management/providers');
  const reset = async (p) => {
    try {
      const r = await api('POST', `/v0/management/providers/${encodeURIComponent(p.name)}/reset`);
      toast(`${p.name}: ${r.cooldowns_cleared} cooldown(s) cleared`);
      route();
    } catch (e) { toast(e.message); }
  };
  const cards = (data.providers || []).map((p) => {
    const hc = p.health_check;
    const cooling = (p.targets || []).some((t) => t.cooling_down_until);
    return el('div', { class: 'card', 'data-provider': p.name },
      el('div', { class: 'row' },
        el('h2', null, el('span', { class: p.healthy ? 'dot' : 'dot bad' }), p.name),
        el('span', { class: 'badge', text: p.kind }),
        el('span', { class: p.healthy ? 'badge ok' : 'badge bad', text: p.healthy ? 'healthy' : 'unhealthy' }),
        el('span', { class: 'spacer' }),
        el('button', { type: 'button', class: 'small', disabled: !cooling, onclick: () => reset(p), text: 'Reset cooldowns' })),
      hc ? el('p', { class: 'muted' }, `Health check: ${hc.consecutive_failures} failure(s) in a row`,
        hc.unhealthy_on_other_replicas ? `, unhealthy on ${hc.unhealthy_on_other_replicas} other replica(s)` : '',
        hc.last_error ? `; last error: ${hc.last_error}` : '') : null,
      table(['model', 'state', { label: 'requests', num: 1 }, { label: 'errors', num: 1 }, { label: 'p50 ms', num: 1 }, 'last error'],
        (p.targets || []).map((t) => el('tr', null, td(t.model),
          el('td', { class: t.healthy ? 'ok' : 'bad', text: t.cooling_down_until ? 'cooling down until ' + fmtTime(t.cooling_down_until) : t.healthy ? 'healthy' : 'unhealthy' }),
          td(fmtInt(t.requests), 'num'), td(fmtInt(t.errors), 'num'), td(t.p50_ms === null ? '—' : t.p50_ms, 'num'), td(t.last_error))),
        { empty: 'No model routes to this provider.' }));
  });
  return [el('h1', { text: 'Providers' })].concat(cards.length ? cards : [el('p', { class: 'muted', text: 'No providers.' })]);
}

// ---------------------------------------------------------------- Logs

const logFilter = { key: '', model: '', status: '' };

async function logsPage() {
  const data = await api('GET', '/v0/management/logs?limit=500');
  const records = data.records || [];
  const input = (id, field, placeholder) => {
    const i = el('input', { id, placeholder, value: logFilter[field] });
    i.addEventListener('input', () => { logFilter[field] = i.value.trim(); draw(); });
    return i;
  };
  const body = el('div');
  const matches = (r) => (!logFilter.key || String(r.key || '').includes(logFilter.key))
    && (!logFilter.model || String(r.model || '').includes(logFilter.model))
    && (!logFilter.status || String(r.status).startsWith(logFilter.status));
  const draw = () => {
    const shown = records.filter(matches);
    body.replaceChildren(el('p', { class: 'muted', text: `${shown.length} of ${records.length} recent records` }),
      table(['time', 'key', 'model', 'provider', { label: 'status', num: 1 }, 'error', { label: 'ms', num: 1 }, { label: 'tokens in/out', num: 1 }, 'path'],
        shown.map((r) => el('tr', null, td(fmtTime(r.time)), td(r.key || '—'), td(r.model), td(r.provider),
          el('td', { class: 'num ' + (r.status >= 400 ? 'bad' : 'ok'), text: String(r.status) }), td(r.error),
          td(r.duration_ms, 'num'), td(`${r.prompt_tokens ?? '—'} / ${r.completion_tokens ?? '—'}`, 'num'),
          td(`${r.method || ''} ${r.path || ''}`))), { id: 'logs-table', empty: 'No records match.' }));
  };
  draw();
  return [
    el('h1', { text: 'Logs' }),
    el('div', { class: 'card row' },
      el('label', { for: 'log-key', text: 'Key' }), input('log-key', 'key', 'name'),
      el('label', { for: 'log-model', text: 'Model' }), input('log-model', 'model', 'name'),
      el('label', { for: 'log-status', text: 'Status' }), input('log-status', 'status', 'e.g. 429 or 5'),
      el('span', { class: 'spacer' }),
      el('button', { type: 'button', onclick: () => route(), text: 'Refresh' })),
    el('div', { class: 'card' }, body),
  ];
}

// ---------------------------------------------------------------- Config

let draftConfig = '';

async function configPage() {
  const running = await api('GET', '/v0/management/config');
  const area = el('textarea', { id: 'config-yaml', class: 'code', spellcheck: 'false', wrap: 'off', 'aria-label': 'YAML config',
    placeholder: 'Paste a complete YAML config here, then Validate (nothing changes) or Apply (replaces the config file and reloads).' });
  area.value = draftConfig;
  const gutter = el('pre', { class: 'gutter', 'aria-hidden': 'true' });
  const result = el('div', { id: 'config-result' });
  let bad = new Set();
  const drawGutter = () => {
    const n = Math.max(area.value.split('\n').length, 1);
    const lines = [];
    for (let i = 1; i <= n; i++) lines.push(el('span', { class: bad.has(i) ? 'bad' : null, text: i + '\n' }));
    gutter.replaceChildren(...lines);
    gutter.scrollTop = area.scrollTop;
  };
  area.addEventListener('input', () => { draftConfig = area.value; bad = new Set(); drawGutter(); });
  area.addEventListener('scroll', () => { gutter.scrollTop = area.scrollTop; });
  const show = (answer) => {
    bad = new Set((answer.errors || []).map((e) => e.line).filter(Boolean));
    drawGutter();
    if (answer.valid) {
      result.replaceChildren(el('p', { class: 'ok', text: 'Valid.' }),
        ...(answer.warnings || []).map((w) => el('p', { class: 'warn', text: 'warning: ' + w })));
    } else {
      result.replaceChildren(el('p', { class: 'bad', text: `${answer.errors.length} problem(s):` }),
        el('ul', { id: 'config-errors' }, answer.errors.map((e) => el('li', null,
          el('strong', { text: e.line ? `line ${e.line}${e.column ? ':' + e.column : ''}` : 'config' }),
          e.field ? ` ${e.field}: ` : ' ', e.message))));
    }
  };
  const validate = async () => {
    try {
      const answer = await api('POST', '/v0/management/config/validate', area.value);
      show(answer);
      return answer.valid;
    } catch (e) { result.replaceChildren(el('p', { class: 'error', text: e.message })); return false; }
  };
  const applyConfig = async () => {
    if (!(await validate())) return;
    openDialog('Apply this config?', [el('p', null, 'The config file is replaced (the old one kept as .bak) and the gateway reloads at once.')], 'Apply', async () => {
      await api('PUT', '/v0/management/config', area.value);
      toast('Config replaced and reloaded');
      draftConfig = '';
      route();
    });
  };
  drawGutter();
  return [
    el('h1', { text: 'Config' }),
    el('div', { class: 'card' }, el('h2', { text: 'New config' }),
      el('div', { class: 'editor' }, gutter, area),
      el('div', { class: 'row' }, el('button', { type: 'button', id: 'config-validate', onclick: validate, text: 'Validate' }),
        el('button', { type: 'button', class: 'primary', id: 'config-apply', onclick: applyConfig, text: 'Apply' })),
      result),
    el('div', { class: 'card' }, el('h2', { text: 'Running config (secrets redacted)' }),
      el('pre', { class: 'json', id: 'config-running', text: JSON.stringify(running, null, 2) })),
  ];
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', () => {
  applyTheme();
  $('signin').addEventListener('submit', signIn);
  $('signout').addEventListener('click', () => signOut(''));
  $('theme').addEventListener('click', cycleTheme);
  window.addEventListener('hashchange', () => { if (!$('app').hidden) route(); });
  if (sessionStorage.getItem(SECRET)) {
    $('signin-view').hidden = true;
    $('app').hidden = false;
    route();
  } else {
    signOut('');
  }
});
