// What instagram-callback's routes share, made once per instance at start-up.
import type { Config } from "../_shared/config.ts";
import { importTokenKey } from "../_shared/crypto/page_token.ts";
import { createDatabase, type Database } from "../_shared/database.ts";
import { createSignedRequestVerifier, type SignedRequestVerifier } from "../_shared/meta/signed_request.ts";
import { createOAuthStates, type OAuthStates } from "../_shared/oauth/state.ts";

export interface CallbackDeps {
  config: Config;
  db: Database;
  states: OAuthStates;
  /** Encrypts Page tokens for the pending connection. */
  tokenKey: CryptoKey;
  signedRequests: SignedRequestVerifier;
}

export async function callbackDeps(config: Config): Promise<CallbackDeps> {
  return {
    config,
    db: createDatabase(config),
    states: await createOAuthStates(config.appSecret),
    tokenKey: await importTokenKey(config.tokenEncryptionKey),
    signedRequests: await createSignedRequestVerifier(config.appSecret),
  };
}
