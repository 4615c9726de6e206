// One command for the whole example: starts a worker in this process, runs the starter's
// scenario against it, stops the worker. Exits 0 only if every check passed.
//
//   npm start                       # charge, pickup, delivery, timer, notify -> "completed"
//   npm run start:no-pickup         # nobody picks up -> refund -> "refunded: not picked up"
//
// Connects to $TEMPORAL_ADDRESS (default localhost:7233, where `keel up` listens).
import { TASK_QUEUE, temporalAddress } from './shared';
import { connectClient, parseScenario, runScenario } from './starter';
import { makeWorker } from './worker';

async function main(): Promise<number> {
  const scenario = parseScenario(process.argv.slice(2));
  console.log(`connecting to ${temporalAddress()}; bundling the workflow code for the worker ...`);
  const { worker, connection: workerConnection } = await makeWorker();
  const { client, connection } = await connectClient();
  console.log(`worker on task queue '${TASK_QUEUE}' ready`);
  try {
    // runUntil runs the worker while the scenario runs, then shuts the worker down.
    const ok = await worker.runUntil(runScenario(client, scenario));
    console.log('worker stopped');
    return ok ? 0 : 1;
  } finally {
    await connection.close();
    await workerConnection.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
