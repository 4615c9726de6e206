// Keel with the official Temporal TypeScript SDK: a worker (the SDK's Rust core, native
// connection) on one node and a client (grpc-js, a separate gRPC implementation) on another.
// Usage: node lib/check.js WORKER_ADDR CLIENT_ADDR. Exits non-zero on the first failed check.
import {
  Client,
  Connection,
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateStage,
  WithStartWorkflowOperation,
} from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { NativeConnection, Worker } from '@temporalio/worker';
import * as activities from './activities';
import * as wfs from './workflows';

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

async function failureOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a failure');
}

async function main(): Promise<void> {
  const [workerAddr, clientAddr] = process.argv.slice(2);
  if (!workerAddr || !clientAddr) throw new Error('usage: check.js WORKER_ADDR CLIENT_ADDR');
  const queue = `ts-${Date.now().toString(16)}`;
  const workerConn = await NativeConnection.connect({ address: workerAddr });
  const worker = await Worker.create({
    connection: workerConn,
    taskQueue: queue,
    workflowsPath: require.resolve('./workflows'),
    activities,
  });
  const running = worker.run();
  const conn = await Connection.connect({ address: clientAddr });
  const client = new Client({ connection: conn });
  const opts = (name: string) => ({ taskQueue: queue, workflowId: `${name}-${queue}` });

  // Activities: results, retries, failures, heartbeats, cancellation.
  check((await client.workflow.execute(wfs.hello, { args: ['ts'], ...opts('hello') })) === 'hello ts2',
    'three sequential activities');
  check((await client.workflow.execute(wfs.localSteps, { args: ['ts'], ...opts('local') })) ===
    'hello ts-a, hello ts-b', 'local activities around a durable timer');
  check((await client.workflow.execute(wfs.retrying, { args: ['k'], ...opts('retry') })) === 'ok after 3',
    'a failing activity is retried with backoff until it succeeds');
  const fatal = await client.workflow.execute(wfs.failing, opts('fatal'));
  check(fatal === 'caught Fatal: nope nonRetryable=true',
    `a non-retryable failure reaches the workflow with its type (${fatal})`);
  const beat = await client.workflow.execute(wfs.heartbeating, opts('heartbeat'));
  check(beat === 'resumed from 1 on attempt 2',
    `a heartbeat timeout retries the activity with its last details (${beat})`);
  check((await client.workflow.execute(wfs.cancelling, opts('cancel-activity'))) === 'activity cancelled',
    'an activity is cancelled through its heartbeat');

  // A local activity longer than the task timeout, queried while it runs: the query goes out
  // with the next heartbeat task, so within two heartbeats (3.2 s) of the first.
  const long = await client.workflow.start(wfs.longLocal, {
    args: [8000],
    workflowTaskTimeout: '2s',
    ...opts('long-local'),
  });
  const completedTasks = async () =>
    ((await long.fetchHistory()).events ?? []).filter((e) => e.workflowTaskCompletedEventAttributes).length;
  const deadline = Date.now() + 20_000;
  while ((await completedTasks()) < 1) {
    if (Date.now() > deadline) throw new Error('check failed: no workflow-task heartbeat within 20 s');
    await new Promise((r) => setTimeout(r, 100)); // polling a condition, bounded above
  }
  const phase = await long.query(wfs.phase);
  check(phase === 'working', `a query answered during a heartbeating local activity (${phase})`);
  check((await long.result()) === 'worked 8000 ms', 'a local activity longer than the task timeout completes');
  const timedOut = ((await long.fetchHistory()).events ?? []).filter((e) => e.workflowTaskTimedOutEventAttributes);
  check(timedOut.length === 0, 'no workflow task timed out');

  // Signals, queries, conditions, describe.
  const waiter = await client.workflow.start(wfs.waiter, opts('waiter'));
  check((await failureOf(client.workflow.start(wfs.waiter, opts('waiter')))) instanceof
    WorkflowExecutionAlreadyStartedError, 'a second start of a running id is WorkflowExecutionAlreadyStartedError');
  await waiter.signal(wfs.add, 'a');
  check(JSON.stringify(await waiter.query(wfs.status)) === '["a"]', 'a query while running');
  await waiter.signal(wfs.add, 'b');
  check(JSON.stringify(await waiter.result()) === '["a","b","done"]', 'signals satisfy a condition');
  check(JSON.stringify(await waiter.query(wfs.status)) === '["a","b"]', 'a query after completion');
  check((await waiter.describe()).status.name === 'COMPLETED', 'describe shows the run completed');
  check((await client.workflow.execute(wfs.shortWait, opts('short'))) === 'timed out',
    'a condition with a timeout times out');
  const sws = await client.workflow.signalWithStart(wfs.waiter, {
    ...opts('signal-with-start'),
    signal: wfs.add,
    signalArgs: ['x'],
  });
  await sws.signal(wfs.add, 'y');
  check(JSON.stringify(await sws.result()) === '["x","y","done"]', 'signal-with-start');

  // Cancellation, termination, errors.
  const cancelled = await client.workflow.start(wfs.forever, opts('cancel'));
  await cancelled.cancel();
  const c = await failureOf(cancelled.result());
  check(c instanceof WorkflowFailedError && c.cause?.name === 'CancelledFailure', 'workflow cancellation');
  const terminated = await client.workflow.start(wfs.forever, opts('terminate'));
  await terminated.terminate('bye');
  const t = await failureOf(terminated.result());
  check(t instanceof WorkflowFailedError && t.cause?.name === 'TerminatedFailure', 'termination');
  check((await failureOf(client.workflow.getHandle(`nope-${queue}`).describe())) instanceof WorkflowNotFoundError,
    'an unknown workflow is WorkflowNotFoundError');

  // Continue-as-new: the client follows the chain; memo and history info carry over.
  const chained = await client.workflow.execute(wfs.chain, { args: [1], ...opts('chain'), memo: { k: 'v' } });
  check(chained === 'run 5 continued=true memo=v history=true', `continue-as-new chain of 5 runs, memo carried (${chained})`);

  // Children and the workflow retry policy.
  const fromChild = await client.workflow.execute(wfs.parent, { args: ['ts'], ...opts('parent') });
  check(fromChild === 'child said hello ts2', `a child workflow's result reaches its parent (${fromChild})`);
  const retried = await client.workflow.execute(wfs.failsTwice, {
    ...opts('wf-retry'),
    retry: { initialInterval: '100ms', backoffCoefficient: 1, maximumAttempts: 5 },
  });
  check(retried === 'attempt 3', `a workflow retried by its retry policy (${retried})`);

  // Visibility and history: 12 runs, the chain's 5, the parent and its child, and the retried
  // workflow's 3 attempts.
  let listed = 0;
  for await (const _ of client.workflow.list({ query: `TaskQueue = '${queue}'` })) listed++;
  check(listed === 22, `list finds the 22 runs (${listed})`);
  check((await client.workflow.count(`TaskQueue = '${queue}'`)).count === 22, 'count finds the 22 runs');
  const history = await client.workflow.getHandle(`hello-${queue}`).fetchHistory();
  check((history.events?.length ?? 0) > 10, `history fetch (${history.events?.length} events)`);

  // Search attributes and memo: registered through OperatorService (again: a no-op), set at
  // start, upserted and unset by the workflow, then listed, counted and described.
  await conn.operatorService.addSearchAttributes({
    namespace: 'default',
    searchAttributes: {
      KeelTsAmount: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
      KeelTsCustomer: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    },
  });
  const tagged = await client.workflow.start(wfs.tagged, {
    ...opts('tagged'),
    memo: { origin: 'ts' },
    typedSearchAttributes: [{ key: wfs.TS_CUSTOMER, value: 'acme' }],
  });
  const taggedSaid = await tagged.result();
  check(taggedSaid === 'customer=acme amount=7', `a workflow reads and upserts attributes (${taggedSaid})`);
  const d = await tagged.describe();
  check(d.typedSearchAttributes.get(wfs.TS_AMOUNT) === 7 && d.typedSearchAttributes.get(wfs.TS_CUSTOMER) === undefined,
    'describe shows the upserted attributes');
  check(d.memo?.origin === 'ts' && d.memo?.stage === 'tagged' && Object.keys(d.memo ?? {}).length === 2,
    `the memo was modified (${JSON.stringify(d.memo)})`);
  const ids: string[] = [];
  for await (const w of client.workflow.list({
    query: `KeelTsAmount >= 7 AND KeelTsCustomer IS NULL AND TaskQueue = '${queue}'`,
  })) ids.push(w.workflowId);
  check(JSON.stringify(ids) === JSON.stringify([`tagged-${queue}`]), `list filters on custom attributes (${ids})`);
  const grouped = await client.workflow.count(`TaskQueue = '${queue}' GROUP BY ExecutionStatus`);
  const sum = grouped.groups.reduce((n, g) => n + g.count, 0);
  check(sum === grouped.count && grouped.groups.some((g) => JSON.stringify(g.groupValues).includes('Completed')),
    `count groups by status (${JSON.stringify(grouped.groups)})`);

  // Updates (after the list/count checks above, which count this queue's runs).
  const counter = await client.workflow.start(wfs.counter, opts('counter'));
  check((await counter.executeUpdate(wfs.addUpdate, { args: [5] })) === 5,
    'an update is accepted and completes with its handler\'s result');
  check((await counter.executeUpdate(wfs.addUpdate, { args: [3], updateId: 'add-3' })) === 8, 'a second update');
  check((await counter.executeUpdate(wfs.addUpdate, { args: [3], updateId: 'add-3' })) === 8,
    'an update retried with its id gets the first outcome');
  const rejected = await failureOf(counter.executeUpdate(wfs.addUpdate, { args: [-1] }));
  check(rejected instanceof WorkflowUpdateFailedError && String(rejected.cause?.message).includes('negative amount'),
    `a validator rejects an update (${rejected})`);
  const accepted = await counter.startUpdate(wfs.addUpdate, { args: [2], waitForStage: WorkflowUpdateStage.ACCEPTED });
  check((await accepted.result()) === 10, 'an update waited on to ACCEPTED, then polled');
  check((await counter.executeUpdate(wfs.finish)) === 'finishing', 'a synchronous handler');
  check((await counter.result()) === 10, 'the workflow saw every update');
  const startOp = () =>
    new WithStartWorkflowOperation(wfs.counter, {
      workflowId: `cart-${queue}`,
      taskQueue: queue,
      workflowIdConflictPolicy: 'USE_EXISTING',
    });
  check((await client.workflow.executeUpdateWithStart(wfs.addUpdate, { args: [4], startWorkflowOperation: startOp() })) === 4,
    'update-with-start starts the workflow and runs the update');
  const second = startOp();
  check((await client.workflow.executeUpdateWithStart(wfs.addUpdate, { args: [6], startWorkflowOperation: second })) === 10,
    'update-with-start on the running workflow (USE_EXISTING)');
  const cart = await second.workflowHandle();
  await cart.executeUpdate(wfs.finish);
  check((await cart.result()) === 10, 'one run took both updates');

  // Schedules: an interval schedule acting every second, pause / trigger / unpause, a cron
  // string as a structured calendar, backfill, list, delete.
  const every = await client.schedule.create({
    scheduleId: `every-${queue}`,
    spec: { intervals: [{ every: '1s' }] },
    action: { type: 'startWorkflow', workflowType: wfs.hello, args: ['sched'], taskQueue: queue, workflowId: `sched-${queue}` },
  });
  const scheduleDeadline = Date.now() + 30_000;
  let desc = await every.describe();
  while (desc.info.numActionsTaken < 2 && Date.now() < scheduleDeadline) {
    await new Promise((r) => setTimeout(r, 200));
    desc = await every.describe();
  }
  check(desc.info.numActionsTaken >= 2, 'an interval schedule acts twice within 30 s');
  const firstRun = desc.info.recentActions[0].action.workflow.workflowId;
  check(firstRun.startsWith(`sched-${queue}-`), `a scheduled workflow id carries its time (${firstRun})`);
  check((await client.workflow.getHandle(firstRun).result()) === 'hello sched2', 'the scheduled workflow ran');
  await every.pause('hold on');
  desc = await every.describe();
  check(desc.state.paused && desc.state.note === 'hold on', 'paused with a note');
  await every.unpause('go');
  check(!(await every.describe()).state.paused, 'unpaused');
  const cron = await client.schedule.create({
    scheduleId: `cron-${queue}`,
    spec: { cronExpressions: ['0 12 * * MON'] },
    action: { type: 'startWorkflow', workflowType: wfs.hello, args: ['cron'], taskQueue: queue, workflowId: `cron-${queue}` },
    state: { paused: true },
  });
  const cronDesc = await cron.describe();
  check(cronDesc.spec.calendars?.length === 1,
    'a cron string comes back as a structured calendar');
  const next = cronDesc.info.nextActionTimes;
  check(next.length === 10 && next.every((t) => t.getUTCDay() === 1 && t.getUTCHours() === 12),
    'the next ten times are Mondays at noon');
  // A trigger acts on a paused schedule (this one: an action at the same second as a running
  // one of the same schedule would share its workflow id, and lose, as in Temporal).
  await cron.trigger('ALLOW_ALL');
  check((await cron.describe()).info.numActionsTaken === 1, 'a trigger acts while paused');
  const start = new Date('2020-01-20T05:00:00Z');
  await cron.backfill({ start, end: new Date(start.getTime() + 14 * 86_400_000), overlap: 'ALLOW_ALL' });
  check((await cron.describe()).info.numActionsTaken === 3, 'a two-week backfill acts on its two Mondays');
  const scheduleIds: string[] = [];
  for await (const s of client.schedule.list()) scheduleIds.push(s.scheduleId);
  check(scheduleIds.includes(every.scheduleId) && scheduleIds.includes(cron.scheduleId), 'both schedules are listed');
  await every.delete();
  await cron.delete();
  const gone = await failureOf(every.describe());
  check(String(gone).toLowerCase().includes('not found'), `a deleted schedule is not found (${gone})`);

  worker.shutdown();
  await running;
  await conn.close();
  await workerConn.close();
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
