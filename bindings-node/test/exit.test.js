// The process exits when everything it opened is closed, and when the open objects are
// unref()ed; it stays alive while they are open.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { runNode } = require('./helpers');

const fixture = path.join(__dirname, 'fixtures', 'open-everything.js');

test('a script exits by itself once it closed everything it opened', { timeout: 30000 }, async () => {
  const r = await runNode([fixture, 'close'], { timeoutMs: 15000 });
  assert.equal(r.timedOut, false, `still running after 15 s; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['opened', 'closed']);
});

test('a script exits by itself when it unref()s what it left open', { timeout: 30000 }, async () => {
  const r = await runNode([fixture, 'unref'], { timeoutMs: 15000 });
  assert.equal(r.timedOut, false, `still running after 15 s; stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), ['opened', 'unrefed']);
});

test('open objects keep the process alive', { timeout: 30000 }, async () => {
  const r = await runNode([fixture, 'open'], { timeoutMs: 2500 });
  assert.equal(r.stdout.trim(), 'opened', r.stderr);
  assert.equal(r.timedOut, true, 'the process was still running (and was killed) 2.5 s later');
});

test('closed clients can be garbage-collected (no native reference keeps them)', { timeout: 30000 }, async () => {
  const r = await runNode(['--expose-gc', path.join(__dirname, 'fixtures', 'collect-closed.js')], { timeoutMs: 20000 });
  assert.equal(r.code, 0, r.stderr);
  const { created, collected } = JSON.parse(r.stdout.trim());
  // The last one may still be on the stack; the others must go.
  assert.ok(collected >= created - 2, `${collected} of ${created} collected`);
});
