// groxy keys page: the keys admin API (/admin/keys) and the usage ledger (/admin/usage) in a page.
// No dependencies. Text from the JSON only ever goes through textContent / setAttribute.
// Writes send `content-type: application/json`, which groxy requires of them: a page of another
// site cannot send that without a CORS preflight, so it cannot ride the browser's admin login.
(() => {
  'use strict';
  const POLL_MS = 5000, DAYS = 14, NS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#2f6fde', '#f55036', '#12a594', '#8e4ec6', '#d97706', '#e5484d', '#0ea5e9', '#65a30d'];
  const $ = (id) => document.getElementById(id), body = document.body;
  let keys = [], editing = null, timer = 0;

  function el(tag, attrs, kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of kids || []) if (c != null) e.append(c);
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const usd = (v) => (typeof v !== 'number' ? '—' : v === 0 ? '$0' : v < 0.01 ? '$' + v.toPrecision(2) : '$' + v.toFixed(2));

  async function api(method, path, body) {
    const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } };
    if (method !== 'GET') { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(body || {}); }
    const r = await fetch(path, init);
    const text = await r.text();
    let json = null; try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
    if (!r.ok) throw new Error((json && json.error && json.error.message) || `HTTP ${r.status}`);
    return json;
  }
  function banner(message) {
    const b = $('banner');
    b.textContent = message || ''; b.hidden = !message;
  }

  // ---------- the keys table ----------
  function budgetBar(period, spent, limit) {
    if (typeof limit !== 'number') return el('span', { class: 'muted', text: usd(spent) });
    const share = limit > 0 ? Math.min(spent / limit, 1) : 1;
    const fill = el('div', { class: 'fill' }); fill.style.width = (share * 100).toFixed(1) + '%';
    return el('div', {
      class: 'budget' + (share >= 1 ? ' bad' : share >= 0.8 ? ' warn' : ''),
      'data-period': period, 'data-spent': String(spent), 'data-limit': String(limit),
      title: `${usd(spent)} of ${usd(limit)}`,
    }, [el('span', { text: `${usd(spent)} / ${usd(limit)}` }), el('div', { class: 'track' }, [fill])]);
  }
  function renderKeys() {
    const rows = keys.map((k) => {
      const limits = Object.entries(k.limits || {}).map(([n, v]) => `${n.replace(/_/g, ' ')} ${v}`).join(', ');
      const spend = k.spend || {};
      const actions = [];
      if (!k.read_only && k.status === 'active') {
        actions.push(el('button', { type: 'button', 'data-action': 'edit', 'data-id': k.id, text: 'Edit' }));
        actions.push(el('button', { type: 'button', class: 'danger', 'data-action': 'revoke', 'data-id': k.id, text: 'Revoke' }));
      }
      return el('tr', { 'data-key-id': k.id, 'data-name': k.name, 'data-status': k.status, 'data-source': k.source, class: k.status }, [
        el('td', { text: k.name }),
        el('td', {}, [el('code', { text: k.read_only ? k.id : `${k.id} · ${k.prefix}…` })]),
        el('td', { text: k.read_only ? 'config (read-only)' : k.status }),
        el('td', { text: limits || 'default' }),
        el('td', { text: (k.allowed_models || []).join(', ') || 'all' }),
        el('td', {}, [budgetBar('daily', spend.today_usd || 0, k.daily_budget_usd)]),
        el('td', {}, [budgetBar('monthly', spend.month_usd || 0, k.monthly_budget_usd)]),
        el('td', {}, actions),
      ]);
    });
    $('keys').tBodies[0].replaceChildren(...rows);
  }

  // ---------- spend charts: stacked bars per day ----------
  function stacked(svg, legend, rows, dim, names) {
    const wrap = svg.parentNode, W = wrap.clientWidth || 600, H = wrap.clientHeight || 220;
    const today = Math.floor(Date.now() / 86400000);
    const days = Array.from({ length: DAYS }, (_, i) => new Date((today - DAYS + 1 + i) * 86400000).toISOString().slice(0, 10));
    const series = [...new Set(rows.map((r) => r[dim]))].sort();
    const color = (s) => COLORS[series.indexOf(s) % COLORS.length];
    const totals = days.map((d) => rows.filter((r) => r.day === d).reduce((t, r) => t + (r.cost_usd || 0), 0));
    const max = Math.max(...totals, 1e-9);
    const ml = 56, mb = 22, mt = 8, iw = W - ml - 8, ih = H - mt - mb, bw = iw / DAYS;
    const kids = [];
    for (let i = 0; i <= 4; i++) {
      const y = mt + ih - (i / 4) * ih;
      kids.push(sv('line', { class: 'gl', x1: ml, x2: ml + iw, y1: y, y2: y }), sv('text', { x: ml - 6, y: y + 4, 'text-anchor': 'end' }, usd((max * i) / 4)));
    }
    let bars = 0;
    days.forEach((d, i) => {
      let y = mt + ih;
      for (const s of series) {
        const v = rows.filter((r) => r.day === d && r[dim] === s).reduce((t, r) => t + (r.cost_usd || 0), 0);
        if (!(v > 0)) continue;
        const h = Math.max((v / max) * ih, 1); y -= h; bars++;
        const rect = sv('rect', { x: ml + i * bw + 2, y, width: Math.max(bw - 4, 1), height: h, fill: color(s), 'data-series': s, 'data-day': d, 'data-usd': String(v) });
        rect.append(sv('title', {}, `${d} ${names(s)}: ${usd(v)}`));
        kids.push(rect);
      }
      if (i % Math.ceil(DAYS / 7) === 0) kids.push(sv('text', { x: ml + i * bw + bw / 2, y: H - 6, 'text-anchor': 'middle' }, d.slice(5)));
    });
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('data-bars', String(bars));
    svg.replaceChildren(...kids);
    legend.replaceChildren(...series.map((s) => {
      const li = el('li', { 'data-series': s, text: names(s) });
      li.style.setProperty('--c', color(s));
      return li;
    }));
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const from = new Date(Date.now() - (DAYS - 1) * 86400000).toISOString().slice(0, 10);
      const [list, byKey, byModel] = await Promise.all([
        api('GET', '/admin/keys'),
        api('GET', `/admin/usage?from=${from}&group=day,key`),
        api('GET', `/admin/usage?from=${from}&group=day,model`),
      ]);
      keys = list.data || [];
      renderKeys();
      const name = new Map(keys.map((k) => [k.id, k.name]));
      stacked($('spend-by-key'), $('spend-by-key-legend'), byKey.data || [], 'key', (s) => name.get(s) || s);
      stacked($('spend-by-model'), $('spend-by-model-legend'), byModel.data || [], 'model', (s) => s || '(none)');
      $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
      body.dataset.state = 'live';
      banner('');
    } catch (e) {
      body.dataset.state = 'offline';
      banner('Could not load the keys: ' + e.message);
    }
    timer = setTimeout(refresh, POLL_MS);
  }

  const numberOr = (v) => (v === '' || v == null ? null : Number(v));
  $('create-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const fields = { name: $('new-name').value.trim() };
    const daily = numberOr($('new-daily').value), monthly = numberOr($('new-monthly').value), rpm = numberOr($('new-rpm').value);
    if (daily !== null) fields.daily_budget_usd = daily;
    if (monthly !== null) fields.monthly_budget_usd = monthly;
    if (rpm !== null) fields.limits = { requests_per_minute: rpm };
    const models = $('new-models').value.split(',').map((m) => m.trim()).filter(Boolean);
    if (models.length) fields.allowed_models = models;
    try {
      const made = await api('POST', '/admin/keys', fields);
      $('secret-value').textContent = made.key;
      $('secret').hidden = false;
      $('secret').setAttribute('data-key-id', made.id);
      ev.target.reset();
      await refresh();
    } catch (e) { banner('Not created: ' + e.message); }
  });

  $('keys').addEventListener('click', async (ev) => {
    const button = ev.target.closest('button[data-action]');
    if (!button) return;
    const key = keys.find((k) => k.id === button.dataset.id);
    if (!key) return;
    if (button.dataset.action === 'revoke') {
      if (!window.confirm(`Revoke ${key.name}? Every replica refuses it within a second.`)) return;
      try { await api('DELETE', `/admin/keys/${encodeURIComponent(key.id)}`); await refresh(); } catch (e) { banner('Not revoked: ' + e.message); }
    } else {
      editing = key;
      $('edit-name').textContent = key.name;
      $('edit-daily').value = key.daily_budget_usd ?? '';
      $('edit-monthly').value = key.monthly_budget_usd ?? '';
      $('edit-rpm').value = (key.limits || {}).requests_per_minute ?? '';
      $('edit-tpd').value = (key.limits || {}).tokens_per_day ?? '';
      $('edit').showModal();
    }
  });

  $('edit').addEventListener('close', async () => {
    if ($('edit').returnValue !== 'save' || !editing) return;
    const limits = Object.assign({}, editing.limits || {});
    const rpm = numberOr($('edit-rpm').value), tpd = numberOr($('edit-tpd').value);
    if (rpm === null) delete limits.requests_per_minute; else limits.requests_per_minute = rpm;
    if (tpd === null) delete limits.tokens_per_day; else limits.tokens_per_day = tpd;
    const fields = { daily_budget_usd: numberOr($('edit-daily').value), monthly_budget_usd: numberOr($('edit-monthly').value), limits };
    try { await api('PATCH', `/admin/keys/${encodeURIComponent(editing.id)}`, fields); await refresh(); } catch (e) { banner('Not saved: ' + e.message); }
    editing = null;
  });

  refresh();
})();
