// Headless Chromium (Debian's, through playwright-core) on the page
// examples/pingpong serves: load it, connect, send ping from the page and
// see the pong in #log; broadcast from the page; show a broadcast sent by
// another client; disconnect.
//
// Usage: node browser.js http://127.0.0.1:PORT/ DEVICE_ID
// Prints one line per step ("step NAME") for the driving test, which sends
// a broadcast from its own client after "step waiting-for-peer". Exits 0 on
// success, 1 with the reason otherwise. Capped at 40 s overall.
'use strict';
const { chromium } = require('playwright-core');

const [url, device] = process.argv.slice(2);
const STEP_MS = 10000;
let browser = null;

const deadline = setTimeout(async () => {
  console.error('browser: timed out');
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}, 40000);

function step(name) {
  console.log(`step ${name}`);
}

// Waits until some li.msg in #log has exactly this text (or contains it).
function logHas(page, text, exact = true) {
  return page.waitForFunction(
    ([t, ex]) => Array.from(document.querySelectorAll('#log li.msg'))
      .some((li) => (ex ? li.textContent === t : li.textContent.includes(t))),
    [text, exact], { timeout: STEP_MS });
}

function statusIs(page, text) {
  return page.waitForFunction(
    (t) => document.getElementById('status').textContent === t,
    text, { timeout: STEP_MS });
}

(async () => {
  if (!url || !device) {
    console.error('usage: node browser.js URL DEVICE_ID');
    process.exit(2);
  }
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    chromiumSandbox: false,
    timeout: 30000,
    // What Debian's chromium needs on a closed network as root.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update',
      '--disable-sync'],
  });
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });

  const resp = await page.goto(url, { waitUntil: 'load', timeout: STEP_MS });
  if (!resp || resp.status() !== 200) throw new Error(`GET ${url}: ${resp && resp.status()}`);
  await statusIs(page, 'disconnected');
  const random = await page.inputValue('#device');
  if (!/^[0-9a-f]{8}$/.test(random)) throw new Error(`default device id ${random}`);
  step('loaded');

  await page.fill('#device', device);
  await page.click('#connect');
  await statusIs(page, 'connected');
  step('connected');

  await page.click('#preset-ping');
  await page.click('#send');
  await logHas(page, '{"action":"pong","data":""}');
  step('pong');

  await page.click('#preset-echo');
  await page.click('#send');
  await logHas(page, '{"action":"echo","data":{"hello":"world"}}');
  step('echo');

  await page.click('#preset-broadcast');
  await page.click('#send');
  await logHas(page, '{"action":"bc","data":"hello, everyone"}');
  step('broadcast');

  await page.fill('#input', 'not json');
  await page.click('#send');
  await logHas(page, '"code":"invalid_json"', false);
  step('error-reply');

  step('waiting-for-peer');
  await logHas(page, '{"action":"bc","data":"from the python client"}');
  step('peer');

  await page.click('#disconnect');
  await statusIs(page, 'closed 1000');
  step('disconnected');

  if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
  await browser.close();
  browser = null;
  clearTimeout(deadline);
  step('done');
})().catch(async (e) => {
  console.error(`browser: ${e.stack || e}`);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
});
