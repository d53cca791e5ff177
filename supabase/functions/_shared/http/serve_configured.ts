// A function's entry point on its configuration: the app the function builds from a valid one. On an
// invalid one the function has printed what is wrong and exited; where the runtime does not let it
// exit (Supabase's edge runtime ignores Deno.exit), it answers every request with a 503 instead of
// crashing on the missing configuration, and says so in the log.
import { type Config, type ConfigPart, loadConfigOrExit } from "../config.ts";
import { ERRORS } from "../errors.ts";
import { createLogger } from "../log.ts";

type Handler = { fetch: (request: Request) => Response | Promise<Response> };

/** `parts`: the parts of the configuration the function uses; only their variables are read and checked. */
export async function serveConfigured<P extends ConfigPart>(
  functionName: string,
  parts: readonly [P, ...P[]],
  build: (config: Config<P>) => Handler | Promise<Handler>,
): Promise<Handler> {
  const config = loadConfigOrExit(functionName, parts);
  if (config) return await build(config);
  const log = createLogger({ fn: functionName });
  const [status, message] = ERRORS.not_configured;
  return {
    fetch(request) {
      log.error("not_configured", { method: request.method, path: new URL(request.url).pathname });
      return Response.json({ error: { code: "not_configured", message } }, {
        status,
        headers: { "cache-control": "no-store", "retry-after": "60" },
      });
    },
  };
}
