// Shared test helpers. Every wait here is bounded.
'use strict';

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const tenure = require('..');

const ROOT = path.resolve(__dirname, '..');

/** A server on a free loopback port with a fresh data directory (in memory: fast). */
async function startServer(t, opts = {}) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenure-node-test-'));
  const server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir, durability: 'none', ...opts });
  t.after(async () => {
    await server.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });
  return server;
}

/** A client that is closed when the test ends. */
async function connect(t, endpoints, opts) {
  const client = await tenure.Client.connect(endpoints, opts);
  t.after(() => client.close());
  return client;
}

/** Rejects when `p` has not settled within `ms`. */
function within(p, ms, what) {
  let timer;
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** The next `event` of `emitter`, within `ms`. */
function next(emitter, event, ms = 5000) {
  return within(
    new Promise((resolve) => emitter.once(event, resolve)),
    ms,
    `'${event}'`,
  );
}

/** Waits until `cond()` is true, polling, within `ms`. */
async function waitFor(cond, ms, what) {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP proxy in front of a server. `freeze()` silently drops everything in both directions
 * (and refuses new connections) while keeping the connections open: to the client it is a
 * network partition, to the server a client that stopped sending heartbeats.
 */
class TcpProxy {
  constructor(target) {
    const [host, port] = splitHostPort(target);
    this.frozen = false;
    this.sockets = new Set();
    this.server = net.createServer((down) => {
      if (this.frozen) {
        down.destroy();
        return;
      }
      const up = net.connect(port, host);
      for (const s of [down, up]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => {
          down.destroy();
          up.destroy();
        });
      }
      down.on('data', (d) => this.frozen || up.write(d));
      up.on('data', (d) => this.frozen || down.write(d));
      down.on('close', () => up.destroy());
      up.on('close', () => down.destroy());
    });
  }

  static async start(t, target) {
    const p = new TcpProxy(target);
    await new Promise((resolve) => p.server.listen(0, '127.0.0.1', resolve));
    t.after(() => p.close());
    return p;
  }

  get address() {
    const a = this.server.address();
    return `127.0.0.1:${a.port}`;
  }

  freeze() {
    this.frozen = true;
  }

  /** Ends the partition: connections cut during it are closed, new ones go through. */
  thaw() {
    for (const s of this.sockets) s.destroy();
    this.frozen = false;
  }

  close() {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function splitHostPort(a) {
  const i = a.lastIndexOf(':');
  return [a.slice(0, i), Number(a.slice(i + 1))];
}

/**
 * Runs a Node script (a file, or source code with `-e`) in a child process and resolves with
 * its exit code, output and duration; kills it after `timeoutMs` (then `timedOut` is true).
 */
function runNode(args, { timeoutMs = 20000, env = {} } = {}) {
  return new Promise((resolve) => {
    const start = Date.now();
    const child = spawn(process.execPath, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ms: Date.now() - start });
    });
  });
}

/** Asserts that `p` rejects with a TenureError of `code`. */
async function rejectsWith(p, code) {
  await assert.rejects(p, (e) => {
    assert.ok(e instanceof tenure.TenureError, `expected a TenureError, got ${e && e.stack}`);
    assert.equal(e.code, code);
    return true;
  });
}

module.exports = { ROOT, startServer, connect, within, next, waitFor, sleep, TcpProxy, runNode, rejectsWith, tenure };
