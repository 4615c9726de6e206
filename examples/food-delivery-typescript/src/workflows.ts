// The food-delivery order workflow (bundled by the worker into its sandbox).
//
// charge -> wait for "pickedUp" -> wait for "delivered" -> durable sleep -> notify -> "completed".
// If either wait times out, the order is refunded and the workflow ends with
// "refunded: not picked up" / "refunded: not delivered". The query "getStatus" returns the
// current step at any time, also after the workflow has closed.
import { condition, defineQuery, defineSignal, proxyActivities, setHandler, sleep } from '@temporalio/workflow';
import type * as activities from './activities';
import type { Order } from './shared';

const { charge, refund, notify } = proxyActivities<typeof activities>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '200ms' },
});

export const pickedUpSignal = defineSignal<[string]>('pickedUp');
export const deliveredSignal = defineSignal('delivered');
export const getStatusQuery = defineQuery<string>('getStatus');

export async function foodDelivery(order: Order): Promise<string> {
  let status = 'received';
  let pickedUp = false;
  let delivered = false;
  let courier = '';
  setHandler(getStatusQuery, () => status);
  setHandler(pickedUpSignal, (who: string) => {
    courier = who;
    pickedUp = true;
  });
  setHandler(deliveredSignal, () => {
    delivered = true;
  });

  async function refundOrder(reason: string): Promise<string> {
    status = 'refunding';
    await refund(order, reason);
    status = `refunded: ${reason}`;
    return status;
  }

  status = 'charging';
  await charge(order);

  status = 'waiting for pickup';
  // condition() with a timeout is backed by a durable timer; false means it fired first.
  if (!(await condition(() => pickedUp, order.pickupTimeoutSeconds * 1000))) {
    return refundOrder('not picked up');
  }

  status = 'out for delivery';
  if (!(await condition(() => delivered, order.deliveryTimeoutSeconds * 1000))) {
    return refundOrder('not delivered');
  }

  status = 'delivered';
  // A durable timer: it survives worker restarts and server node failures.
  await sleep(order.feedbackDelaySeconds * 1000);

  status = 'notifying';
  await notify(order, `Enjoy your meal! ${courier} delivered ${order.orderId}.`);
  status = 'completed';
  return 'completed';
}
