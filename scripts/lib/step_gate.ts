// The functions' steps as the fakes see them, in the order they arrive: each Meta call at the fake Meta
// and each query at the REST gateway. A race test holds steps open (before they run: a held write lands
// at Meta, or commits, only when released), lets other requests run meanwhile, then releases them:
// every interleaving of two requests is reached by holding each step in turn (holdAt), and three
// requests are put in order by holding steps by their label (holdNext). No sleeps.
export interface HeldStep {
  /** Resolves with the step's label once the step arrives and is held. */
  reached: Promise<string>;
  release(): void;
}

interface Hold {
  matches(index: number, label: string): boolean;
  reached: PromiseWithResolvers<string>;
  release: PromiseWithResolvers<void>;
}

export class StepGate {
  /** Labels of the steps passed since the last reset: "meta subscribe", "rpc prepare_disconnect", ... */
  readonly trace: string[] = [];
  #tracing = false;
  #holds: Hold[] = [];

  /** Called by a fake before it runs a step. */
  async pass(label: string): Promise<void> {
    if (!this.#tracing) return; // `deno task dev` runs for hours: nothing is kept until a test asks
    const index = this.trace.push(label) - 1;
    // Every armed hold sees every step (holdNext counts arrivals); the first that matches holds it.
    const [hold] = this.#holds.filter((held) => held.matches(index, label));
    if (!hold) return;
    hold.reached.resolve(label);
    await hold.release.promise;
  }

  /** Holds the step numbered `at` (from 0, counted since the last reset) until released. */
  holdAt(at: number): HeldStep {
    return this.#hold((index) => index === at);
  }

  /** Holds the `nth` step labelled `label` to arrive from now on (1: the next one). */
  holdNext(label: string, nth = 1): HeldStep {
    let left = nth;
    return this.#hold((_, arrived) => arrived === label && --left === 0);
  }

  /** Starts (or restarts) the trace, and releases every held step. */
  reset(): void {
    this.#tracing = true;
    for (const hold of this.#holds) hold.release.resolve();
    this.#holds = [];
    this.trace.length = 0;
  }

  #hold(matches: Hold["matches"]): HeldStep {
    let used = false;
    const hold: Hold = {
      matches: (index, label) => !used && (used = matches(index, label)),
      reached: Promise.withResolvers<string>(),
      release: Promise.withResolvers<void>(),
    };
    this.#holds.push(hold);
    return { reached: hold.reached.promise, release: () => hold.release.resolve() };
  }
}
