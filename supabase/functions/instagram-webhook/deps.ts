// What instagram-webhook's routes share, made once per instance at start-up.
import type { Config } from "../_shared/config.ts";
import { createDatabase, type Database } from "../_shared/database.ts";
import { createWebhookVerifier, type WebhookVerifier } from "../_shared/meta/webhook_signature.ts";

/** The parts of the configuration instagram-webhook uses: no Meta call, no token, no doctor session. */
export const WEBHOOK_CONFIG = ["receiver", "database"] as const;
type WebhookConfig = Config<typeof WEBHOOK_CONFIG[number]>;

export interface WebhookDeps {
  db: Database;
  verifier: WebhookVerifier;
  /** INSTAGRAM_EVENT_RETENTION_DAYS: an entry older than this (and than two days) is a replay. */
  retentionDays: number;
}

export async function webhookDeps(config: WebhookConfig): Promise<WebhookDeps> {
  return {
    db: createDatabase(config),
    verifier: await createWebhookVerifier(
      config.receiver.appSecret,
      config.receiver.verifyToken,
      config.receiver.instagramAppSecret,
    ),
    retentionDays: config.receiver.eventRetentionDays,
  };
}
