// tenure's Node.js quick start (the README includes this file; a test runs it).
// Start a server, take a lock and react to its loss, run an election and react to master
// changes, then close everything so the process exits.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tenure = require('tenure');

async function main() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenure-quickstart-'));
  const server = await tenure.Server.start({ listen: '127.0.0.1:0', dataDir });
  const client = await tenure.Client.connect([server.address], { sessionTtlMs: 2000 });
  client.on('jeopardy', (ev) => console.log(`session in jeopardy: ${ev.remainingMs} ms left`));
  client.on('expired', () => console.log('session expired'));

  // A lock with a fencing token; 'lost' fires no later than the session's deadline.
  const lock = await client.lock('jobs/reindex', { timeoutMs: 5000 });
  lock.on('lost', (ev) => console.log(`lost ${ev.name}: ${ev.reason}; stop writing`));
  console.log(`holding ${lock.name} with fencing token ${lock.fencingToken}`);
  await lock.release();

  // An election: 'masterChanged' tells every candidate and observer, in epoch order (the
  // first event carries the current master).
  const election = await client.campaign('scheduler', { candidateId: 'a', priority: 10 });
  const designated = new Promise((resolve) => {
    election.on('masterChanged', (ev) => {
      console.log(`master of ${ev.election}: ${ev.master ? ev.master.id : 'none'} (epoch ${ev.epoch})`);
      if (ev.master) resolve(ev.master);
    });
  });
  const master = await designated;
  console.log(`${master.id} leads with epoch ${master.epoch} as its fencing token; isMaster=${election.isMaster}`);
  const asked = await client.requestElection('scheduler'); // any client may ask
  console.log(`requestElection: ${asked ? asked.id : 'no master'}`);
  await election.resign();

  await client.close();
  await server.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
