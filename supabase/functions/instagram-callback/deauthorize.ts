// POST /instagram-callback/deauthorize: Meta's Deauthorize callback, sent when a Facebook user removes
// the app. What they had granted by then (issued_at) goes: their links, pending connections and the
// open states of the doctors concerned, each audited as instagram.deauthorized with actor meta. A
// replayed or late request cannot touch a grant made after it. The log names no user (only counts).
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
      request.issuedAt,
      c.var.correlationId,
    );
    c.var.log.info("meta_deauthorized", { ...forgotten });
    return c.json({ deauthorized: true });
  };
}
