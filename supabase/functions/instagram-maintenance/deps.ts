// What instagram-maintenance's run needs, made once per instance at start-up.
import type { Config } from "../_shared/config.ts";
import { importTokenKeyring, type TokenKeyring } from "../_shared/crypto/page_token.ts";
import { createDatabase, type Database } from "../_shared/database.ts";

/**
 * Meta as the app (debug_token, subscriptions), the Instagram Login app (its links' checks and refreshes),
 * the key ring, the Page fields, the RPCs, the secret key.
 */
export const MAINTENANCE_CONFIG = [
  "meta",
  "instagramLogin",
  "tokens",
  "webhooks",
  "database",
  "maintenance",
] as const;
export type MaintenanceConfig = Config<typeof MAINTENANCE_CONFIG[number]>;

export interface MaintenanceDeps {
  config: MaintenanceConfig;
  db: Database;
  keyring: TokenKeyring;
}

export async function maintenanceDeps(config: MaintenanceConfig): Promise<MaintenanceDeps> {
  return { config, db: createDatabase(config), keyring: await importTokenKeyring(config.tokens.keys) };
}
