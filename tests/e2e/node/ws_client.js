// A second, independent client for the e2e tier: npm's `ws` against
// examples/pingpong. Usage: node ws_client.js CHECK ws://127.0.0.1:PORT
// CHECK: session | echo | broadcast | replace. Exits 0 and prints
// "ok CHECK" on success; prints the failure and exits 1 otherwise. Every wait
// is bounded, and the whole run is capped at 15 s.
'use strict';
const WebSocket = require('ws');
const assert = require('assert/strict');
const crypto = require('crypto');

const [check, base] = process.argv.slice(2);
const STEP_MS = 5000;

const deadline = setTimeout(() => {
  console.error(`${check}: timed out`);
  process.exit(1);
}, 15000);

function deviceId() {
  return crypto.randomBytes(4).toString('hex');
}

// An open client that queues what it receives, so no message is lost
// between awaits.
function open(id = deviceId()) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${base}/ws?device_id=${id}`);
    ws.inbox = [];
    ws.waiters = [];
    ws.closeCode = null;
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? data : data.toString('utf8');
      const w = ws.waiters.shift();
      if (w) w.resolve(text);
      else ws.inbox.push(text);
    });
    ws.on('close', (code) => {
      ws.closeCode = code;
      for (const w of ws.waiters.splice(0)) w.reject(new Error(`closed ${code}`));
    });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (req, res) =>
      reject(new Error(`HTTP ${res.statusCode}`)));
  });
}

function next(ws) {
  if (ws.inbox.length) return Promise.resolve(ws.inbox.shift());
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message in time')), STEP_MS);
    ws.waiters.push({
      resolve: (v) => { clearTimeout(t); resolve(v); },
      reject: (e) => { clearTimeout(t); reject(e); },
    });
  });
}

function closed(ws) {
  if (ws.closeCode !== null) return Promise.resolve(ws.closeCode);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('not closed in time')), STEP_MS);
    ws.once('close', (code) => { clearTimeout(t); resolve(code); });
  });
}

function shut(...clients) {
  return Promise.all(clients.map((ws) => {
    if (ws.readyState === WebSocket.CLOSED) return null;
    ws.close(1000);
    return closed(ws);
  }));
}

const checks = {
  // The Go model's session.
  async session() {
    const ws = await open();
    for (let i = 0; i < 3; i++) {
      ws.send('{"action":"ping"}');
      assert.equal(await next(ws), '{"action":"pong","data":""}');
    }
    await shut(ws);
  },

  async echo() {
    const ws = await open();
    const texts = [
      '{"action":"echo","data":{"from":"node","list":[1,2,3]}}',
      '{"action":"echo","data":"unicode \u00e9\u2603\ud83d\ude00"}',
      JSON.stringify({ action: 'echo', data: 'z'.repeat(20000) }),
    ];
    for (const t of texts) {
      ws.send(t);
      assert.equal(await next(ws), t);
    }
    await shut(ws);
  },

  // Two clients; each broadcast reaches both, the sender included.
  async broadcast() {
    const a = await open();
    const b = await open();
    for (const ws of [a, b]) { // registered before anyone broadcasts
      ws.send('{"action":"ping"}');
      assert.equal(await next(ws), '{"action":"pong","data":""}');
    }
    a.send('{"action":"broadcast","data":{"from":"a"}}');
    for (const ws of [a, b])
      assert.deepEqual(JSON.parse(await next(ws)), { action: 'bc', data: { from: 'a' } });
    b.send('{"action":"broadcast","data":[1,"b"]}');
    for (const ws of [a, b])
      assert.deepEqual(JSON.parse(await next(ws)), { action: 'bc', data: [1, 'b'] });
    await shut(a, b);
  },

  // Same device id twice: the older gets 4000, the newer keeps working.
  async replace() {
    const id = deviceId();
    const older = await open(id);
    const newer = await open(id);
    assert.equal(await closed(older), 4000);
    newer.send('{"action":"ping"}');
    assert.equal(await next(newer), '{"action":"pong","data":""}');
    await shut(newer);
  },
};

(async () => {
  if (!checks[check] || !base) {
    console.error(`usage: node ws_client.js {${Object.keys(checks).join('|')}} ws://HOST:PORT`);
    process.exit(2);
  }
  await checks[check]();
  clearTimeout(deadline);
  console.log(`ok ${check}`);
})().catch((e) => {
  console.error(`${check}: ${e.stack || e}`);
  process.exit(1);
});
