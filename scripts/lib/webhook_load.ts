// The benchmark's Meta, in a Worker: POSTs deliveries already built and signed (scripts/bench.ts builds
// them with fake_meta_webhooks.ts before the clock starts), `concurrency` at a time, and times each
// answer. On its own thread so that the load does not queue behind the router and the gateway, which
// share the benchmark's main thread.

export interface WebhookPlan {
  url: string;
  deliveries: { body: Uint8Array<ArrayBuffer>; signature: string }[];
  /** The first `warmup` deliveries are sent one at a time and not timed. */
  warmup: number;
  concurrency: number;
}

/** Per timed delivery, request to the whole answer read; `stored` sums the answers' `stored`. */
export interface WebhookRun {
  ms: number[];
  failures: number;
  stored: number;
  seconds: number;
}

async function deliver(
  plan: WebhookPlan,
  index: number,
): Promise<{ ms: number; ok: boolean; stored: number }> {
  const { body, signature } = plan.deliveries[index];
  const started = performance.now();
  const response = await fetch(plan.url, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": signature },
    body,
  });
  const answer = await response.json().catch(() => ({}));
  const ms = performance.now() - started;
  return { ms, ok: response.status === 200, stored: Number(answer?.stored) || 0 };
}

async function run(plan: WebhookPlan): Promise<WebhookRun> {
  const result: WebhookRun = { ms: [], failures: 0, stored: 0, seconds: 0 };
  for (let i = 0; i < plan.warmup; i++) {
    const warm = await deliver(plan, i).catch(() => ({ ok: false, stored: 0 }));
    result.stored += warm.stored;
    if (!warm.ok) result.failures++;
  }
  let next = plan.warmup;
  const started = performance.now();
  await Promise.all(Array.from({ length: plan.concurrency }, async () => {
    while (next < plan.deliveries.length) {
      const delivered = await deliver(plan, next++).catch(() => ({ ms: NaN, ok: false, stored: 0 }));
      result.stored += delivered.stored;
      if (delivered.ok) result.ms.push(delivered.ms);
      else result.failures++;
    }
  }));
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

// Typed here rather than with the deno.worker lib, which would clash with the benchmark that imports these types.
const scope = self as unknown as {
  onmessage: (event: MessageEvent<WebhookPlan>) => void;
  postMessage(message: WebhookRun): void;
};
scope.onmessage = async (event) => scope.postMessage(await run(event.data));
