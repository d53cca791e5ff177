// POST /instagram-callback/deauthorize: Meta's Deauthorize callback, sent when a Facebook user removes
// the app. Their links, pending connections and the unused states of the doctors concerned are deleted,
// each audited as instagram.deauthorized with actor meta. The log names no user (only counts).
import type { Context } from "hono";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { CallbackDeps } from "./deps.ts";
import { readSignedRequest } from "./signed_request_body.ts";

export function deauthorize({ db, signedRequests }: CallbackDeps) {
  return async (c: Context<AppEnv>) => {
    const request = await readSignedRequest(c, signedRequests);
    const forgotten = await db.forgetFacebookUser(
      request.facebookUserId,
      "instagram.deauthorized",
      c.var.correlationId,
    );
    c.var.log.info("meta_deauthorized", { ...forgotten });
    return c.json({ deauthorized: true });
  };
}
