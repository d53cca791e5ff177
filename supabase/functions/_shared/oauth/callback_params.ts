// The query string Meta sends to the callback: `code` and `state`, or `error` (access_denied when the
// doctor cancels; with error_reason, error_description and our `state`). Anything else we might once
// have read (such as page_id) is ignored: what the flow needs is signed into the state.
import * as z from "zod/mini";
import { AppError } from "../errors.ts";
import { parseInput } from "../http/request_input.ts";

const STATE = z.string().check(z.minLength(1), z.maxLength(200));

const Approved = z.object({
  code: z.string().check(z.minLength(1), z.maxLength(2048), z.regex(/^[\w.~+/=-]+$/)),
  state: STATE,
});

export type CallbackParams = { failed?: undefined; code: string; state: string } | {
  /** What to answer: access_denied for a cancel, meta_error for any other error Meta reports. */
  failed: AppError;
  state?: string;
};

export function parseCallbackParams(query: URLSearchParams): CallbackParams {
  const error = query.get("error");
  if (error) {
    const state = STATE.safeParse(query.get("state"));
    return {
      failed: error === "access_denied"
        ? new AppError("access_denied")
        : new AppError("meta_error", { cause: { meta_error: error.slice(0, 64) } }),
      state: state.success ? state.data : undefined,
    };
  }
  const { code, state } = parseInput(Approved, { code: query.get("code"), state: query.get("state") });
  return { code, state };
}
