// POST /instagram-connect/finish { pending, page_id? }: the signed-in doctor confirms a pending
// connection. Only the doctor who started the flow may: anyone else gets 403, and the pending
// connection is destroyed and the refusal audited (by open_pending_connection). Several usable Pages
// and no page_id: the Pages to choose from (never a token), and the pending connection stays.
// An Instagram Login connection (token_kind instagram_user) is never a choice: its one account is
// subscribed with the Instagram token and linked the same way.
// Otherwise the Page is subscribed to the app's webhooks first (a failure links nothing), the Page the
// doctor leaves (if any) is unsubscribed while they still hold it, so no other doctor can link it in
// between, and one transaction consumes the pending connection and links the Page (409 if another
// doctor holds it). Then, linked or not, both subscriptions converge to what the database says
// (link_webhooks.ts): a run or a disconnect may have written to them meanwhile.
import type { Context } from "hono";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import { optionalPageId } from "../_shared/ids.ts";
import { readJsonBody } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createMetaGraph } from "../_shared/meta/graph.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { PENDING_TOKEN, pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import type { ConnectDeps } from "./deps.ts";
import { linkIds, linkWebhooks, storedLink } from "../_shared/meta/link_webhooks.ts";

const FinishRequest = z.object({
  pending: z.string().check(
    z.regex(PENDING_TOKEN, "must be the token from the callback"),
  ),
  page_id: optionalPageId,
});

export function finishConnect({ config, db, keyring }: ConnectDeps) {
  return async (c: Context<AppEnv>) => {
    const body = await readJsonBody(c, FinishRequest);
    const doctorId = c.var.doctorId;
    const ref = {
      doctorId,
      tokenHash: await pendingTokenHash(body.pending),
      pageId: body.page_id,
      correlationId: c.var.correlationId,
    };

    const opened = await db.openPendingConnection(ref);
    if (opened.outcome === "session_mismatch") {
      c.var.log.warn("link_refused", {
        doctor_id: doctorId,
        reason: "session_mismatch",
      });
      throw new AppError("session_mismatch");
    }
    if (opened.outcome === "choose") {
      return c.json({
        connected: false,
        choose: opened.pages,
        expires_at: opened.expires_at,
      });
    }

    const webhooks = linkWebhooks({
      config,
      keyring,
      meta: createMetaGraph(config, c.var.log),
      instagram: createInstagramLogin(config, c.var.log),
      db,
      log: c.var.log,
      tokenRefused: (link, reason) =>
        db.flagLink(link.doctorId, link.encryptedToken, reason, c.var.correlationId),
    });
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const kind = opened.token_kind ?? "page";
    const target = storedLink(doctorId, {
      token_kind: kind,
      page_id: opened.page.page_id,
      instagram_account_id: opened.page.instagram_account_id,
      access_token: opened.page.access_token,
    });
    // The link the doctor leaves (another account, or this one through the other path) is unsubscribed
    // while they still hold it, so after a switch exactly one subscription remains.
    const leaving = opened.leaving && storedLink(doctorId, opened.leaving);
    await webhooks.subscribe(target, deadline);
    const leftUnsubscribed = leaving ? await webhooks.unsubscribe(leaving, deadline) : undefined;

    const linkRef = {
      ...ref,
      pageId: target.kind === "page" ? target.pageId : undefined,
    };
    // A database that fails here fails after the decision: logged, and maintenance repairs the rest.
    const converge = async () => {
      for (const link of leaving ? [target, leaving] : [target]) {
        await webhooks.converge(link, deadline).catch((error) =>
          c.var.log.warn("subscription_converge_failed", { ...linkIds(link), error })
        );
      }
    };
    const link = await db.linkPendingConnection(linkRef).catch(async (error) => {
      await converge();
      throw error;
    });
    await converge();

    c.var.log.info("instagram_linked", {
      doctor_id: doctorId,
      ...linkIds(target),
      previous_page_id: link.previous_page_id,
      previous_instagram_account_id: link.previous_instagram_account_id,
      previous_token_kind: link.previous_token_kind,
      previous_unsubscribed: leftUnsubscribed,
      subscribed_fields: target.kind === "page"
        ? config.webhooks.pageFields
        : config.instagramLogin?.webhookFields,
    });
    return c.json({
      connected: true,
      link: {
        via: kind === "instagram_user" ? "instagram" : "facebook",
        instagram_business_account_id: link.instagram_business_account_id,
        instagram_page_id: link.instagram_page_id,
        instagram_username: link.instagram_username,
        page_name: link.page_name,
        connected_at: link.connected_at,
      },
    });
  };
}
