// The query string Meta sends to the callback: `code` and `state`, or `error=access_denied` (and
// error_reason, error_description) when the doctor cancels. `page_id` is ours and optional.
import { z } from "zod";
import { AppError } from "./errors.ts";

const Success = z.object({
  code: z.string().min(1).max(2048).regex(/^[\w.~+/=-]+$/),
  state: z.string().min(1).max(200),
  page_id: z.string().regex(/^\d{1,32}$/).optional(),
});

export interface CallbackParams {
  code: string;
  state: string;
  pageId?: string;
}

export function parseCallbackParams(query: URLSearchParams): CallbackParams {
  const error = query.get("error");
  if (error === "access_denied") throw new AppError("access_denied");
  if (error) throw new AppError("meta_error", { cause: { meta_error: error.slice(0, 64) } });

  const parsed = Success.safeParse(Object.fromEntries(query));
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => String(issue.path[0])))];
    throw new AppError("invalid_request", {
      message: `Missing or malformed parameter: ${fields.join(", ")}.`,
    });
  }
  return { code: parsed.data.code, state: parsed.data.state, pageId: parsed.data.page_id };
}
