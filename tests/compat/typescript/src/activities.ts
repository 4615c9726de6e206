// Activities of the TypeScript compatibility check (see check.ts).
import { ApplicationFailure, Context } from '@temporalio/activity';

export async function greet(name: string): Promise<string> {
  return `hello ${name}`;
}

const attempts = new Map<string, number>();

/** Fails its first two attempts. */
export async function flaky(key: string): Promise<string> {
  const n = (attempts.get(key) ?? 0) + 1;
  attempts.set(key, n);
  if (n < 3) throw new Error(`attempt ${n}`);
  return `ok after ${n}`;
}

export async function fatal(): Promise<string> {
  throw ApplicationFailure.nonRetryable('nope', 'Fatal');
}

/** First attempt: heartbeats once, then outlives its 1 s heartbeat timeout. */
export async function slowBeat(): Promise<string> {
  const ctx = Context.current();
  const previous = ctx.info.heartbeatDetails as number | undefined;
  if (previous === undefined) {
    ctx.heartbeat(1);
    await ctx.sleep(3000);
    return 'the first attempt should have timed out';
  }
  return `resumed from ${previous} on attempt ${ctx.info.attempt}`;
}

/** Heartbeats until cancelled (the cancellation arrives as a heartbeat response). */
export async function untilCancelled(): Promise<string> {
  const ctx = Context.current();
  for (;;) {
    ctx.heartbeat();
    await ctx.sleep(100);
  }
}

/** Runs longer than its workflow's task timeout (the work simulated, not a wait). */
export async function longLocal(ms: number): Promise<string> {
  await Context.current().sleep(ms);
  return `worked ${ms} ms`;
}
