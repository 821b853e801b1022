#!/usr/bin/env node
// Builds the private native addon (the `tenure-node` crate of the Cargo workspace) and copies
// it to `native.node` beside package.json, where lib/native.ts loads it from.
//
//   node scripts/build-native.js            release build (the default: what benchmarks and
//                                           users need; shares the workspace's release cache)
//   TENURE_NODE_PROFILE=debug node scripts/build-native.js
//
// Needs cargo (https://rustup.rs). CARGO_TARGET_DIR and the workspace target dir are honoured.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const profile = process.env.TENURE_NODE_PROFILE === 'debug' ? 'debug' : 'release';
const cargo = process.env.CARGO || 'cargo';

function run(args, opts = {}) {
  return execFileSync(cargo, args, { cwd: root, stdio: opts.capture ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8' });
}

try {
  const args = ['build', '-p', 'tenure-node', '--lib'];
  if (profile === 'release') args.push('--release');
  console.log(`> ${cargo} ${args.join(' ')}`);
  run(args);
} catch (e) {
  if (e.code === 'ENOENT') {
    console.error('cargo was not found: install Rust from https://rustup.rs to build the native addon');
  }
  process.exit(1);
}

const meta = JSON.parse(run(['metadata', '--format-version', '1', '--no-deps'], { capture: true }));
const dir = path.join(meta.target_directory, profile);
const file = {
  linux: 'libtenure_node.so',
  darwin: 'libtenure_node.dylib',
  win32: 'tenure_node.dll',
}[process.platform] || 'libtenure_node.so';
const src = path.join(dir, file);
if (!fs.existsSync(src)) {
  console.error(`built library not found at ${src}`);
  process.exit(1);
}
// Copy then rename, so a process that has the old addon loaded is not disturbed.
const dest = path.join(root, 'native.node');
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(src, tmp);
fs.renameSync(tmp, dest);
console.log(`native addon: ${path.relative(process.cwd(), dest)} (${profile})`);
