// Places an order and plays the restaurant and the courier: sends the signals with small
// pauses, queries the status between the steps and checks each answer.
//
// `npm run starter [-- --scenario delivered|no-pickup]` needs a worker (npm run worker);
// run.ts runs both in one process.
import { randomUUID } from 'crypto';
import { Client, Connection, WorkflowHandle } from '@temporalio/client';
import { TASK_QUEUE, temporalAddress, type Order } from './shared';
import { deliveredSignal, foodDelivery, getStatusQuery, pickedUpSignal } from './workflows';

export type ScenarioName = 'delivered' | 'no-pickup';

function envSeconds(name: string, dflt: number): number {
  const v = process.env[name];
  return v ? Number(v) : dflt;
}

const pauseFor = (seconds: number) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

class Scenario {
  private readonly started = Date.now();
  readonly failures: string[] = [];

  constructor(private readonly client: Client) {}

  say(msg: string): void {
    const t = ((Date.now() - this.started) / 1000).toFixed(2).padStart(6);
    console.log(`[${t}s] ${msg}`);
  }

  expect(what: string, got: string, want: string): void {
    if (got === want) {
      this.say(`ok   ${what}: '${got}'`);
    } else {
      this.say(`FAIL ${what}: got '${got}', expected '${want}'`);
      this.failures.push(`${what}: got '${got}', expected '${want}'`);
    }
  }

  status(handle: WorkflowHandle<typeof foodDelivery>): Promise<string> {
    return handle.query(getStatusQuery);
  }

  /** Queries until the status leaves the `passing` steps (ones the workflow may still be in
   * because an activity is running), then checks it is `want`. */
  async statusAfter(handle: WorkflowHandle<typeof foodDelivery>, want: string, passing: string[]): Promise<void> {
    const deadline = Date.now() + 60_000;
    let got = await this.status(handle);
    while (passing.includes(got) && Date.now() < deadline) {
      await pauseFor(0.1);
      got = await this.status(handle);
    }
    this.expect('status', got, want);
  }

  async run(scenario: ScenarioName): Promise<boolean> {
    const pause = envSeconds('STEP_PAUSE_SECONDS', 1);
    const order: Order = {
      orderId: `order-${randomUUID().slice(0, 8)}`,
      customer: 'Ada',
      items: ['margherita', 'tiramisu'],
      amountCents: 2350,
      pickupTimeoutSeconds: envSeconds('PICKUP_TIMEOUT_SECONDS', 60),
      deliveryTimeoutSeconds: envSeconds('DELIVERY_TIMEOUT_SECONDS', 60),
      feedbackDelaySeconds: envSeconds('FEEDBACK_DELAY_SECONDS', 2),
    };
    if (scenario === 'no-pickup') {
      // Nobody picks the order up: keep the wait short so the refund comes quickly.
      order.pickupTimeoutSeconds = envSeconds('NO_PICKUP_TIMEOUT_SECONDS', 3);
    }

    const handle = await this.client.workflow.start(foodDelivery, {
      args: [order],
      taskQueue: TASK_QUEUE,
      workflowId: order.orderId,
    });
    this.say(`started workflow ${order.orderId} (run ${handle.firstExecutionRunId})`);
    await this.statusAfter(handle, 'waiting for pickup', ['received', 'charging']);

    if (scenario === 'no-pickup') {
      this.say(`nobody picks the order up within ${order.pickupTimeoutSeconds}s ...`);
      this.expect('result', await handle.result(), 'refunded: not picked up');
      this.expect('status after the end', await this.status(handle), 'refunded: not picked up');
      return this.failures.length === 0;
    }

    await pauseFor(pause);
    await handle.signal(pickedUpSignal, 'courier Grace');
    this.say('signalled pickedUp');
    this.expect('status', await this.status(handle), 'out for delivery');

    await pauseFor(pause);
    await handle.signal(deliveredSignal);
    this.say('signalled delivered');
    this.expect('status', await this.status(handle), 'delivered');

    this.say(`waiting for the result (a ${order.feedbackDelaySeconds}s durable timer, then notify)`);
    this.expect('result', await handle.result(), 'completed');
    this.expect('status after the end', await this.status(handle), 'completed');
    return this.failures.length === 0;
  }
}

export async function runScenario(client: Client, scenario: ScenarioName): Promise<boolean> {
  const s = new Scenario(client);
  const ok = await s.run(scenario);
  s.say(ok ? `scenario '${scenario}': all checks passed` : `scenario '${scenario}': ${s.failures.length} check(s) failed`);
  return ok;
}

export function parseScenario(argv: string[]): ScenarioName {
  const i = argv.indexOf('--scenario');
  const name = i >= 0 ? argv[i + 1] : 'delivered';
  if (name !== 'delivered' && name !== 'no-pickup') {
    throw new Error(`unknown scenario '${name}' (delivered | no-pickup)`);
  }
  return name;
}

export async function connectClient(): Promise<{ client: Client; connection: Connection }> {
  const connection = await Connection.connect({ address: temporalAddress() });
  return { client: new Client({ connection }), connection };
}

async function main(): Promise<number> {
  const scenario = parseScenario(process.argv.slice(2));
  const { client, connection } = await connectClient();
  try {
    return (await runScenario(client, scenario)) ? 0 : 1;
  } finally {
    await connection.close();
  }
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
