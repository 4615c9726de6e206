// Workflows of the TypeScript compatibility check (see check.ts).
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  defineQuery,
  executeChild,
  defineSignal,
  defineUpdate,
  isCancellation,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  sleep,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import type * as acts from './activities';

export const TS_AMOUNT = defineSearchAttributeKey('KeelTsAmount', SearchAttributeType.INT);
export const TS_CUSTOMER = defineSearchAttributeKey('KeelTsCustomer', SearchAttributeType.KEYWORD);

const { greet, flaky, fatal } = proxyActivities<typeof acts>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '100ms' },
});
const local = proxyLocalActivities<typeof acts>({ startToCloseTimeout: '10s' });
const { slowBeat } = proxyActivities<typeof acts>({
  startToCloseTimeout: '10s',
  heartbeatTimeout: '1s',
  retry: { initialInterval: '100ms' },
});
const { untilCancelled } = proxyActivities<typeof acts>({
  startToCloseTimeout: '30s',
  heartbeatTimeout: '2s',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

const slowLocal = proxyLocalActivities<typeof acts>({ startToCloseTimeout: '30s' });

export const add = defineSignal<[string]>('add');
export const status = defineQuery<string[]>('status');

export async function hello(name: string): Promise<string> {
  let last = '';
  for (let i = 0; i < 3; i++) last = await greet(`${name}${i}`);
  return last;
}

/** Local activities (recorded as markers) around a durable timer. */
export async function localSteps(name: string): Promise<string> {
  const first = await local.greet(`${name}-a`);
  await sleep(300);
  const second = await local.greet(`${name}-b`);
  return `${first}, ${second}`;
}

export async function retrying(key: string): Promise<string> {
  return await flaky(key);
}

export async function failing(): Promise<string> {
  try {
    await fatal();
    return 'unexpected success';
  } catch (e) {
    if (e instanceof ActivityFailure && e.cause instanceof ApplicationFailure) {
      return `caught ${e.cause.type}: ${e.cause.message} nonRetryable=${e.cause.nonRetryable}`;
    }
    throw e;
  }
}

export async function heartbeating(): Promise<string> {
  return await slowBeat();
}

export async function cancelling(): Promise<string> {
  try {
    await CancellationScope.cancellable(async () => {
      const running = untilCancelled();
      await sleep(500);
      CancellationScope.current().cancel();
      await running;
    });
    return 'not cancelled';
  } catch (e) {
    if (isCancellation(e)) return 'activity cancelled';
    throw e;
  }
}

/** Waits for two `add` signals (20 s at most), answers `status` with what it got. */
export async function waiter(): Promise<string[]> {
  const got: string[] = [];
  setHandler(add, (v) => {
    got.push(v);
  });
  setHandler(status, () => got);
  const signalled = await condition(() => got.length >= 2, '20s');
  await sleep(200);
  return [...got, signalled ? 'done' : 'timeout'];
}

export async function shortWait(): Promise<string> {
  let got = false;
  setHandler(add, () => {
    got = true;
  });
  return (await condition(() => got, '300ms')) ? 'signalled' : 'timed out';
}

/** Continues as new until run `n` reaches 5; the last run reports what it inherited. */
export async function chain(n: number): Promise<string> {
  const info = workflowInfo();
  if (n < 5) {
    await continueAsNew<typeof chain>(n + 1);
  }
  return `run ${n} continued=${info.continuedFromExecutionRunId !== undefined} memo=${info.memo?.k} ` +
    `history=${info.historyLength > 0 && info.historySize > 0}`;
}

/** Runs `hello` as a child on the same queue and reports what it returned. */
export async function parent(name: string): Promise<string> {
  const said = await executeChild(hello, { args: [name], workflowId: `${workflowInfo().workflowId}-child` });
  return `child said ${said}`;
}

/** Fails its first two attempts; the workflow retry policy brings the third. */
export async function failsTwice(): Promise<string> {
  const attempt = workflowInfo().attempt;
  if (attempt < 3) {
    throw ApplicationFailure.create({ message: `attempt ${attempt} fails` });
  }
  return `attempt ${attempt}`;
}

/** Reads its start search attribute, upserts one, unsets it, and adds to its memo. */
export async function tagged(): Promise<string> {
  const customer = workflowInfo().typedSearchAttributes.get(TS_CUSTOMER);
  upsertSearchAttributes([
    { key: TS_AMOUNT, value: 7 },
    { key: TS_CUSTOMER, value: null },
  ]);
  upsertMemo({ stage: 'tagged' });
  return `customer=${customer} amount=${workflowInfo().typedSearchAttributes.get(TS_AMOUNT)}`;
}

export async function forever(): Promise<void> {
  await sleep('30 days');
}

export const phase = defineQuery<string>('phase');

/** A local activity outliving the 2 s task timeout: the SDK heartbeats the task. */
export async function longLocal(ms: number): Promise<string> {
  let current = 'working';
  setHandler(phase, () => current);
  const done = await slowLocal.longLocal(ms);
  current = 'done';
  return done;
}

// Updates: `addUpdate` adds (its validator refuses negative amounts) until `finish`.
export const addUpdate = defineUpdate<number, [number]>('add');
export const finish = defineUpdate<string>('finish');

export async function counter(): Promise<number> {
  let total = 0;
  let done = false;
  setHandler(
    addUpdate,
    async (n: number) => {
      await sleep(50); // a timer inside the handler
      total += n;
      return total;
    },
    {
      validator: (n: number) => {
        if (n < 0) throw new Error(`negative amount ${n}`);
      },
    },
  );
  setHandler(finish, () => {
    done = true;
    return 'finishing';
  });
  await condition(() => done);
  return total;
}
