// Meta's Deauthorize and Data Deletion Request callbacks of the Instagram (Login) app, set in its App
// Dashboard under Instagram > API setup with Instagram login > Business login settings (ig_facts.md §7,
// "Customize the Manage messaging and content on Instagram Use Case"):
//   POST /instagram-callback/instagram/deauthorize      the user removed the app: their Instagram Login
//     links, pending connections and the open states of the doctors concerned go, audited as
//     instagram.deauthorized (actor meta); Page links are never touched (forget_instagram_user).
//   POST /instagram-callback/instagram/data-deletion    as deauthorize, plus the events received through
//     those links; answers { url, confirmation_code } as the Facebook app's callback does, the same
//     status URL (the code is random, so one status route serves both apps' requests).
//   GET  /instagram-callback/instagram/data-deletion?code  that status, as GET /data-deletion.
// Both carry Meta's signed_request, verified with the Instagram app's secret: one signed with the
// Facebook app's secret is refused here as a bad signature (400 signed_request_invalid), as the Facebook
// routes refuse this app's. Without an Instagram app configured these routes answer
// login_path_not_configured.
// Which user id the signed_request carries for the Instagram app is not documented (ig_facts.md §7: the
// generic "Data Deletion Request Callback" says "an app-scoped ID", which would be the Instagram-scoped id,
// unverified): forget_instagram_user and request_instagram_data_deletion match it against both stored
// ids, the app-scoped user id and the professional account id. The log names no user, only counts.
import type { Context } from "hono";
import { primaryAppSecret } from "../_shared/config.ts";
import { deriveHmacKey } from "../_shared/crypto/derived_key.ts";
import { hmacSha256Hex, randomBase64Url } from "../_shared/crypto/digest.ts";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createSignedRequestVerifier, type SignedRequestVerifier } from "../_shared/meta/signed_request.ts";
import { statusUrl } from "./data_deletion.ts";
import type { CallbackDeps } from "./deps.ts";
import { readSignedRequest } from "./signed_request_body.ts";

export async function instagramAppCallbacks({ config, db }: CallbackDeps) {
  const signedRequests: SignedRequestVerifier = config.instagramLogin
    ? await createSignedRequestVerifier(config.instagramLogin.appSecret, Date.now, { integerIds: true })
    : { verify: () => Promise.reject(new AppError("login_path_not_configured")) };
  // Replays are recognised by a keyed hash of the signature, under a label of this app's own so the two
  // apps' requests never share a key.
  const requestKeys = await deriveHmacKey(
    primaryAppSecret(config),
    "instagram-connect instagram app data deletion request v1",
    ["sign"],
  );

  return {
    deauthorize: async (c: Context<AppEnv>) => {
      const request = await readSignedRequest(c, signedRequests);
      // `facebookUserId` is the signed_request's user_id, whatever Meta put there (see above).
      const forgotten = await db.forgetInstagramUser(
        request.facebookUserId,
        "instagram.deauthorized",
        request.issuedAt,
        c.var.correlationId,
      );
      c.var.log.info("meta_deauthorized", { app: "instagram", ...forgotten });
      return c.json({ deauthorized: true });
    },

    dataDeletion: async (c: Context<AppEnv>) => {
      const request = await readSignedRequest(c, signedRequests);
      const recorded = await db.requestInstagramDataDeletion({
        instagramUserId: request.facebookUserId,
        requestKey: await hmacSha256Hex(requestKeys, request.signature),
        confirmationCode: randomBase64Url(16),
        issuedAt: request.issuedAt,
        correlationId: c.var.correlationId,
      });
      c.var.log.info("meta_data_deletion_requested", {
        app: "instagram",
        status: recorded.status,
        replay: recorded.replay,
      });
      return c.json({
        url: statusUrl(config, recorded.confirmation_code),
        confirmation_code: recorded.confirmation_code,
      });
    },
  };
}
