// instagram-callback: reached by Meta's redirect, so no Supabase JWT; the signed one-time state and
// the doctor's own session at finish are what protect it (see config.toml).
//   GET /instagram-callback?code&state   Meta's redirect: a pending connection for the doctor to confirm
import { Hono } from "hono";
import { loadConfig } from "../_shared/config.ts";
import { importTokenKey } from "../_shared/crypto/page_token.ts";
import { createDatabase } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { onlyMethods } from "../_shared/http/methods.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import { failedAnswer } from "./answer.ts";
import { metaRedirect } from "./meta_redirect.ts";

const config = loadConfig();
const deps = {
  config,
  db: createDatabase(config),
  states: await createOAuthStates(config.appSecret),
  tokenKey: await importTokenKey(config.tokenEncryptionKey),
};

const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-callback");
app.use("*", requestContext("instagram-callback"));

app.use("/", onlyMethods("GET"));
app.get("/", metaRedirect(deps));

app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
app.onError((error, c) => {
  const failure = asAppError(c, error);
  // Meta's redirect is a browser navigation, so its failures go back to the dashboard too.
  const isMetaRedirect = c.req.method === "GET" && c.req.path.replace(/\/+$/, "") === "/instagram-callback";
  return isMetaRedirect ? failedAnswer(c, config, failure) : jsonError(c, failure);
});

export default { fetch: app.fetch };
