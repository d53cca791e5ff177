// Any thrown value as an AppError and a JSON answer. Unexpected errors are logged in full (scrubbed)
// and become 500s; a user's mistake never does.
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { AppError, type ErrorCode } from "../errors.ts";
import type { AppEnv } from "./request_context.ts";

const BY_STATUS: Record<number, ErrorCode> = {
  401: "unauthorized",
  404: "not_found",
  405: "method_not_allowed",
  413: "payload_too_large",
  415: "unsupported_media_type",
};

export function asAppError(c: Context<AppEnv>, error: unknown): AppError {
  let appError: AppError;
  if (error instanceof AppError) appError = error;
  else if (error instanceof HTTPException && BY_STATUS[error.status]) {
    appError = new AppError(BY_STATUS[error.status], { cause: error });
  } else {
    c.var.log.error("unexpected_error", { error });
    appError = new AppError("internal_error", { cause: error });
  }
  // Why a request failed, for the operator: Meta's codes, the SQLSTATE, a missing permission.
  if (appError.cause) {
    const level = appError.status >= 500 ? "warn" : "info";
    c.var.log[level]("request_failed", { error_code: appError.code, cause: appError.cause });
  }
  c.set("errorCode", appError.code);
  return appError;
}

export function jsonError(c: Context<AppEnv>, error: AppError): Response {
  if (error.retryAfterSeconds) c.header("retry-after", String(error.retryAfterSeconds));
  return c.json(
    { error: { code: error.code, message: error.message }, correlation_id: c.var.correlationId },
    error.status as 400,
  );
}
