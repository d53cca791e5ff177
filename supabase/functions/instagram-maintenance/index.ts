// instagram-maintenance: the links' upkeep, for a schedule (pg_cron + pg_net: README, "Keeping links
// alive"). Never called by a browser or by Meta: only the project's secret key passes (see
// config.toml: the platform's JWT check is off, the key is checked here).
//   POST /instagram-maintenance   one run: check links at Meta, restore subscriptions, flag what needs
//                                 the doctor, re-encrypt tokens under the primary key, sweep; a summary
// hono/quick: the LinearRouter registers routes at once instead of compiling them on the first request.
import { Hono } from "hono/quick";
import { AppError } from "../_shared/errors.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { onlyMethods } from "../_shared/http/methods.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { limitBody } from "../_shared/http/request_input.ts";
import { requireSecretKey } from "../_shared/http/secret_key_auth.ts";
import { serveConfigured } from "../_shared/http/serve_configured.ts";
import { MAINTENANCE_CONFIG, maintenanceDeps } from "./deps.ts";
import { runMaintenance } from "./run.ts";

export default await serveConfigured("instagram-maintenance", MAINTENANCE_CONFIG, async (config) => {
  const deps = await maintenanceDeps(config);

  const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-maintenance");
  app.use("*", requestContext("instagram-maintenance"));

  app.use("/", onlyMethods("POST"));
  app.post("/", limitBody, requireSecretKey(config), runMaintenance(deps));

  app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
  app.onError((error, c) => jsonError(c, asAppError(c, error)));

  return app;
});
