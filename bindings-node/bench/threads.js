// Threads one client adds with 100 held locks (with 'lost' listeners) and 10 subscriptions
// (5 observers, 5 group watches). Run from bindings-node: node bench/threads.js [package dir].
'use strict';
const fs = require('node:fs'); const os = require('node:os'); const path = require('node:path');
const tenure = require(process.argv[2] || path.join(__dirname, '..'));
const n = () => fs.readdirSync('/proc/self/task').length;
(async () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'thr-'));
  const server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir, durability: 'none' });
  const base = n();
  const c = await tenure.Client.connect([server.address], { sessionTtlMs: 5000 });
  const afterConnect = n();
  const locks = [];
  for (let i = 0; i < 100; i++) { const l = await c.lock(`t/${i}`); l.on('lost', () => {}); locks.push(l); }
  const subs = [];
  for (let i = 0; i < 5; i++) { const o = c.observe(`e${i}`); o.on('masterChanged', () => {}); await o.ready; subs.push(o); }
  for (let i = 0; i < 5; i++) { const w = c.watchGroup(`g${i}`); w.on('viewChanged', () => {}); await w.ready; subs.push(w); }
  console.log(`node+server ${base}, +client ${afterConnect - base}, +100 locks +10 subscriptions (5 observers, 5 group watches) ${n() - afterConnect}, client total ${n() - base}`);
  for (const l of locks) await l.release();
  for (const s of subs) await s.close();
  await c.close(); await server.close(); fs.rmSync(dataDir, { recursive: true, force: true });
})();
