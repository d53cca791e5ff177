// What every request of both functions gets: a correlation id of our own and a logger carrying it,
// headers that keep answers out of caches and content sniffing, and one access-log line.
import { createMiddleware } from "hono/factory";
import { createLogger, type Logger } from "../log.ts";

export type AppEnv = {
  Variables: {
    log: Logger;
    correlationId: string;
    /** The outcome's error code, if any, for the access log. */
    errorCode?: string;
    /** The signed-in doctor (set by requireDoctor). */
    doctorId: string;
    /** Failures answer with a redirect to the dashboard (the OAuth return is a browser navigation). */
    answerByRedirect?: boolean;
    /** What the route adds to the request's one log line (counts, never content). */
    outcome?: Record<string, unknown>;
  };
};

// A caller's own id is only logged, as client_correlation_id, and only in this shape: ours is the
// one in answers and the audit log, so no caller can choose what the audit trail says.
const CLIENT_CORRELATION_ID = /^[A-Za-z0-9._-]{1,64}$/;

export function requestContext(functionName: string) {
  const baseLog = createLogger({ fn: functionName });
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = performance.now();
    const correlationId = crypto.randomUUID();
    const offered = c.req.header("x-correlation-id");
    const log = baseLog.child({
      correlation_id: correlationId,
      client_correlation_id: offered && CLIENT_CORRELATION_ID.test(offered) ? offered : undefined,
    });
    c.set("correlationId", correlationId);
    c.set("log", log);
    await next();
    c.header("x-correlation-id", correlationId);
    c.header("cache-control", "no-store");
    c.header("x-content-type-options", "nosniff");
    // Answers carry OAuth states, pending tokens and codes in URLs: never pass them on as a Referer.
    c.header("referrer-policy", "no-referrer");
    // The path only: query strings here carry OAuth codes and states.
    log.info("request", {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      error_code: c.get("errorCode"),
      ...c.get("outcome"),
      ms: Math.round(performance.now() - started),
    });
  });
}
