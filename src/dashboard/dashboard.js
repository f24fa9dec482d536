// groxy dashboard: polls /admin/stats every 2 s and renders it. No dependencies.
// Text from the JSON only ever goes through textContent / setAttribute, never innerHTML.
(() => {
  'use strict';
  const POLL_MS = 2000, STALE_MS = 7000, TIMEOUT_MS = 5000, NS = 'http://www.w3.org/2000/svg';
  const $ = (id) => document.getElementById(id), body = document.body;
  let last = null, lastOk = 0, seen = null, stopped = false, timer = 0;

  // ---------- formatting ----------
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  const str = (v) => (v == null ? null : String(v));
  const trim = (s) => (s.includes('.') ? s.replace(/\.?0+$/, '') : s);
  const sum = (a, f) => a.reduce((t, x) => t + (num(f(x)) || 0), 0);
  function fmt(v) {
    v = num(v); if (v === null) return '—';
    let a = Math.abs(v), i = 0;
    if (a < 1000) return a >= 100 || Number.isInteger(v) ? String(Math.round(v)) : trim(v.toFixed(a < 10 ? 2 : 1));
    while (a >= 999.5 && i < 4) { a /= 1000; v /= 1000; i++; }
    return (a >= 100 ? String(Math.round(v)) : trim(v.toFixed(1))) + ['', 'k', 'M', 'B', 'T'][i];
  }
  const fmtInt = (v) => (num(v) === null ? '—' : Math.round(v).toLocaleString());
  function fmtMs(v) {
    v = num(v); if (v === null) return '—';
    if (v >= 1000) return trim((v / 1000).toFixed(v >= 10000 ? 0 : 2)) + ' s';
    return (v === 0 ? '0' : v < 1 ? v.toFixed(2) : v < 10 ? v.toFixed(1) : String(Math.round(v))) + ' ms';
  }
  const fmtPct = (v, d = 1) => (num(v) === null ? '—' : ((v *= 100) === 0 || v >= 99.95 ? String(Math.round(v)) : v.toFixed(d)) + '%');
  function fmtDur(s) {
    s = num(s); if (s === null) return '—';
    if (s < 10) return trim(s.toFixed(1)) + 's';
    if (s < 60) return Math.round(s) + 's';
    const m = Math.floor(s / 60), h = Math.floor(m / 60), p = (x) => String(x).padStart(2, '0');
    return m < 60 ? `${m}m ${p(Math.floor(s % 60))}s` : h < 48 ? `${h}h ${p(m % 60)}m` : `${Math.floor(h / 24)}d ${h % 24}h`;
  }
  const clock = (t, sec) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: sec ? '2-digit' : undefined });
  const label = (s) => String(s).replace(/_per_minute$/, '/min').replace(/_/g, ' ');

  // ---------- DOM helpers ----------
  function el(tag, attrs, kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v; else if (k === 'text') e.textContent = v;
      else if (k === 'style') Object.assign(e.style, v); // CSSOM, allowed by the CSP (style-src 'self')
      else e.setAttribute(k, v);
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
  const setText = (id, t) => { $(id).textContent = t; };
  const kv = (k, v) => el('span', {}, [k + ' ', el('b', { text: v })]);
  const tag = (text, cls) => el('span', { class: 'tag' + (cls ? ' ' + cls : ''), text });
  function card(id, value, sub, cls, dataValue) {
    const c = $(id), s = c.querySelector('.sub');
    c.querySelector('.v').textContent = value;
    s.replaceChildren(...sub.filter(Boolean));
    c.classList.remove('bad', 'warn'); if (cls) c.classList.add(cls);
    c.setAttribute('data-value', num(dataValue) === null ? '' : dataValue);
  }

  // ---------- line charts (inline SVG) ----------
  function niceMax(v, min) {
    v = Math.max(v || 0, min); const e = 10 ** Math.floor(Math.log10(v)), f = v / e;
    return [1, 1.2, 1.6, 2, 2.4, 3, 4, 5, 6, 8, 10].find((c) => f <= c + 1e-9) * e;
  }
  // spec: {ts, bucket, lines: [{name, cls, values, right, area}], lmin, rmin, lfmt, rfmt, tip(i) -> [lines]}
  function lineChart(svg, spec) {
    const wrap = svg.parentNode, W = wrap.clientWidth, H = wrap.clientHeight;
    if (!W || !H) return;
    const hasRight = spec.lines.some((l) => l.right);
    const ml = 44, mr = hasRight ? 44 : 8, mt = 8, mb = 22, iw = Math.max(W - ml - mr, 10), ih = Math.max(H - mt - mb, 10);
    const ts = spec.ts, n = ts.length, t0 = n ? ts[0] : 0, t1 = n > 1 ? ts[n - 1] : t0 + spec.bucket;
    const top = (right) => Math.max(0, ...spec.lines.filter((l) => !!l.right === right).flatMap((l) => l.values.map((v) => v || 0)));
    const lmax = niceMax(top(false), spec.lmin), rmax = niceMax(top(true), spec.rmin || 1);
    const x = (t) => ml + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * iw;
    const y = (v, right) => mt + ih - (v / (right ? rmax : lmax)) * ih;
    const kids = [];
    for (let i = 0; i <= 4; i++) {
      const gy = mt + ih - (i / 4) * ih;
      kids.push(sv('line', { class: 'gl', x1: ml, x2: ml + iw, y1: gy, y2: gy }),
        sv('text', { x: ml - 6, y: gy + 4, 'text-anchor': 'end' }, spec.lfmt((lmax * i) / 4)));
      if (hasRight) kids.push(sv('text', { x: ml + iw + 6, y: gy + 4 }, spec.rfmt((rmax * i) / 4)));
    }
    const step = t1 - t0 > 1800 ? 900 : iw < 260 ? 600 : 300;
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
      const gx = x(t);
      kids.push(sv('line', { class: 'gl', x1: gx, x2: gx, y1: mt, y2: mt + ih }),
        sv('text', { x: gx, y: H - 6, 'text-anchor': gx > ml + iw - 28 ? 'end' : gx < ml + 28 ? 'start' : 'middle' }, clock(t)));
    }
    for (const l of spec.lines) {
      let d = '', dots = '', pen = false, first = null, lastX = 0;
      l.values.forEach((v, i) => {
        if (v == null) { pen = false; return; }
        const px = x(ts[i]).toFixed(1), py = y(v, l.right).toFixed(1);
        d += (pen ? 'L' : 'M') + px + ' ' + py; pen = true;
        // A point with no neighbour draws no line: mark it, or a lone busy bucket is invisible.
        if (l.values[i - 1] == null && l.values[i + 1] == null) dots += `M${px} ${py}l0.01 0`;
        if (first === null) first = px; lastX = px;
      });
      if (l.area && first !== null) kids.push(sv('path', { class: 'area', d: `${d}L${lastX} ${mt + ih}L${first} ${mt + ih}Z` }));
      kids.push(sv('path', { class: 'ln ' + l.cls, d: d || 'M0 0', 'data-series': l.name, 'data-points': l.values.length }));
      if (dots) kids.push(sv('path', { class: 'ln dot ' + l.cls, d: dots }));
    }
    const cursor = sv('line', { class: 'cursor', x1: 0, x2: 0, y1: mt, y2: mt + ih, visibility: 'hidden' });
    kids.push(cursor);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.replaceChildren(...kids);
    wrap._chart = { x, ml, iw, n, ts, cursor, tip: spec.tip };
    if (wrap._hx !== undefined) hover(wrap);
  }
  function hover(wrap) {
    const c = wrap._chart;
    if (!c || !c.n) return;
    const tip = wrap.querySelector('.tip') || wrap.appendChild(el('div', { class: 'tip' }));
    const i = Math.max(0, Math.min(c.n - 1, Math.round(((wrap._hx - c.ml) / c.iw) * (c.n - 1)))), cx = c.x(c.ts[i]);
    c.cursor.setAttribute('x1', cx); c.cursor.setAttribute('x2', cx); c.cursor.setAttribute('visibility', 'visible');
    tip.replaceChildren(...c.tip(i).map((t) => el('div', { text: t })));
    tip.hidden = false;
    let left = cx + 12; if (left + tip.offsetWidth > wrap.clientWidth) left = cx - 12 - tip.offsetWidth;
    tip.style.left = Math.max(0, left) + 'px';
  }
  function bindHover(wrap) {
    const move = (ev) => { wrap._hx = (ev.touches ? ev.touches[0] : ev).clientX - wrap.getBoundingClientRect().left; hover(wrap); };
    const leave = () => {
      wrap._hx = undefined;
      const t = wrap.querySelector('.tip'); if (t) t.hidden = true;
      if (wrap._chart) wrap._chart.cursor.setAttribute('visibility', 'hidden');
    };
    wrap.addEventListener('mousemove', move); wrap.addEventListener('touchmove', move, { passive: true });
    wrap.addEventListener('mouseleave', leave); wrap.addEventListener('touchend', leave);
  }

  function renderCharts(d) {
    const s = Array.isArray(d.series) ? d.series : [], b = num(d.bucket_seconds) || 10, ts = s.map((p) => p.t);
    const req = s.map((p) => (num(p.requests) || 0) / b), err = s.map((p) => (p.requests ? (num(p.errors) || 0) / p.requests : 0));
    const total = sum(s, (p) => p.requests), errors = sum(s, (p) => p.errors), rc = $('requests-chart');
    rc.setAttribute('data-points', s.length);
    rc.setAttribute('data-total-requests', total);
    lineChart(rc, {
      ts, bucket: b, lmin: 1, rmin: 0.05, lfmt: fmt, rfmt: (v) => fmtPct(v, 0),
      lines: [{ name: 'requests_per_second', cls: 'req', values: req, area: true }, { name: 'error_rate', cls: 'err', values: err, right: true }],
      tip: (i) => [clock(s[i].t, true), `requests/s ${fmt(req[i])} (${fmtInt(s[i].requests)})`,
        `error rate ${fmtPct(err[i])} (${fmtInt(s[i].errors)})`, `rate-limited ${fmtInt(s[i].rate_limited)}`],
    });
    const lc = $('latency-chart');
    lc.setAttribute('data-points', s.length);
    lineChart(lc, {
      ts, bucket: b, lmin: 1, lfmt: (v) => (v >= 1000 ? trim((v / 1000).toFixed(2)) + 's' : trim(v.toFixed(2)) + 'ms'),
      lines: [{ name: 'p99_ms', cls: 'p99', values: s.map((p) => num(p.p99_ms)) }, { name: 'p50_ms', cls: 'p50', values: s.map((p) => num(p.p50_ms)) }],
      tip: (i) => [clock(s[i].t, true), `p50 ${fmtMs(s[i].p50_ms)} · p99 ${fmtMs(s[i].p99_ms)}`,
        `overhead ${fmtMs(s[i].overhead_p50_ms)} · ${fmtMs(s[i].overhead_p99_ms)}`],
    });
    return { s, b, total, errors };
  }

  // ---------- bars, tables ----------
  function renderBars(box, rows, field, attr) {
    rows = (Array.isArray(rows) ? rows : []).map((r) => {
      const p = num(r.prompt_tokens) || 0, c = num(r.completion_tokens) || 0;
      return { name: str(r[field]) ?? '(none)', p, c, t: p + c, n: num(r.requests) || 0 };
    }).sort((a, b) => b.t - a.t || (a.name < b.name ? -1 : 1));
    const max = Math.max(1, ...rows.map((r) => r.t)), w = (v) => ({ width: `${(v / max) * 100}%` });
    box.replaceChildren(...(rows.length ? rows.map((r) => el('div', {
      class: 'bar', [attr]: r.name, 'data-tokens': r.t, 'data-requests': r.n,
      title: `${r.name}: ${fmtInt(r.p)} prompt + ${fmtInt(r.c)} completion tokens, ${fmtInt(r.n)} requests`,
    }, [el('span', { class: 'name', text: r.name }),
      el('span', { class: 'track' }, [el('i', { class: 'p', style: w(r.p) }), el('i', { class: 'c', style: w(r.c) })]),
      el('span', { class: 'n', text: fmt(r.t) })])) : [el('div', { class: 'empty', text: 'No tokens used today' })]));
  }
  const emptyRow = (text) => el('tr', {}, [el('td', { colspan: 7, class: 'empty', text })]);
  function meter(rem, lim) {
    rem = num(rem); lim = num(lim);
    if (rem === null) return '—';
    const r = lim ? rem / lim : 1;
    return el('span', {}, [el('span', { class: 'meter' + (r < 0.1 ? ' bad' : r < 0.3 ? ' warn' : '') },
      [el('i', { style: { width: `${Math.max(0, Math.min(1, r)) * 100}%` } })]), fmt(rem) + (lim === null ? '' : ' / ' + fmt(lim))]);
  }
  function resetIn(d, u, f) {
    const s = num(u[f]), at = num(u.observed_at);
    if (s === null) return '—';
    const left = at === null ? s : at + s - d.now;
    return left <= 0 ? el('span', { class: 'muted', text: 'now' }) : fmtDur(left);
  }
  function renderBudget(d) {
    const rows = Array.isArray(d.upstream_budget) ? d.upstream_budget : [];
    $('upstream-budget').tBodies[0].replaceChildren(...(rows.length ? rows.map((u) => {
      const at = num(u.observed_at);
      return el('tr', { 'data-key': str(u.key) ?? '', 'data-model': str(u.model) ?? '' }, [
        el('td', { text: str(u.key) ?? '—' }), el('td', { text: str(u.model) ?? '—' }),
        el('td', {}, [meter(u.remaining_requests, u.limit_requests)]), el('td', {}, [resetIn(d, u, 'reset_requests_seconds')]),
        el('td', {}, [meter(u.remaining_tokens, u.limit_tokens)]), el('td', {}, [resetIn(d, u, 'reset_tokens_seconds')]),
        el('td', { class: 'muted', text: at === null ? '—' : fmtDur(Math.max(0, d.now - at)) + ' ago' })]);
    }) : [emptyRow('No upstream responses seen yet')]));
  }
  const statusCls = (s) => (s === 429 ? 'warn' : s >= 400 ? 'bad' : s >= 200 && s < 300 ? 'ok' : '');
  const cacheCls = (c) => (c === 'HIT' ? 'ok' : c === 'COALESCED' ? 'info' : '');
  function renderRecent(d) {
    const rows = Array.isArray(d.recent) ? d.recent : [], ids = new Set();
    $('recent-requests').tBodies[0].replaceChildren(...(rows.length ? rows.map((r) => {
      const id = str(r.request_id) ?? '', st = num(r.status), c = str(r.cache), pt = num(r.prompt_tokens), ct = num(r.completion_tokens);
      ids.add(id);
      return el('tr', { 'data-request-id': id, 'data-status': st, 'data-cache': c ?? '', 'data-key': str(r.key), 'data-model': str(r.model),
        class: seen && !seen.has(id) ? 'new' : null }, [
        el('td', { text: num(r.time) === null ? '—' : clock(r.time, true), title: `request id ${id}${r.route ? ' · ' + r.route : ''}` }),
        el('td', { text: str(r.key) ?? '—', class: r.key == null ? 'muted' : null }),
        el('td', { title: str(r.model) }, [str(r.model) ?? '—', r.stream ? tag('stream', 's') : null]),
        el('td', {}, [tag(st === null ? '—' : String(st), statusCls(st))]),
        el('td', { class: 'num', text: fmtMs(r.latency_ms) }),
        el('td', { class: 'num', text: pt === null && ct === null ? '—' : `${fmtInt(pt)} → ${fmtInt(ct)}` }),
        el('td', {}, [c === null ? el('span', { class: 'muted', text: '—' }) : tag(c, cacheCls(c))])]);
    }) : [emptyRow('No requests yet')]));
    seen = ids;
    setText('recent-count', rows.length ? `newest first · ${rows.length} shown` : '');
  }

  function renderCards(d, ch) {
    const t = d.totals || {}, s = ch.s, k = Math.min(6, s.length), er = ch.total ? ch.errors / ch.total : 0;
    card('rps', fmt(k ? sum(s.slice(-k), (p) => p.requests) / (k * ch.b) : 0), [kv('15 min', fmt(ch.total)), kv('total', fmt(t.requests))]);
    card('error-rate', fmtPct(er), [kv('errors', fmtInt(ch.errors)), kv('of', fmtInt(ch.total))], er > 0.05 ? 'bad' : er > 0.01 ? 'warn' : '', er);
    const l = d.latency || {}, lat = $('latency');
    setText('latency-p50', fmtMs(l.p50_ms));
    setText('latency-p99', fmtMs(l.p99_ms));
    setText('latency-overhead', `${fmtMs(l.overhead_p50_ms).replace(' ms', '')} / ${fmtMs(l.overhead_p99_ms)}`);
    setText('latency-window', num(l.window_seconds) ? fmtDur(l.window_seconds).replace(/m 00s$/, ' min') : '');
    for (const f of ['p50_ms', 'p99_ms', 'overhead_p50_ms', 'overhead_p99_ms']) lat.setAttribute('data-' + f.replace(/_/g, '-'), num(l[f]) ?? '');
    const c = d.cache || {};
    card('cache-hit-ratio', fmtPct(c.hit_ratio), [kv('hits', fmt(c.hits)), kv('misses', fmt(c.misses)),
      num(c.coalesced) ? kv('coalesced', fmt(c.coalesced)) : null, kv('bypass', fmt(c.bypass))], '', c.hit_ratio);
    const rl = d.rate_limited || {}, by = rl.by_limit || {}, rlTotal = num(rl.total) ?? num(t.rate_limited) ?? 0;
    const rlSub = Object.keys(by).filter((x) => by[x]).map((x) => kv(label(x), fmt(by[x])));
    card('rate-limited', fmt(rlTotal), rlSub.length ? rlSub : [el('span', { text: 'none since start' })], rlTotal > 0 ? 'warn' : '', rlTotal);
    card('active-streams', fmt(t.active_streams), [kv('in flight', fmt(t.in_flight)), kv('connections', fmt(t.connections))], '', num(t.active_streams) ?? 0);
  }

  function render(d) {
    const ch = renderCharts(d), tt = d.tokens_today || {};
    renderCards(d, ch);
    renderBars($('tokens-by-key'), tt.by_key, 'key', 'data-key');
    renderBars($('tokens-by-model'), tt.by_model, 'model', 'data-model');
    renderBudget(d);
    renderRecent(d);
    setText('version', d.version ? 'v' + d.version : '');
    setText('uptime', num(d.started_at) && num(d.now) ? 'up ' + fmtDur(d.now - d.started_at) : '');
  }

  // ---------- state & polling ----------
  function setState(state, text, banner, warn) {
    body.dataset.state = state;
    setText('conn-text', text);
    const b = $('banner'); b.hidden = !banner; b.textContent = banner || ''; b.classList.toggle('warn', !!warn);
  }
  function tick() {
    if (!lastOk) return;
    const age = (Date.now() - lastOk) / 1000;
    setText('updated', `updated ${clock(lastOk / 1000, true)}${age >= 4 ? ` · ${fmtDur(Math.floor(age))} ago` : ''}`);
    if (body.dataset.state === 'live' && age * 1000 > STALE_MS) setState('stale', 'Stale', `No fresh data for ${fmtDur(Math.floor(age))}; retrying.`, true);
  }
  function failed(why) {
    if (last) setState('stale', 'Stale', `Can't reach groxy (${why}); retrying every 2 s. Showing data from ${clock(lastOk / 1000, true)}.`, true);
    else setState('offline', 'Offline', `Can't load stats from groxy (${why}); retrying every 2 s.`);
  }
  async function poll() {
    timer = 0;
    if (stopped) return;
    if (!document.hidden) {
      const ctl = new AbortController(), to = setTimeout(() => ctl.abort(), TIMEOUT_MS);
      try {
        const r = await fetch('/admin/stats', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' }, signal: ctl.signal });
        if (r.status === 401 || r.status === 403) {
          stopped = true;
          setState('unauthorized', 'Unauthorized', `The admin key was refused (HTTP ${r.status}). Reload the page and sign in with any user name and the admin key as the password.`);
          return;
        }
        if (!r.ok) throw new Error('HTTP ' + r.status);
        const d = await r.json();
        if (!d || typeof d !== 'object') throw new Error('bad JSON');
        last = d;
        try {
          render(d);
          lastOk = Date.now();
          setState('live', 'Live');
          tick();
        } catch (e) {
          console.error(e); setState('error', 'Error', 'Could not render the stats: ' + e.message);
        }
      } catch (e) {
        failed(e.name === 'AbortError' ? 'timed out' : e.message || 'network error');
      } finally {
        clearTimeout(to);
      }
    }
    if (!stopped && !timer) timer = setTimeout(poll, POLL_MS);
  }

  bindHover($('requests-wrap')); bindHover($('latency-wrap'));
  let raf = 0;
  new ResizeObserver(() => { if (!raf) raf = requestAnimationFrame(() => { raf = 0; if (last) renderCharts(last); }); }).observe($('requests-wrap'));
  document.addEventListener('visibilitychange', () => { if (!document.hidden && timer) { clearTimeout(timer); poll(); } });
  setInterval(tick, 1000);
  poll();
})();
