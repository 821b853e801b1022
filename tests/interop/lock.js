// One Node process of tests/interop/run.py: takes the lock NAME ROUNDS times through the etcd
// backend and, while holding it, creates MARKER with O_EXCL (two holders at once would find it
// there), records "token grant_ns" in OUT, removes the marker and releases.
//
//   node lock.js ENDPOINTS NAME ROUNDS MARKER OUT   (with NODE_PATH reaching the package)
'use strict';
const fs = require('node:fs');
const { Client } = require(process.env.TENURE_NODE_PACKAGE);

async function main() {
  const [endpoints, name, rounds, marker, out] = process.argv.slice(2);
  const client = await Client.connect(endpoints, { sessionTtlMs: 5000 });
  const lines = [];
  for (let i = 0; i < Number(rounds); i++) {
    const lock = await client.lock(name, { timeoutMs: 30000 });
    const now = BigInt(Date.now()) * 1000000n;
    let fd;
    try {
      fd = fs.openSync(marker, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY);
    } catch (e) {
      console.error(`node: two holders at once (marker: ${e.code})`);
      process.exit(2);
    }
    fs.closeSync(fd);
    lines.push(`${lock.fencingToken} ${now}`);
    await new Promise((r) => setTimeout(r, 2));
    fs.unlinkSync(marker);
    await lock.release();
  }
  fs.writeFileSync(out, lines.join('\n') + '\n');
  await client.close();
}

main().catch((e) => {
  console.error(`node: ${e.stack || e}`);
  process.exit(1);
});
