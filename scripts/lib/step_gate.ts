// The functions' steps as the fakes see them, in the order they arrive: each Meta call at the fake Meta
// and each query at the REST gateway. A race test holds one step open (before it runs: a held write
// lands at Meta, or commits, only when released), lets another request run to its end, then releases
// it: every interleaving of two requests is reached by holding each step in turn, with no sleeps.
export interface HeldStep {
  /** Resolves with the step's label once the step arrives and is held. */
  reached: Promise<string>;
  release(): void;
}

export class StepGate {
  /** Labels of the steps passed since the last reset: "meta subscribe", "rpc prepare_disconnect", ... */
  readonly trace: string[] = [];
  #tracing = false;
  #held?: { at: number; reached: PromiseWithResolvers<string>; release: PromiseWithResolvers<void> };

  /** Called by a fake before it runs a step. */
  async pass(label: string): Promise<void> {
    if (!this.#tracing) return; // `deno task dev` runs for hours: nothing is kept until a test asks
    const index = this.trace.push(label) - 1;
    const held = this.#held;
    if (held && index === held.at) {
      held.reached.resolve(label);
      await held.release.promise;
    }
  }

  /** Holds the step numbered `at` (from 0, counted since the last reset) until released. */
  holdAt(at: number): HeldStep {
    const held = { at, reached: Promise.withResolvers<string>(), release: Promise.withResolvers<void>() };
    this.#held = held;
    return { reached: held.reached.promise, release: () => held.release.resolve() };
  }

  /** Starts (or restarts) the trace, and releases a held step. */
  reset(): void {
    this.#tracing = true;
    this.#held?.release.resolve();
    this.#held = undefined;
    this.trace.length = 0;
  }
}
