#!/usr/bin/env node
// Drives groxy's keys page (/dashboard/keys) in headless Chromium: creates a key with the form
// (its secret shown once), uses it, sees its spend in the budget bar and the spend chart, edits
// its budget, revokes it, and checks the config key is read-only.
//
//   node keys_check.mjs --url http://127.0.0.1:PORT --admin-key KEY --screenshot out.png
//        [--chromium /usr/bin/chromium] [--timeout-ms 20000]
//
// Prints one JSON line ({"ok": true, ...} or {"ok": false, "failures": [...]}); exit 0 on success.
import { chromium } from 'playwright-core';

function parseArgs(argv) {
  const out = { chromium: '/usr/bin/chromium', 'timeout-ms': '20000' };
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['url', 'admin-key', 'screenshot']) if (!out[k]) throw new Error(`--${k} is required`);
  return out;
}

const args = parseArgs(process.argv.slice(2));
const base = args.url.replace(/\/+$/, '');
const timeout = Number(args['timeout-ms']);
const failures = [];
const report = {};
const check = (cond, msg) => { if (!cond) failures.push(msg); return !!cond; };

async function chat(key, model) {
  const r = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'Say hi' }], max_completion_tokens: 50 }),
  });
  await r.arrayBuffer();
  return r.status;
}

const browser = await chromium.launch({
  executablePath: args.chromium, headless: true,
  args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', '--font-render-hinting=none'],
});
try {
  const ctx = await browser.newContext({
    httpCredentials: { username: 'admin', password: args['admin-key'] },
    viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1,
  });
  const page = await ctx.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`); });
  page.on('dialog', (d) => d.accept());
  const resp = await page.goto(`${base}/dashboard/keys`, { waitUntil: 'load', timeout });
  check(resp && resp.status() === 200, `GET /dashboard/keys gave ${resp && resp.status()}`);
  await page.waitForFunction(() => document.body.dataset.state === 'live', null, { timeout });

  // The config key: listed, read-only, no buttons.
  const alice = await page.evaluate(() => {
    const tr = document.querySelector('#keys tr[data-name="alice"]');
    return tr && { source: tr.dataset.source, buttons: tr.querySelectorAll('button').length };
  });
  check(alice && alice.source === 'config' && alice.buttons === 0, `config key row: ${JSON.stringify(alice)}`);

  // Create with the form: the secret is shown once.
  await page.fill('#new-name', 'dora');
  await page.fill('#new-daily', '0.5');
  await page.fill('#new-models', 'openai/*');
  await page.click('#create');
  await page.waitForSelector('#secret:not([hidden])', { timeout });
  const secret = await page.textContent('#secret-value');
  const id = await page.getAttribute('#secret', 'data-key-id');
  report.key_id = id;
  check(/^gxy_[0-9a-f]{64}$/.test(secret || ''), `secret shown: ${secret}`);
  await page.waitForSelector(`#keys tr[data-key-id="${id}"][data-status="active"]`, { timeout });
  check(await page.getAttribute(`#keys tr[data-key-id="${id}"] .budget[data-period="daily"]`, 'data-limit') === '0.5', 'daily budget bar shows $0.5');
  const listed = await page.textContent('#keys');
  check(!listed.includes(secret.slice(12)), 'the list never shows the secret');

  // Use it: its spend reaches the budget bar and the chart per key.
  check(await chat(secret, 'openai/gpt-oss-20b') === 200, 'the new key works');
  check(await chat(secret, 'openai/gpt-oss-120b') === 200, 'the new key works on another allowed model');
  check(await chat(secret, 'qwen/qwen3.8-27b') === 403, 'a model outside its list is 403');
  try {
    await page.waitForFunction((id) => {
      const bar = document.querySelector(`#keys tr[data-key-id="${id}"] .budget[data-period="daily"]`);
      return bar && Number(bar.dataset.spent) > 0 && document.querySelector(`#spend-by-key rect[data-series="${id}"]`);
    }, id, { timeout });
  } catch { failures.push('the spend of the new key never showed in its budget bar and the chart'); }
  report.spent_usd = Number(await page.getAttribute(`#keys tr[data-key-id="${id}"] .budget[data-period="daily"]`, 'data-spent'));
  report.model_series = await page.evaluate(() => [...document.querySelectorAll('#spend-by-model-legend li')].map((li) => li.dataset.series));
  check(report.model_series.includes('openai/gpt-oss-120b'), `spend per model lists the models: ${report.model_series}`);

  // Edit its budget in the dialog.
  await page.click(`#keys button[data-action="edit"][data-id="${id}"]`);
  await page.fill('#edit-daily', '0.25');
  await page.click('#edit-save');
  try {
    await page.waitForSelector(`#keys tr[data-key-id="${id}"] .budget[data-period="daily"][data-limit="0.25"]`, { timeout });
  } catch { failures.push('the edited budget never showed'); }

  await page.screenshot({ path: args.screenshot, fullPage: true });

  // Revoke (the confirm dialog is accepted): the row says so and the key stops working.
  await page.click(`#keys button[data-action="revoke"][data-id="${id}"]`);
  try {
    await page.waitForSelector(`#keys tr[data-key-id="${id}"][data-status="revoked"]`, { timeout });
  } catch { failures.push('the revoked key never showed as revoked'); }
  check(await chat(secret, 'openai/gpt-oss-20b') === 401, 'the revoked key is refused');
  check(pageErrors.length === 0, `page errors: ${pageErrors.join('; ')}`);
} catch (e) {
  failures.push(`error: ${e && e.stack || e}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify({ ok: failures.length === 0, failures, ...report }));
process.exit(failures.length === 0 ? 0 : 1);
