// A worker for the food-delivery task queue. `npm run worker` runs one until Ctrl-C;
// run.ts starts one in-process instead.
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import * as activities from './activities';
import { TASK_QUEUE, temporalAddress } from './shared';

let runtimeInstalled = false;

export async function makeWorker(): Promise<{ worker: Worker; connection: NativeConnection }> {
  if (!runtimeInstalled) {
    // The SDK logs every worker state change at INFO; warnings are enough for an example.
    Runtime.install({ logger: new DefaultLogger('WARN') });
    runtimeInstalled = true;
  }
  const connection = await NativeConnection.connect({ address: temporalAddress() });
  const worker = await Worker.create({
    connection,
    taskQueue: TASK_QUEUE,
    // The TypeScript SDK bundles the workflow code from its own file into a sandbox.
    workflowsPath: require.resolve('./workflows'),
    activities,
  });
  return { worker, connection };
}

async function main(): Promise<void> {
  const { worker, connection } = await makeWorker();
  console.log(`worker polling '${TASK_QUEUE}' at ${temporalAddress()}; Ctrl-C stops it`);
  try {
    await worker.run();
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
