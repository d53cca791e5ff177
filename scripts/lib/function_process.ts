// Runs one edge function the way the platform does: its entry point's `export default { fetch }`
// served by `deno serve` in a process of its own, with only the environment we give it.
import { edgeFunction } from "./edge_functions.ts";

const ROOT = new URL("../../", import.meta.url);
const LISTENING = /Listening on https?:\/\/[^:]+:(\d+)/;

export interface FunctionProcess {
  name: string;
  url: string;
  pid: number;
  /** Everything the process printed so far (stdout and stderr). */
  output(): string;
  /** Milliseconds from spawn to listening. */
  startupMs: number;
  /** CPU time (user + system) the process has used so far, in milliseconds (Linux). */
  cpuMs(): Promise<number>;
  stop(): Promise<void>;
}

export interface StartOptions {
  /**
   * Each whole line the function prints, as it prints it (the local stack shows them), except
   * `deno serve`'s own "Listening on" line: its port is ours to route to, not a URL to use.
   */
  onLine?: (line: string) => void;
  /** What to serve, relative to the repository (default: the function's entrypoint in config.toml). */
  entry?: string;
  /** The checkout to serve it from (default: this one). */
  root?: URL;
}

export async function startFunction(
  name: string,
  env: Record<string, string>,
  { onLine, entry, root = ROOT }: StartOptions = {},
): Promise<FunctionProcess> {
  const started = performance.now();
  const child = serveCommand(entry ?? edgeFunction(name, root).entrypoint, env, root).spawn();

  let output = "";
  let listening = false;
  let resolvePort: (port: string) => void;
  const port = new Promise<string>((resolve) => (resolvePort = resolve));
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    let partial = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      output += chunk;
      if (onLine) {
        const lines = (partial + chunk).split("\n");
        partial = lines.pop()!;
        for (const line of lines) if (!LISTENING.test(line)) onLine(line);
      }
      // Searched only until found: the output grows with every request's log line.
      const match = listening ? null : output.match(LISTENING);
      if (match) {
        listening = true;
        resolvePort(match[1]);
      }
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const exited = child.status.then((status) => {
    throw new Error(`${name} exited with code ${status.code} before listening:\n${output}`);
  });
  const listeningPort = await Promise.race([port, exited]);
  exited.catch(() => {});

  return {
    name,
    url: `http://127.0.0.1:${listeningPort}`,
    pid: child.pid,
    output: () => output,
    startupMs: performance.now() - started,
    cpuMs: () => processCpuMs(child.pid),
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* already gone */ }
      await child.status;
      await drained;
    },
  };
}

/** Starts a function that is expected to fail at start-up; returns its exit code and output. */
export async function bootFailure(
  name: string,
  env: Record<string, string>,
): Promise<{ code: number; output: string }> {
  const result = await serveCommand(edgeFunction(name).entrypoint, env, ROOT, AbortSignal.timeout(30_000))
    .output();
  const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: result.code, output: decode(result.stdout) + decode(result.stderr) };
}

/** `deno serve` on a free loopback port, with only the given variables (plus where Deno keeps its cache). */
function serveCommand(
  entry: string,
  env: Record<string, string>,
  root: URL,
  signal?: AbortSignal,
): Deno.Command {
  const denoDir = Deno.env.get("DENO_DIR");
  return new Deno.Command(Deno.execPath(), {
    args: [
      "serve",
      "--allow-net",
      "--allow-env",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      entry,
    ],
    cwd: root,
    env: {
      ...env,
      NO_COLOR: "1",
      HOME: Deno.env.get("HOME") ?? "",
      ...(denoDir ? { DENO_DIR: denoDir } : {}),
    },
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    signal,
  });
}

// /proc/<pid>/stat: utime and stime are the 14th and 15th fields, in clock ticks; the name (2nd) is in
// parentheses and may hold spaces, so fields are counted after its closing one.
const TICKS_PER_SECOND = 100; // USER_HZ: fixed at 100 in Linux's user-space ABI

async function processCpuMs(pid: number): Promise<number> {
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}
