// The benchmark's doctors, in a Worker: each flow is connect -> Allow on the Meta sandbox -> Meta's
// redirect to the callback -> finish from the doctor's session. On its own thread so that the load it generates does not queue behind the
// fake Meta and the gateway, which share the benchmark's main thread.
import { decideDialog } from "./fake_meta.ts";

export interface LoadPlan {
  connectUrl: string;
  /** One per flow: the doctor's session token and the Meta user who approves. */
  flows: { token: string; metaUser: string }[];
  warmup: number;
  concurrency: number;
}

export type LoadMessage =
  | { kind: "warmed" }
  | { kind: "done"; connectMs: number[]; callbackMs: number[]; failures: number; seconds: number };

async function flow(plan: LoadPlan, index: number) {
  const { token, metaUser } = plan.flows[index];
  const started = performance.now();
  const response = await fetch(plan.connectUrl, { headers: { authorization: `Bearer ${token}` } });
  const { url } = await response.json();
  const connectMs = performance.now() - started;
  const redirect = await decideDialog(url, { decision: "allow", user: metaUser });
  const callbackStarted = performance.now();
  const result = await fetch(redirect, { redirect: "manual" });
  const { pending } = await result.json();
  const callbackMs = performance.now() - callbackStarted;
  const finished = await fetch(`${plan.connectUrl}/finish`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({ pending }),
  });
  await finished.body?.cancel();
  return { connectMs, callbackMs, ok: result.status === 200 && finished.status === 200 };
}

async function run(plan: LoadPlan): Promise<LoadMessage> {
  const connectMs: number[] = [];
  const callbackMs: number[] = [];
  let failures = 0;
  let next = plan.warmup;
  const started = performance.now();
  await Promise.all(Array.from({ length: plan.concurrency }, async () => {
    while (next < plan.flows.length) {
      const result = await flow(plan, next++);
      connectMs.push(result.connectMs);
      callbackMs.push(result.callbackMs);
      if (!result.ok) failures++;
    }
  }));
  return { kind: "done", connectMs, callbackMs, failures, seconds: (performance.now() - started) / 1000 };
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
