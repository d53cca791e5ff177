// What instagram-connect's routes share, made once per instance at start-up.
import { type Config, primaryAppSecret } from "../_shared/config.ts";
import { importTokenKeyring, type TokenKeyring } from "../_shared/crypto/page_token.ts";
import { createDatabase, type Database } from "../_shared/database.ts";
import { createOAuthStates, type OAuthStates } from "../_shared/oauth/state.ts";

/** The parts of the configuration instagram-connect uses (and so validates at start-up). */
export const CONNECT_CONFIG = [
  "meta",
  "instagramLogin",
  "login",
  "tokens",
  "webhooks",
  "cors",
  "database",
  "sessions",
] as const;
type ConnectConfig = Config<typeof CONNECT_CONFIG[number]>;

export interface ConnectDeps {
  config: ConnectConfig;
  db: Database;
  states: OAuthStates;
  /** Decrypts the stored Page token for webhook (un)subscriptions. */
  keyring: TokenKeyring;
}

export async function connectDeps(config: ConnectConfig): Promise<ConnectDeps> {
  return {
    config,
    db: createDatabase(config),
    states: await createOAuthStates(primaryAppSecret(config)),
    keyring: await importTokenKeyring(config.tokens.keys),
  };
}
