// The published declarations type-check a TypeScript user's file (tsc --noEmit).
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { runNode, ROOT } = require('./helpers');

test('tsc --noEmit type-checks test/types/usage.ts against dist/*.d.ts', { timeout: 60000 }, async () => {
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = await runNode([tsc, '--noEmit', '-p', path.join(ROOT, 'test', 'types', 'tsconfig.json')], { timeoutMs: 50000 });
  assert.equal(r.timedOut, false);
  assert.equal(r.code, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
});
