#!/usr/bin/env node
// Runs the test files (test/*.test.js) with node:test. Fixtures and helpers under test/ are
// not tests, so the files are listed here rather than left to the runner's directory search.
// Extra arguments go to `node --test` (e.g. --test-name-pattern=expires).
//
// Every test has its own time limit; as a last resort (a test file whose process does not
// exit), the whole run is stopped after TENURE_NODE_TEST_TIMEOUT_S seconds (default 600)
// and fails.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const files = fs
  .readdirSync(path.join(root, 'test'))
  .filter((f) => f.endsWith('.test.js'))
  .sort()
  .map((f) => path.join('test', f));
const args = ['--test', '--test-reporter=spec', ...process.argv.slice(2), ...files];
const limit = Number(process.env.TENURE_NODE_TEST_TIMEOUT_S || 600);

const child = spawn(process.execPath, args, { cwd: root, stdio: 'inherit', detached: process.platform !== 'win32' });
function stop() {
  try {
    if (process.platform === 'win32') child.kill('SIGKILL');
    else process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}
const timer = setTimeout(() => {
  console.error(`\ntests still running after ${limit} s: stopping them`);
  stop();
}, limit * 1000);
// The tests run in a process group of their own (so that the time limit can stop every
// test process); an interrupt of this script stops them too.
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    stop();
    process.exit(1);
  });
}
child.on('close', (code, signal) => {
  clearTimeout(timer);
  process.exit(code === null || signal ? 1 : code);
});
