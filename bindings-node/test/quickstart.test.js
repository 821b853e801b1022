// The README's Node quick start is examples/quickstart.js; it must run as written.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');
const { runNode } = require('./helpers');

test('the quick start runs and exits', { timeout: 30000 }, async () => {
  const r = await runNode([path.join(__dirname, '..', 'examples', 'quickstart.js')], { timeoutMs: 20000 });
  assert.equal(r.timedOut, false, r.stderr);
  assert.equal(r.code, 0, r.stderr);
  // The election may pass through an epoch with no master before `a` is designated.
  assert.match(
    r.stdout,
    /^holding jobs\/reindex with fencing token \d+\n(master of scheduler: none \(epoch \d+\)\n)*master of scheduler: a \(epoch (\d+)\)\na leads with epoch \2 as its fencing token; isMaster=true\nrequestElection: a\n$/,
  );
  assert.equal(r.stderr, '');
});

test("the README's Node quick start is examples/quickstart.js", () => {
  const fs = require('node:fs');
  const example = fs.readFileSync(path.join(__dirname, '..', 'examples', 'quickstart.js'), 'utf8');
  const body = example.slice(example.indexOf('const fs = require'));
  const docs = [path.join(__dirname, '..', 'README-section.md'), path.join(__dirname, '..', '..', 'README.md')];
  let checked = 0;
  for (const doc of docs) {
    if (!fs.existsSync(doc)) continue;
    const text = fs.readFileSync(doc, 'utf8');
    const start = text.indexOf("```js\nconst fs = require('node:fs');");
    if (start < 0) continue; // the root README has no Node section yet
    const code = text.slice(start + '```js\n'.length, text.indexOf('```\n', start + 5));
    assert.equal(code, body, `${path.basename(doc)}'s Node quick start differs from examples/quickstart.js`);
    checked++;
  }
  assert.ok(checked >= 1);
});
