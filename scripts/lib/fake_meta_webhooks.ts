// Meta's side of webhook deliveries, for the tests, the demo and the benchmark: the batches Meta sends
// for Instagram messaging and how it signs them. Shapes from Meta's "Webhooks - Getting Started"
// (object, entry[].id, entry[].time, X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body, keyed by
// the app secret>) and the Instagram messaging webhook references ("Messenger API support for
// Instagram", Webhooks: messages, message_reactions, messaging_seen; entry.messaging[] items with
// sender.id, recipient.id, timestamp in milliseconds, message.mid, message.text, message.is_echo,
// message.is_deleted for an unsend, reaction {mid, action, reaction, emoji}, read {mid}).
import { hmacSha256Hex } from "../../supabase/functions/_shared/crypto/digest.ts";

const encoder = new TextEncoder();

/** `sha256=<hex>`: the app secret's HMAC-SHA256 of exactly these bytes, as Meta writes the header. */
export async function webhookSignature(appSecret: string, body: Uint8Array<ArrayBuffer>): Promise<string> {
  return `sha256=${await hmacSha256Hex(appSecret, body)}`;
}

/** POSTs a delivery as Meta does: JSON, signed. `body` may be text, to send exact bytes. */
export async function deliverWebhook(
  url: string,
  appSecret: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  const bytes = encoder.encode(typeof body === "string" ? body : JSON.stringify(body));
  return await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-hub-signature-256": await webhookSignature(appSecret, bytes),
      ...headers,
    },
    body: bytes,
  });
}

/**
 * A delivery for an Instagram Login account: signed with the Instagram app's secret, not the Facebook
 * app's (chatwoot PR #14280: "Instagram now verifies with either FB_APP_SECRET or INSTAGRAM_APP_SECRET").
 */
export async function deliverInstagramLoginWebhook(
  url: string,
  meta: { instagramAppSecret: string },
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return await deliverWebhook(url, meta.instagramAppSecret, body, headers);
}

export type MessagingItem = Record<string, unknown>;

/** An `instagram` object delivery: one entry per account, each with its messaging items. */
export function instagramDelivery(entries: { accountId: string; items: MessagingItem[] }[]) {
  return {
    object: "instagram",
    entry: entries.map(({ accountId, items }) => ({ id: accountId, time: Date.now(), messaging: items })),
  };
}

let sequence = 0;
/** A mid in Meta's style (opaque, unique). */
export function newMid(): string {
  return `aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOj${Date.now().toString(36)}${(sequence++).toString(36)}`;
}

/** A patient's direct message to the account (or, with echo, the practice's own message). */
export function directMessage(
  accountId: string,
  senderId: string,
  text: string,
  options: { mid?: string; echo?: boolean; timestamp?: number } = {},
): MessagingItem {
  const [sender, recipient] = options.echo ? [accountId, senderId] : [senderId, accountId];
  return {
    sender: { id: sender },
    recipient: { id: recipient },
    timestamp: options.timestamp ?? Date.now(),
    message: { mid: options.mid ?? newMid(), text, ...(options.echo ? { is_echo: true } : {}) },
  };
}

/** The sender removed the message (`is_deleted` is true, or "true": Meta sends both). */
export function unsend(accountId: string, senderId: string, mid: string, isDeleted: true | "true" = true) {
  return {
    sender: { id: senderId },
    recipient: { id: accountId },
    timestamp: Date.now(),
    message: { mid, is_deleted: isDeleted },
  };
}

export function reaction(accountId: string, senderId: string, mid: string, emoji = "❤️") {
  return {
    sender: { id: senderId },
    recipient: { id: accountId },
    timestamp: Date.now(),
    reaction: { mid, action: "react", reaction: "love", emoji },
  };
}

export function readReceipt(accountId: string, senderId: string, mid: string) {
  return { sender: { id: senderId }, recipient: { id: accountId }, timestamp: Date.now(), read: { mid } };
}
