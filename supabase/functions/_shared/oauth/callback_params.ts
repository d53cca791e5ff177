// The query string Meta sends to the callback: `code` and `state`, or `error=access_denied` (with
// error_reason and error_description, and our `state`) when the doctor cancels. Anything else we
// might once have read (such as page_id) is ignored: what the flow needs is signed into the state.
import { z } from "zod";
import { AppError } from "../errors.ts";
import { parseInput } from "../http/json_body.ts";

const STATE = z.string().min(1).max(200);

const Approved = z.object({
  code: z.string().min(1).max(2048).regex(/^[\w.~+/=-]+$/),
  state: STATE,
});

export type CallbackParams = { denied: false; code: string; state: string } | {
  denied: true;
  state?: string;
};

export function parseCallbackParams(query: URLSearchParams): CallbackParams {
  const error = query.get("error");
  if (error === "access_denied") {
    const state = STATE.safeParse(query.get("state"));
    return { denied: true, state: state.success ? state.data : undefined };
  }
  if (error) throw new AppError("meta_error", { cause: { meta_error: error.slice(0, 64) } });
  const { code, state } = parseInput(Approved, { code: query.get("code"), state: query.get("state") });
  return { denied: false, code, state };
}
