// GET /instagram-callback?code&state for a state signed with via=instagram (Business Login for
// Instagram). Like the Facebook flow it links nothing: the state is claimed (one attempt, before any
// Meta call); the code is exchanged (no PKCE: none is documented for this login, ig_facts.md §2), the
// short-lived token swapped for the 60-day one, and `/me` read. The account's identity is `/me`'s
// user_id, as a string digit for digit: the exchange's user_id is another id and a bare JSON integer
// above 2^53, so it is never used. The token is encrypted bound to the doctor and that account, and kept
// as a pending connection that only the doctor who started the flow can finish.
import type { Context } from "hono";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { createInstagramLogin } from "../_shared/meta/instagram_login.ts";
import { newPendingToken } from "../_shared/oauth/pending_token.ts";
import type { StateClaims } from "../_shared/oauth/state.ts";
import { pendingAnswer } from "./answer.ts";
import type { CallbackDeps } from "./deps.ts";
import { requireScopes } from "./usable_pages.ts";

// "Business Login for Instagram": the login serves Instagram professional accounts only.
const PROFESSIONAL_ACCOUNT_TYPES = new Set(["BUSINESS", "MEDIA_CREATOR"]);

export function instagramReturn({ config, db, keyring }: CallbackDeps) {
  return async (c: Context<AppEnv>, state: StateClaims, code: string) => {
    await db.claimOAuthState(state.doctorId, state.nonceHash);

    const instagram = createInstagramLogin(config, c.var.log);
    const deadline = AbortSignal.timeout(config.meta.requestDeadlineMs);
    const granted = await instagram.exchangeCode(code, undefined, deadline);
    const token = await instagram.exchangeForLongLivedToken(
      granted.accessToken,
      deadline,
    );
    const account = await instagram.readAccount(token.accessToken, deadline);
    requireScopes(
      config.instagramLogin!.scopes,
      granted.permissions,
      "Instagram",
    );
    if (
      !PROFESSIONAL_ACCOUNT_TYPES.has((account.accountType ?? "").toUpperCase())
    ) {
      throw new AppError("instagram_account_not_professional");
    }

    const pending = await newPendingToken();
    const tokenExpiresAt = new Date(Date.now() + token.expiresIn * 1000)
      .toISOString();
    const expiresAt = await db.createInstagramPendingConnection({
      tokenHash: pending.tokenHash,
      doctorId: state.doctorId,
      account: {
        instagram_account_id: account.userId,
        instagram_user_id: account.id,
        instagram_username: account.username,
        // Bound to the doctor and the account exactly as doctor_instagram binds it: finish copies it.
        access_token: await keyring.encrypt(token.accessToken, {
          doctorId: state.doctorId,
          instagramAccountId: account.userId,
        }),
        token_expires_at: tokenExpiresAt,
      },
      grantedScopes: granted.permissions,
    });

    c.var.log.info("pending_connection_created", {
      doctor_id: state.doctorId,
      via: "instagram",
      instagram_account_id: account.userId,
      expires_at: expiresAt,
    });
    return pendingAnswer(c, config, { token: pending.token, expiresAt });
  };
}
