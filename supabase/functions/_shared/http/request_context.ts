// What both Hono apps share: a correlation id and a logger per request, one access-log line per
// request, headers that keep answers out of caches, and the mapping of any error to a safe answer.
import type { Context } from "hono";
import { createMiddleware } from "hono/factory";
import { HTTPException } from "hono/http-exception";
import { AppError } from "./errors.ts";
import { createLogger, type Logger } from "./log.ts";

export type AppEnv = {
  Variables: {
    log: Logger;
    correlationId: string;
    /** The outcome's error code, if any, for the access log. */
    errorCode?: string;
  };
};

const CORRELATION_ID = /^[\w.:-]{8,128}$/;

export function requestContext(functionName: string) {
  const baseLog = createLogger({ fn: functionName });
  return createMiddleware<AppEnv>(async (c, next) => {
    const started = performance.now();
    const offered = c.req.header("x-correlation-id");
    const correlationId = offered && CORRELATION_ID.test(offered) ? offered : crypto.randomUUID();
    const log = baseLog.child({ correlation_id: correlationId });
    c.set("correlationId", correlationId);
    c.set("log", log);
    await next();
    c.header("x-correlation-id", correlationId);
    c.header("cache-control", "no-store");
    c.header("referrer-policy", "no-referrer");
    // The path only: query strings here carry OAuth codes and states.
    log.info("request", {
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      error_code: c.get("errorCode"),
      ms: Math.round(performance.now() - started),
    });
  });
}

/** Any thrown value as an AppError; unexpected ones are logged in full (scrubbed) and become 500s. */
export function asAppError(c: Context<AppEnv>, error: unknown): AppError {
  let appError: AppError;
  if (error instanceof AppError) appError = error;
  else if (error instanceof HTTPException && error.status === 401) appError = new AppError("unauthorized");
  else if (error instanceof HTTPException && error.status === 404) appError = new AppError("not_found");
  else {
    c.var.log.error("unexpected_error", { error });
    appError = new AppError("internal_error", { cause: error });
  }
  if (appError.status >= 500 && appError.cause) {
    c.var.log.warn("request_failed", { error_code: appError.code, cause: appError.cause });
  }
  c.set("errorCode", appError.code);
  return appError;
}

export function jsonError(c: Context<AppEnv>, error: AppError): Response {
  return c.json(
    { error: { code: error.code, message: error.message }, correlation_id: c.var.correlationId },
    error.status as 400,
  );
}
