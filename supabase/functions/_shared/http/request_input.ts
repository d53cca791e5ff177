// What a request brings: bodies of the doctor-facing routes at most 16 KiB (413), JSON only (415),
// well-formed (400); bodies and query strings of the route's shape (400 naming the fields). Each is
// refused before anything is recorded.
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import type * as z from "zod/mini";
import { AppError } from "../errors.ts";
import type { AppEnv } from "./request_context.ts";

const MAX_BODY_BYTES = 16 * 1024;

export const limitBody = bodyLimit({
  maxSize: MAX_BODY_BYTES,
  onError: () => {
    throw new AppError("payload_too_large");
  },
});

/** The body parsed with `schema`; an empty body counts as `{}` (supabase.functions.invoke sends none). */
export async function readJsonBody<T>(c: Context<AppEnv>, schema: z.ZodMiniType<T>): Promise<T> {
  const text = await c.req.text();
  let value: unknown = {};
  if (text.trim() !== "") {
    const type = c.req.header("content-type")?.split(";")[0].trim().toLowerCase() ?? "";
    if (type !== "application/json" && !/^application\/[\w.+-]+\+json$/.test(type)) {
      throw new AppError("unsupported_media_type", { message: "Send the body as application/json." });
    }
    try {
      value = JSON.parse(text);
    } catch {
      throw new AppError("invalid_request", { message: "The body is not valid JSON." });
    }
  }
  return parseInput(schema, value);
}

/** `value` checked against `schema`; a mismatch is a 400 naming the fields, never a 500. */
export function parseInput<T>(schema: z.ZodMiniType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join(".") || "body"))];
    throw new AppError("invalid_request", {
      message: `Missing or malformed: ${fields.join(", ")}.`,
    });
  }
  return parsed.data;
}
