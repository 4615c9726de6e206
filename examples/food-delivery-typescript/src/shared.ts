// Types and names shared by the workflow, the activities, the worker and the starter.
// Workflow code imports only the types from here (the worker bundles workflows.ts and what
// it imports into a sandbox, where `process` does not exist).

export const TASK_QUEUE = 'food-delivery-typescript';

/** Where Keel (or any Temporal service) listens; `keel up` serves Temporal's default. */
export function temporalAddress(): string {
  return process.env.TEMPORAL_ADDRESS || 'localhost:7233';
}

export interface Order {
  orderId: string;
  customer: string;
  items: string[];
  amountCents: number;
  /** How long the restaurant may take to hand the order to a courier before a refund. */
  pickupTimeoutSeconds: number;
  /** How long the courier may take to deliver it before a refund. */
  deliveryTimeoutSeconds: number;
  /** A durable timer between delivery and the "how was your meal?" notification. */
  feedbackDelaySeconds: number;
}
