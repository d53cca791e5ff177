// GET /instagram-callback?code&state: Meta's redirect, in whatever browser pressed Allow. It links
// nothing: the state is claimed (one attempt, before any Meta call), the code is exchanged with the
// flow's PKCE verifier, one read gets the Facebook user, the permissions they granted and their Pages;
// the usable Pages are kept as a pending connection for ten minutes, and the browser gets a token for
// it. Only the doctor who started the flow can turn it into a link, from their own session
// (instagram-connect/finish).
import type { Context } from "hono";
import type { PendingPage } from "../_shared/database.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { parseCallbackParams } from "../_shared/oauth/callback_params.ts";
import { newPendingToken } from "../_shared/oauth/pending_token.ts";
import { pendingAnswer } from "./answer.ts";
import { instagramReturn } from "./instagram_return.ts";
import type { CallbackDeps } from "./deps.ts";
import { requireScopes, type UsablePage, usablePages } from "./usable_pages.ts";

export function oauthReturn(deps: CallbackDeps) {
  const { config, db, states, keyring } = deps;
  const instagramFlow = instagramReturn(deps);
  return async (c: Context<AppEnv>) => {
    c.set("answerByRedirect", true);
    const params = parseCallbackParams(new URL(c.req.url).searchParams);
    if (params.failed) {
      await claimFailed(params.state);
      throw params.failed;
    }

    const state = await states.verify(params.state);
    // The signed via picks the flow: a state issued for one path can only ever run that path.
    if (state.via === "instagram") return instagramFlow(c, state, params.code);
    await db.claimOAuthState(state.doctorId, state.nonceHash);

    const meta = createMetaGraph(config, c.var.log);
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const shortLivedToken = await meta.exchangeCode(
      params.code,
      state.codeVerifier,
      deadline,
    );
    const userToken = await meta.exchangeForLongLivedToken(
      shortLivedToken,
      deadline,
    );
    const user = await meta.readUser(userToken, deadline);
    requireScopes(config.login.scopes, user.grantedScopes);
    const pages = usablePages(user.pages, state.pageId);

    const pending = await newPendingToken();
    const expiresAt = await db.createPendingConnection({
      tokenHash: pending.tokenHash,
      doctorId: state.doctorId,
      pages: await Promise.all(
        pages.map((page) => toPendingPage(page, state.doctorId)),
      ),
      facebookUserId: user.id,
      grantedScopes: user.grantedScopes,
    });

    c.var.log.info("pending_connection_created", {
      doctor_id: state.doctorId,
      page_ids: pages.map((page) => page.id),
      expires_at: expiresAt,
    });
    return pendingAnswer(c, config, { token: pending.token, expiresAt });
  };

  /** A cancelled or failed attempt is still the attempt: its state must not be usable afterwards. */
  async function claimFailed(rawState: string | undefined) {
    const state = rawState ? await states.verify(rawState).catch(() => undefined) : undefined;
    if (state) {
      await db.claimOAuthState(state.doctorId, state.nonceHash).catch(() => {});
    }
  }

  async function toPendingPage(
    page: UsablePage,
    doctorId: string,
  ): Promise<PendingPage> {
    return {
      page_id: page.id,
      page_name: page.name,
      instagram_account_id: page.instagramAccountId,
      instagram_username: page.instagramUsername,
      // Bound to the doctor and Page exactly as doctor_instagram binds it: finish copies it as is.
      access_token: await keyring.encrypt(page.accessToken, {
        doctorId,
        pageId: page.id,
      }),
    };
  }
}
