// The benchmark's doctors, in a Worker: each flow is connect -> Allow on the Meta sandbox -> Meta's
// redirect to the callback -> finish from the doctor's session. On its own thread so that the load it
// generates does not queue behind the fake Meta and the gateway, which share the benchmark's main thread.
import { decideDialog } from "./fake_meta.ts";

export interface LoadPlan {
  /** The connect function's URL; the dialog's redirect leads to the callback, and finish is `${connectUrl}/finish`. */
  connectUrl: string;
  /** One per flow: the doctor's session token and the Meta user who approves. */
  flows: { token: string; metaUser: string }[];
  warmup: number;
  concurrency: number;
}

/** Per measured flow, the time our side took: connect + callback + finish (Meta's dialog left out). */
export type LoadMessage =
  | { kind: "warmed" }
  | { kind: "done"; flowMs: number[]; failures: number; seconds: number };

async function flow(plan: LoadPlan, index: number): Promise<{ ms: number; ok: boolean }> {
  const { token, metaUser } = plan.flows[index];
  const timed = async (request: () => Promise<Response>) => {
    const started = performance.now();
    const response = await request();
    const body = await response.json().catch(() => ({}));
    return { ms: performance.now() - started, ok: response.ok, body };
  };
  const connect = await timed(() =>
    fetch(plan.connectUrl, { headers: { authorization: `Bearer ${token}` } })
  );
  const redirect = await decideDialog(connect.body.url, { decision: "allow", user: metaUser });
  const callback = await timed(() => fetch(redirect, { redirect: "manual" }));
  const finish = await timed(() =>
    fetch(`${plan.connectUrl}/finish`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ pending: callback.body.pending }),
    })
  );
  return {
    ms: connect.ms + callback.ms + finish.ms,
    ok: connect.ok && callback.ok && finish.ok && finish.body.connected === true,
  };
}

async function run(plan: LoadPlan): Promise<LoadMessage> {
  const flowMs: number[] = [];
  let failures = 0;
  let next = plan.warmup;
  const started = performance.now();
  await Promise.all(Array.from({ length: plan.concurrency }, async () => {
    while (next < plan.flows.length) {
      const result = await flow(plan, next++).catch(() => ({ ms: NaN, ok: false }));
      if (result.ok) flowMs.push(result.ms);
      else failures++;
    }
  }));
  return { kind: "done", flowMs, failures, seconds: (performance.now() - started) / 1000 };
}

// Typed here rather than with the deno.worker lib, which would clash with the benchmark that imports these types.
const scope = self as unknown as {
  onmessage: (event: MessageEvent<LoadPlan | "go">) => void;
  postMessage(message: LoadMessage): void;
};
let plan: LoadPlan | undefined;
scope.onmessage = async (event) => {
  if (event.data === "go") {
    scope.postMessage(await run(plan!));
    return;
  }
  plan = event.data;
  for (let i = 0; i < plan.warmup; i++) await flow(plan, i); // JIT, pools, caches
  scope.postMessage({ kind: "warmed" });
};
