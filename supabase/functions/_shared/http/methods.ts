// Hono answers HEAD with the GET handler. A route with side effects must not run for HEAD (or any
// method it does not declare): this answers 405 with Allow instead.
import { createMiddleware } from "hono/factory";
import { AppError } from "../errors.ts";
import type { AppEnv } from "./request_context.ts";

export function onlyMethods(...methods: string[]) {
  return createMiddleware<AppEnv>(async (c, next) => {
    if (!methods.includes(c.req.method)) {
      c.header("allow", methods.join(", "));
      throw new AppError("method_not_allowed");
    }
    await next();
  });
}
