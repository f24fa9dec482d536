#!/usr/bin/env node
// Drives the groxy dashboard in headless Chromium and checks it shows the traffic that was sent.
//
//   node dashboard_check.mjs --url http://127.0.0.1:PORT --admin-key KEY --expect expect.json \
//        --screenshot out.png [--phone-screenshot phone.png] [--chromium /usr/bin/chromium]
//        [--color-scheme light|dark] [--timeout-ms 20000]
//
// expect.json: {"min_total_requests": N, "keys": [..], "models": [..], "recent_min_rows": N,
//               "request_ids": [..], "statuses": [200, 429], "cache_hit": true}   (every field optional)
// Order: the credentialed checks first, then the refusals (7 failed auths in all, which groxy's
// per-address auth.failures_per_minute throttle must allow). Needs chromium (setup.sh installs it).
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "failures": [...], ...}); exit 0 on success, 1 otherwise.
import { readFileSync, writeFileSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';

function parseArgs(argv) {
  const out = { chromium: '/usr/bin/chromium', 'color-scheme': 'light', 'timeout-ms': '20000' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) out[a.slice(2, eq)] = a.slice(eq + 1);
    else if (i + 1 < argv.length) out[a.slice(2)] = argv[++i];
    else throw new Error(`missing value for ${a}`);
  }
  for (const k of ['url', 'admin-key', 'expect', 'screenshot']) if (!out[k]) throw new Error(`--${k} is required`);
  return out;
}

const failures = [];
const saw = {};
function check(cond, msg) { if (!cond) failures.push(msg); return !!cond; }

// Not blank: enough distinct colours and no single colour covering (nearly) everything.
function blankness(pngBytes) {
  const png = PNG.sync.read(pngBytes);
  const counts = new Map();
  const d = png.data;
  for (let i = 0; i < d.length; i += 4) {
    const c = ((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]) >>> 0;
    counts.set(c, (counts.get(c) || 0) + 1);
  }
  const total = png.width * png.height;
  const top = Math.max(...counts.values());
  return { width: png.width, height: png.height, distinct_colours: counts.size, top_colour_share: +(top / total).toFixed(4) };
}

// Everything the page exposes through its stable hooks.
function readDom() {
  const q = (s) => document.querySelector(s);
  const attr = (s, a) => { const e = q(s); return e ? e.getAttribute(a) : null; };
  const numOrNull = (v) => (v === null || v === '' ? null : Number(v));
  const bars = (s, a) => [...document.querySelectorAll(`${s} [${a}]`)].map((e) => ({
    name: e.getAttribute(a), tokens: Number(e.getAttribute('data-tokens')), width: e.querySelector('.track')?.getBoundingClientRect().width ?? 0,
    filled: [...e.querySelectorAll('.track > *')].reduce((w, x) => w + x.getBoundingClientRect().width, 0),
  }));
  const rows = [...document.querySelectorAll('#recent-requests tbody tr[data-request-id]')].map((tr) => ({
    id: tr.getAttribute('data-request-id'), status: Number(tr.getAttribute('data-status')), cache: tr.getAttribute('data-cache'),
    text: [...tr.cells].map((c) => c.textContent.trim()),
  }));
  const paths = [...document.querySelectorAll('#requests-chart path.ln')].map((p) => ({
    series: p.getAttribute('data-series'), d_len: (p.getAttribute('d') || '').length,
  }));
  return {
    state: document.body.dataset.state,
    chart_points: numOrNull(attr('#requests-chart', 'data-points')),
    chart_total_requests: numOrNull(attr('#requests-chart', 'data-total-requests')),
    chart_paths: paths,
    tokens_by_key: bars('#tokens-by-key', 'data-key'),
    tokens_by_model: bars('#tokens-by-model', 'data-model'),
    recent: rows,
    cache_hit_ratio: numOrNull(attr('#cache-hit-ratio', 'data-value')),
    cache_hit_ratio_text: q('#cache-hit-ratio .v')?.textContent ?? null,
    rate_limited: numOrNull(attr('#rate-limited', 'data-value')),
    active_streams: numOrNull(attr('#active-streams', 'data-value')),
    latency: {
      p50_ms: numOrNull(attr('#latency', 'data-p50-ms')), p99_ms: numOrNull(attr('#latency', 'data-p99-ms')),
      overhead_p50_ms: numOrNull(attr('#latency', 'data-overhead-p50-ms')), overhead_p99_ms: numOrNull(attr('#latency', 'data-overhead-p99-ms')),
      text: q('#latency')?.innerText.replace(/\s+/g, ' ').trim() ?? null,
    },
    budget_rows: document.querySelectorAll('#upstream-budget tbody tr[data-key]').length,
    banner: q('#banner') && !q('#banner').hidden ? q('#banner').textContent : null,
    scroll_width: document.documentElement.scrollWidth,
    inner_width: window.innerWidth,
  };
}

// Compare what the page shows with expect.json; returns a list of mismatches.
function compare(dom, exp) {
  const f = [];
  if (dom.state !== 'live') f.push(`page state is ${dom.state}, not live${dom.banner ? ` (${dom.banner})` : ''}`);
  if (!(dom.chart_points > 0)) f.push(`requests chart has ${dom.chart_points} points`);
  if (!dom.chart_paths.some((p) => p.series === 'requests_per_second' && p.d_len > 10)) f.push('requests chart has no drawn requests/s line');
  if (!dom.chart_paths.some((p) => p.series === 'error_rate')) f.push('requests chart has no error-rate line');
  if (exp.min_total_requests != null && !(dom.chart_total_requests >= exp.min_total_requests))
    f.push(`requests chart total ${dom.chart_total_requests} < ${exp.min_total_requests}`);
  for (const [list, bars, what] of [[exp.keys, dom.tokens_by_key, 'key'], [exp.models, dom.tokens_by_model, 'model']]) {
    for (const name of list || []) {
      const b = bars.find((x) => x.name === name);
      if (!b) f.push(`no tokens bar for ${what} ${JSON.stringify(name)} (have ${JSON.stringify(bars.map((x) => x.name))})`);
      else if (!(b.tokens > 0)) f.push(`tokens bar for ${what} ${JSON.stringify(name)} shows ${b.tokens} tokens`);
      else if (!(b.filled > 0)) f.push(`tokens bar for ${what} ${JSON.stringify(name)} is not drawn`);
    }
  }
  if (exp.recent_min_rows != null && dom.recent.length < exp.recent_min_rows)
    f.push(`last-requests table has ${dom.recent.length} rows < ${exp.recent_min_rows}`);
  const ids = new Set(dom.recent.map((r) => r.id));
  for (const id of exp.request_ids || []) if (!ids.has(id)) f.push(`request id ${id} not in the last-requests table`);
  const statuses = new Set(dom.recent.map((r) => r.status));
  for (const s of exp.statuses || []) if (!statuses.has(Number(s))) f.push(`status ${s} not in the last-requests table (have ${[...statuses].join(',')})`);
  if (exp.cache_hit) {
    if (!dom.recent.some((r) => r.cache === 'HIT' && r.text.includes('HIT'))) f.push('no cache HIT row in the last-requests table');
    if (!(dom.cache_hit_ratio > 0)) f.push(`cache hit ratio is ${dom.cache_hit_ratio}, expected > 0`);
  }
  return f;
}

async function statusOf(url, headers) {
  const r = await fetch(url, { headers, redirect: 'manual' });
  await r.arrayBuffer();
  return r.status;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const base = args.url.replace(/\/+$/, '');
  const origin = new URL(base).origin;
  const key = args['admin-key'];
  const exp = JSON.parse(readFileSync(args.expect, 'utf8'));
  const timeout = Number(args['timeout-ms']);
  const basic = (u, p) => 'Basic ' + Buffer.from(`${u}:${p}`).toString('base64');

  const wrong = key + '-wrong';
  // (a) refused without the admin key. Every refusal spends one of groxy's per-address auth
  // failures (auth.failures_per_minute, then 429), so they run after the real check and stay few:
  // 3 plain requests + 3 from the browser (+1 challenge before the credentialed load).
  async function refusals(browser) {
    const plain = {
      no_auth_dashboard: await statusOf(`${base}/dashboard`, {}),
      wrong_basic_dashboard: await statusOf(`${base}/dashboard`, { Authorization: basic('admin', wrong) }),
      wrong_bearer_stats: await statusOf(`${base}/admin/stats`, { Authorization: `Bearer ${wrong}` }),
    };
    saw.plain_http = plain;
    const hint = (v) => (v === 429 ? ' (429: the auth-failure throttle; raise auth.failures_per_minute for this test)' : '');
    for (const [k, v] of Object.entries(plain)) check(v === 401, `${k.replace(/_/g, ' ')} gave HTTP ${v}, expected 401${hint(v)}`);
    // ... and in the browser: with no credentials Chromium sees the 401 challenge and gives up
    // (net::ERR_INVALID_AUTH_CREDENTIALS), with a wrong key it ends on the 401 page. Neither renders the dashboard.
    for (const [name, creds] of [['no_credentials', undefined], ['wrong_key', { username: 'admin', password: wrong }]]) {
      const c = await browser.newContext(creds ? { httpCredentials: creds } : {});
      const p = await c.newPage();
      let seen = null;
      p.on('response', (r) => { if (r.url() === `${base}/dashboard` && seen === null) seen = r.status(); });
      let final = null, err = null;
      try { const r = await p.goto(`${base}/dashboard`, { waitUntil: 'domcontentloaded', timeout }); final = r && r.status(); }
      catch (e) { err = String(e.message).split('\n')[0]; }
      const rendered = await p.evaluate(() => !!document.getElementById('requests-chart')).catch(() => false);
      saw[`browser_${name}`] = { first_status: seen, final_status: final, error: err };
      check(seen === 401, `browser with ${name.replace('_', ' ')} got HTTP ${seen} for /dashboard, expected 401${hint(seen)}`);
      check(final === null || final === 401, `browser with ${name.replace('_', ' ')} ended on HTTP ${final}`);
      check(err === null || /ERR_INVALID_AUTH_CREDENTIALS/.test(err), `browser with ${name.replace('_', ' ')}: ${err}`);
      check(!rendered, `browser with ${name.replace('_', ' ')} rendered the dashboard`);
      await c.close();
    }
  }

  saw.bearer_dashboard = await statusOf(`${base}/dashboard`, { Authorization: `Bearer ${key}` });
  check(saw.bearer_dashboard === 200, `GET /dashboard with the admin key as Bearer gave ${saw.bearer_dashboard}, expected 200`);

  const browser = await chromium.launch({
    executablePath: args.chromium, headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--font-render-hinting=none'],
  });
  try {
    // (b) with the admin key as Basic credentials.
    const ctx = await browser.newContext({
      httpCredentials: { username: 'admin', password: key },
      viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1, colorScheme: args['color-scheme'],
    });
    const pageErrors = [];
    const foreign = new Set();
    const badResponses = [];
    ctx.on('request', (r) => { const u = new URL(r.url()); if (!['data:', 'blob:'].includes(u.protocol) && u.origin !== origin) foreign.add(r.url()); });
    ctx.on('response', (r) => { if (r.status() >= 400) badResponses.push(`${r.status()} ${r.url()}`); });
    const page = await ctx.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
    const resp = await page.goto(`${base}/dashboard`, { waitUntil: 'load', timeout });
    check(resp && resp.status() === 200, `GET /dashboard with credentials gave HTTP ${resp && resp.status()}`);
    try {
      await page.waitForFunction(() => document.body.dataset.state === 'live', null, { timeout });
    } catch {
      failures.push(`page never reached state "live" (state=${await page.evaluate(() => document.body.dataset.state)}, banner=${JSON.stringify(await page.evaluate(() => document.querySelector('#banner')?.textContent))})`);
    }

    // The page refreshes every 2 s: give late traffic a few refreshes to show up.
    let dom = await page.evaluate(readDom);
    let mism = compare(dom, exp);
    const deadline = Date.now() + Math.min(timeout, 12000);
    while (mism.length && dom.state === 'live' && Date.now() < deadline) {
      await page.waitForTimeout(500);
      dom = await page.evaluate(readDom);
      mism = compare(dom, exp);
    }
    failures.push(...mism);
    check(dom.budget_rows >= 0, 'upstream budget table missing');
    saw.desktop = {
      state: dom.state, chart_points: dom.chart_points, chart_total_requests: dom.chart_total_requests,
      tokens_by_key: Object.fromEntries(dom.tokens_by_key.map((b) => [b.name, b.tokens])),
      tokens_by_model: Object.fromEntries(dom.tokens_by_model.map((b) => [b.name, b.tokens])),
      recent_rows: dom.recent.length, recent_statuses: [...new Set(dom.recent.map((r) => r.status))].sort((a, b) => a - b),
      recent_cache: [...new Set(dom.recent.map((r) => r.cache).filter(Boolean))].sort(),
      cache_hit_ratio: dom.cache_hit_ratio, rate_limited: dom.rate_limited, active_streams: dom.active_streams,
      latency: dom.latency, budget_rows: dom.budget_rows,
    };
    check(dom.scroll_width <= dom.inner_width + 1, `desktop page overflows horizontally (${dom.scroll_width} > ${dom.inner_width})`);

    // (c) screenshot, not blank.
    const shot = await page.screenshot({ fullPage: true });
    writeFileSync(args.screenshot, shot);
    saw.screenshot = { path: args.screenshot, ...blankness(shot) };
    check(saw.screenshot.distinct_colours >= 20, `screenshot has only ${saw.screenshot.distinct_colours} distinct colours`);
    check(saw.screenshot.top_colour_share < 0.95, `screenshot is ${(saw.screenshot.top_colour_share * 100).toFixed(1)}% one colour`);

    // Phone size: same data, no horizontal overflow of the page itself.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(300);
    await page.waitForFunction(() => document.body.dataset.state === 'live', null, { timeout }).catch(() => {});
    const phone = await page.evaluate(readDom);
    saw.phone = { scroll_width: phone.scroll_width, inner_width: phone.inner_width, recent_rows: phone.recent.length };
    check(phone.scroll_width <= phone.inner_width + 1, `phone-size page overflows horizontally (${phone.scroll_width} > ${phone.inner_width})`);
    if (args['phone-screenshot']) {
      const ps = await page.screenshot({ fullPage: true });
      writeFileSync(args['phone-screenshot'], ps);
      saw.phone.screenshot = { path: args['phone-screenshot'], ...blankness(ps) };
    }

    check(pageErrors.length === 0, `page errors (${pageErrors.length}): ${[...new Set(pageErrors)].slice(0, 3).join(' | ').slice(0, 600)}`);
    check(foreign.size === 0, `page loaded resources from other origins: ${[...foreign].join(', ')}`);
    check(badResponses.length === 0, `failed responses while the page ran: ${badResponses.slice(0, 5).join(', ')}`);
    await ctx.close();

    await refusals(browser);
  } finally {
    await browser.close();
  }
}

main().then(
  () => {
    if (failures.length) {
      console.log(JSON.stringify({ ok: false, failures, saw }));
      process.exit(1);
    }
    console.log(JSON.stringify({ ok: true, saw }));
    process.exit(0);
  },
  (e) => {
    console.log(JSON.stringify({ ok: false, failures: [...failures, `error: ${e && e.stack ? e.stack : e}`], saw }));
    process.exit(1);
  },
);
