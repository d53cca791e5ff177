// GET /instagram-webhook?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...: Meta checks the
// callback URL when it is saved in the App Dashboard ("Webhooks - Getting Started"). The challenge is
// echoed as text/plain when the mode is subscribe and the token is ours; anything else is 403.
// The same for both apps: the Facebook app's and the Instagram app's Webhooks settings name this one
// callback URL and this one Verify Token (INSTAGRAM_WEBHOOK_VERIFY_TOKEN); only deliveries differ, by
// the secret that signs them (delivery.ts).
import type { Context } from "hono";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { WebhookDeps } from "./deps.ts";

// Meta's challenge is a number; a short token of safe characters is all that is ever echoed back.
const CHALLENGE = /^[A-Za-z0-9._-]{1,128}$/;

export function verification({ verifier }: WebhookDeps) {
  return async (c: Context<AppEnv>) => {
    const mode = c.req.query("hub.mode");
    const challenge = c.req.query("hub.challenge") ?? "";
    const tokenMatches = await verifier.isVerifyToken(
      c.req.query("hub.verify_token"),
    );
    if (mode !== "subscribe" || !tokenMatches || !CHALLENGE.test(challenge)) {
      throw new AppError("webhook_verification_failed", {
        // Not "token_...": the logger redacts fields so named, and this one is only a yes or no.
        cause: {
          mode_subscribe: mode === "subscribe",
          verify_matches: tokenMatches,
          challenge_ok: CHALLENGE.test(challenge),
        },
      });
    }
    c.var.log.info("webhook_verified");
    return c.text(challenge, 200);
  };
}
