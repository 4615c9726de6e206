// The order's side effects. In a real service these would call a payment provider and a
// push-notification service; here they print, so you can watch them run (and retry).
import { Context } from '@temporalio/activity';
import type { Order } from './shared';

function log(msg: string): void {
  const { activityType, attempt } = Context.current().info;
  console.log(`  [activity ${activityType}, attempt ${attempt}] ${msg}`);
}

const money = (cents: number) => (cents / 100).toFixed(2);

export async function charge(order: Order): Promise<string> {
  log(`charging ${order.customer} ${money(order.amountCents)} for ${order.orderId}`);
  return `charge-${order.orderId}`;
}

export async function refund(order: Order, reason: string): Promise<string> {
  log(`refunding ${money(order.amountCents)} to ${order.customer} (${reason})`);
  return `refund-${order.orderId}`;
}

export async function notify(order: Order, message: string): Promise<void> {
  log(`to ${order.customer}: ${message}`);
}
