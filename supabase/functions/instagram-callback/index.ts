// instagram-callback: reached by Meta, never with a Supabase JWT (see config.toml). The redirect is
// protected by the signed one-time state and, for the link itself, by the doctor's session at finish;
// Meta's server callbacks by their signed_request.
//   GET  /instagram-callback?code&state        Meta's redirect: a pending connection for the doctor
//   POST /instagram-callback/deauthorize        Meta's Deauthorize callback
//   POST /instagram-callback/data-deletion      Meta's Data Deletion Request callback
//   GET  /instagram-callback/data-deletion?code the status of a data deletion request (either app's)
//   POST /instagram-callback/instagram/deauthorize      the Instagram app's Deauthorize callback
//   POST /instagram-callback/instagram/data-deletion    the Instagram app's Data Deletion Request callback
//   GET  /instagram-callback/instagram/data-deletion?code  the same status route
// hono/quick: the LinearRouter registers routes at once instead of compiling them on the first request.
// Few doctors link an account, so most requests meet a new instance: its first answer is what counts.
import { Hono } from "hono/quick";
import { AppError } from "../_shared/errors.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { onlyMethods } from "../_shared/http/methods.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { serveConfigured } from "../_shared/http/serve_configured.ts";
import { failedAnswer } from "./answer.ts";
import { dataDeletion } from "./data_deletion.ts";
import { deauthorize } from "./deauthorize.ts";
import { CALLBACK_CONFIG, callbackDeps } from "./deps.ts";
import { instagramAppCallbacks } from "./instagram_app_callbacks.ts";
import { oauthReturn } from "./oauth_return.ts";
import { limitSignedRequestBody } from "./signed_request_body.ts";

export default await serveConfigured("instagram-callback", CALLBACK_CONFIG, async (config) => {
  const deps = await callbackDeps(config);
  const deletion = await dataDeletion(deps);
  const instagramApp = await instagramAppCallbacks(deps);

  const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-callback");
  app.use("*", requestContext("instagram-callback"));

  app.use("/", onlyMethods("GET"));
  app.get("/", oauthReturn(deps));
  app.use("/deauthorize", onlyMethods("POST"));
  app.post("/deauthorize", limitSignedRequestBody, deauthorize(deps));
  app.use("/data-deletion", onlyMethods("GET", "POST"));
  app.post("/data-deletion", limitSignedRequestBody, deletion.request);
  app.get("/data-deletion", deletion.status);
  app.use("/instagram/deauthorize", onlyMethods("POST"));
  app.post("/instagram/deauthorize", limitSignedRequestBody, instagramApp.deauthorize);
  app.use("/instagram/data-deletion", onlyMethods("GET", "POST"));
  app.post("/instagram/data-deletion", limitSignedRequestBody, instagramApp.dataDeletion);
  app.get("/instagram/data-deletion", deletion.status);

  app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
  app.onError((error, c) => {
    const failure = asAppError(c, error);
    return c.var.answerByRedirect ? failedAnswer(c, config, failure) : jsonError(c, failure);
  });

  return app;
});
