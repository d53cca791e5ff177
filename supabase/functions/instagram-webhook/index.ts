// instagram-webhook: reached by Meta, never with a Supabase JWT (see config.toml). Deliveries are
// protected by the app secret's signature over their bytes, the handshake by the Verify Token.
//   GET  /instagram-webhook?hub.mode&hub.verify_token&hub.challenge   the verification handshake
//   POST /instagram-webhook                                            a signed delivery of events
// hono/quick: the LinearRouter registers routes at once instead of compiling them on the first request.
import { Hono } from "hono/quick";
import { AppError } from "../_shared/errors.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { onlyMethods } from "../_shared/http/methods.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { serveConfigured } from "../_shared/http/serve_configured.ts";
import { delivery } from "./delivery.ts";
import { WEBHOOK_CONFIG, webhookDeps } from "./deps.ts";
import { verification } from "./verification.ts";

export default await serveConfigured("instagram-webhook", WEBHOOK_CONFIG, async (config) => {
  const deps = await webhookDeps(config);

  const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-webhook");
  app.use("*", requestContext("instagram-webhook"));

  app.use("/", onlyMethods("GET", "POST"));
  app.get("/", verification(deps));
  app.post("/", delivery(deps));

  app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));

  return app;
});
