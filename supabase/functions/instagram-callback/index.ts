// GET /functions/v1/instagram-callback?code=...&state=...   (Meta's redirect; no Supabase JWT)
// Finishes the Instagram link: state -> code -> long-lived token -> the doctor's Pages -> one
// transaction that consumes the state, stores the encrypted Page token and writes the audit entry.
import { Hono } from "hono";
import { loadConfig } from "../_shared/config.ts";
import { connectedResponse, failedResponse } from "../_shared/callback_response.ts";
import { createDatabase } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import { type AppEnv, asAppError, requestContext } from "../_shared/http.ts";
import { createMetaGraph } from "../_shared/meta_graph.ts";
import { createOAuthStates } from "../_shared/oauth_state.ts";
import { choosePage } from "../_shared/page_choice.ts";
import { encryptPageToken, importTokenKey } from "../_shared/token_crypto.ts";
import { parseCallbackParams } from "../_shared/callback_params.ts";

const config = loadConfig();
const states = await createOAuthStates(config.appSecret);
const tokenKey = await importTokenKey(config.tokenEncryptionKey);
const db = createDatabase(config);

const app = new Hono<AppEnv>({ strict: false }).basePath("/instagram-callback");

app.use("*", requestContext("instagram-callback"));

app.get("/", async (c) => {
  const log = c.var.log;
  const meta = createMetaGraph(config, log);
  const params = parseCallbackParams(new URL(c.req.url).searchParams);

  const state = await states.verify(params.state);
  await db.checkOAuthState(state.doctorId, state.nonceHash);

  const deadline = AbortSignal.timeout(config.callbackDeadlineMs);
  const shortLivedToken = await meta.exchangeCode(params.code, deadline);
  const userToken = await meta.exchangeForLongLivedToken(shortLivedToken, deadline);
  const page = choosePage(await meta.listPages(userToken, deadline), params.pageId ?? state.pageId);

  const link = await db.linkDoctorInstagram({
    doctorId: state.doctorId,
    nonceHash: state.nonceHash,
    pageId: page.id,
    encryptedToken: await encryptPageToken(tokenKey, page.accessToken, {
      doctorId: state.doctorId,
      pageId: page.id,
    }),
    pageName: page.name,
    instagramUsername: page.instagramUsername,
    instagramAccountId: page.instagramAccountId,
    correlationId: c.var.correlationId,
  });

  log.info("instagram_linked", {
    doctor_id: link.doctor_id,
    page_id: link.instagram_page_id,
    previous_page_id: link.previous_page_id,
  });
  return connectedResponse(c, config, link);
});

app.notFound((c) => failedResponse(c, config, asAppError(c, new AppError("not_found"))));
app.onError((error, c) => failedResponse(c, config, asAppError(c, error)));

export default { fetch: app.fetch };
