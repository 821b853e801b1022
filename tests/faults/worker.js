// A lock client of tenure-faults in Node (the same histories as the Rust worker: see
// src/worker.rs). Started by the run as `node worker.js --module DIR --endpoints ...
// --resource ... --id K --ttl-ms T --seed S --names N --log FILE`.
'use strict';
const fs = require('node:fs');
const net = require('node:net');

const argv = process.argv.slice(2);
const a = {};
for (let i = 0; i + 1 < argv.length; i += 2) a[argv[i]] = argv[i + 1];
const tenure = require(a['--module']);
const endpoints = a['--endpoints'].split(',');
const [host, port] = [a['--resource'].slice(0, a['--resource'].lastIndexOf(':')), Number(a['--resource'].slice(a['--resource'].lastIndexOf(':') + 1))];
const id = a['--id'] || '0';
const ttlMs = Number(a['--ttl-ms'] || 1000);
const names = Math.max(1, Number(a['--names'] || 2));
const fd = fs.openSync(a['--log'], 'a');
const line = (what) => fs.writeSync(fd, `${process.hrtime.bigint()} ${process.pid} ${what}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let seed = (Number(a['--seed'] || 0) ^ process.pid) >>> 0;
const rand = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 4294967296;
};

// The fenced resource over one connection, one request at a time.
let sock = null;
let buf = '';
let waiting = null;
function connect() {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ host, port }, () => resolve(s));
    s.setEncoding('utf8');
    s.on('data', (d) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i >= 0 && waiting) {
        const answer = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const w = waiting;
        waiting = null;
        w(answer);
      }
    });
    s.on('error', (e) => {
      sock = null;
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(null);
      }
      reject(e);
    });
    s.on('close', () => {
      sock = null;
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(null);
      }
    });
  });
}
async function write(name, token) {
  try {
    if (!sock) {
      buf = '';
      sock = await connect();
    }
    const answer = await new Promise((resolve) => {
      waiting = resolve;
      sock.write(`W ${id} ${name} ${token}\n`);
    });
    if (answer === null) return 'unreachable';
    return answer.trim() === 'OK' ? 'ok' : 'stale';
  } catch (e) {
    sock = null;
    return 'unreachable';
  }
}

async function main() {
  line('S');
  let client;
  for (;;) {
    try {
      client = await tenure.Client.connect(endpoints, { sessionTtlMs: ttlMs });
      break;
    } catch (e) {
      await sleep(100);
    }
  }
  client.on('lockLost', (ev) => line(`L ${ev.name} ${ev.fencingToken} ${ev.reason}`));
  client.on('dataLost', () => line('D'));
  const pause = ttlMs / 5;
  for (;;) {
    const name = `f${Math.floor(rand() * names)}`;
    let lock;
    try {
      lock = await client.lock(name, { timeoutMs: 2000 });
    } catch (e) {
      await sleep(1 + rand() * 30);
      continue;
    }
    const token = lock.fencingToken;
    line(`G ${name} ${token}`);
    const n = rand() < 0.25 ? 5 + Math.floor(rand() * 11) : 1 + Math.floor(rand() * 5);
    for (let k = 0; k < n; k++) {
      if (!lock.held) break;
      line(`W ${name} ${token} ${await write(name, token)}`);
      await sleep(rand() * pause);
    }
    line(`E ${name} ${token}`);
    try {
      await lock.release();
    } catch (e) {
      // lost already
    }
    await sleep(rand() * 10);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(2);
});
