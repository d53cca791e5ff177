// What instagram-connect's routes share, made once per instance at start-up.
import type { Config } from "../_shared/config.ts";
import { importTokenKey } from "../_shared/crypto/page_token.ts";
import { createDatabase, type Database } from "../_shared/database.ts";
import { createOAuthStates, type OAuthStates } from "../_shared/oauth/state.ts";

export interface ConnectDeps {
  config: Config;
  db: Database;
  states: OAuthStates;
  /** Decrypts the stored Page token for webhook (un)subscriptions. */
  tokenKey: CryptoKey;
}

export async function connectDeps(config: Config): Promise<ConnectDeps> {
  return {
    config,
    db: createDatabase(config),
    states: await createOAuthStates(config.appSecret),
    tokenKey: await importTokenKey(config.tokenEncryptionKey),
  };
}
