// What instagram-callback's routes share, made once per instance at start-up.
import { type Config, primaryAppSecret } from "../_shared/config.ts";
import { importTokenKeyring, type TokenKeyring } from "../_shared/crypto/page_token.ts";
import { AppError } from "../_shared/errors.ts";
import { createDatabase, type Database } from "../_shared/database.ts";
import { createSignedRequestVerifier, type SignedRequestVerifier } from "../_shared/meta/signed_request.ts";
import { createOAuthStates, type OAuthStates } from "../_shared/oauth/state.ts";

/** The parts of the configuration instagram-callback uses (and so validates at start-up). */
export const CALLBACK_CONFIG = ["meta", "instagramLogin", "login", "tokens", "database", "deletion"] as const;
type CallbackConfig = Config<typeof CALLBACK_CONFIG[number]>;

export interface CallbackDeps {
  config: CallbackConfig;
  db: Database;
  states: OAuthStates;
  /** Encrypts Page tokens for the pending connection (under the primary key). */
  keyring: TokenKeyring;
  signedRequests: SignedRequestVerifier;
}

export async function callbackDeps(config: CallbackConfig): Promise<CallbackDeps> {
  return {
    config,
    db: createDatabase(config),
    states: await createOAuthStates(primaryAppSecret(config)),
    keyring: await importTokenKeyring(config.tokens.keys),
    // The Facebook app's Deauthorize and Data Deletion callbacks; without that app, refused as not offered.
    signedRequests: config.meta.facebook
      ? await createSignedRequestVerifier(config.meta.facebook.appSecret)
      : { verify: () => Promise.reject(new AppError("login_path_not_configured")) },
  };
}
