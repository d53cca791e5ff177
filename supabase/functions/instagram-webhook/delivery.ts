// POST /instagram-webhook: one delivery from Meta, up to 1000 updates ("Webhooks - Getting Started").
//   1. The signature (X-Hub-Signature-256) over the raw body bytes, before anything is parsed: a missing
//      or malformed header is 401 before the body is read; a well-formed one is checked as the bytes
//      arrive, and wrong is 401; nothing is stored. Two apps deliver to this one URL: the Facebook
//      app (Page links) and the Instagram app (Instagram Login links, signed with its own secret:
//      ig_facts.md, chatwoot PR #14280). The secret that matched names the app the delivery came from.
//   2. The JSON and its shape: `object`, and `entry` items with an account id and `messaging` or
//      `changes` lists. Objects other than instagram and page are acknowledged and not stored. Ids
//      written as bare integers are read as their digits (a JS number rounds those above 2^53).
//   3. Entries that cannot be Meta's retries are dropped and counted: by entry.time, older than
//      max(retention, 2 days) (stale_entries: their events may have been purged, and a replay would
//      store them again; Meta retries for 36 hours); nested deeper than 64 (too_deep_entries: no
//      webhook is, and the stack would overflow, failing the whole batch for 36 hours of retries).
//   4. One RPC stores the rest in one transaction, routed to each account's doctor inside it, an event
//      delivered again stored once. Entries of accounts linked through the other app's path are counted
//      (wrong_app_events), not stored: a link only trusts the app it was made with. 200 only after it
//      commits: a failure answers 5xx, and Meta delivers again (for up to 36 hours).
// Patients' messages are health data: the log line holds counts, never a payload.
import type { Context } from "hono";
import * as z from "zod/mini";
import type { StoredWebhookBatch } from "../_shared/database.ts";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { idsAsStrings, META_ID } from "../_shared/ids.ts";
import type { SignatureCheck } from "../_shared/meta/webhook_signature.ts";
import type { WebhookDeps } from "./deps.ts";

/** Meta's batches of 1000 updates stay far below this; a larger body is not Meta's. */
export const MAX_DELIVERY_BYTES = 4 * 1024 * 1024;
/** Objects and arrays within an entry, the entry itself the first: Meta's go about 8 deep. */
const MAX_ENTRY_DEPTH = 64;
/** Meta retries for 36 hours: an entry younger than this is kept whatever the retention. */
const MIN_ENTRY_AGE_DAYS = 2;
const DAY_MS = 24 * 3600 * 1000;

const Item = z.record(z.string(), z.unknown());
const Delivery = z.object({
  object: z.string().check(z.maxLength(64)),
  entry: z.array(z.object({
    id: z.string().check(z.regex(META_ID)),
    messaging: z.optional(z.array(Item)),
    changes: z.optional(z.array(Item)),
  })),
});
const STORED_OBJECTS = new Set(["instagram", "page"]);
const NOTHING_STORED: StoredWebhookBatch = {
  stored: 0,
  duplicates: 0,
  unknown_account_events: 0,
  wrong_app_events: 0,
  unsends: 0,
};

const tooLarge = () =>
  new AppError("payload_too_large", {
    message: "A webhook delivery is at most 4 MiB.",
  });

/**
 * The body, each chunk fed to `check` as it arrives. 413 past MAX_DELIVERY_BYTES (announced or sent);
 * 400 when the client stops sending mid-body: its side or the network's, not ours, so no 500.
 */
async function readBody(c: Context<AppEnv>, check: SignatureCheck): Promise<Uint8Array<ArrayBuffer>> {
  if (Number(c.req.header("content-length")) > MAX_DELIVERY_BYTES) throw tooLarge();
  const reader = c.req.raw.body?.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (reader) {
    let read: ReadableStreamReadResult<Uint8Array>;
    try {
      read = await reader.read();
    } catch {
      throw new AppError("invalid_request", {
        message: "The delivery ended before its last byte.",
        cause: { reason: "body_incomplete" },
      });
    }
    if (read.done) break;
    size += read.value.length;
    if (size > MAX_DELIVERY_BYTES) {
      reader.cancel().catch(() => {});
      throw tooLarge();
    }
    check.update(read.value);
    chunks.push(read.value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.length;
  }
  return body;
}

/**
 * entry.time in milliseconds, or undefined when absent or not a whole number. Meta's pages disagree on
 * its unit: milliseconds in the messaging examples ("Webhooks for Instagram Messaging": 1569262486134;
 * the Messenger Platform's "Webhook Events Reference": 1458692752478), seconds in "Webhooks - Getting
 * Started" (1520383571), an int of no unit in "Instagram Platform Webhook Notification Examples". So by
 * its size: below 10^11 it is seconds (10^11 ms was March 1973; 10^11 s is the year 5138), as occurred_at
 * reads it.
 */
function entryTimeMs(time: unknown): number | undefined {
  const text = typeof time === "number" || typeof time === "string" ? String(time) : "";
  if (!/^\d{1,15}$/.test(text)) return undefined;
  const value = Number(text);
  return value < 1e11 ? value * 1000 : value;
}

class TooDeep extends Error {}

/**
 * An entry as PostgreSQL's jsonb can hold it: no U+0000 and no lone surrogate (half of an emoji cut
 * in two), in values or keys, each becoming U+FFFD. One such character (a patient can type anything)
 * would otherwise fail the whole delivery, for every doctor in it, and Meta retries it for 36 hours.
 * Throws TooDeep past MAX_ENTRY_DEPTH, before the recursion could overflow the stack.
 */
function storable(value: unknown, depth = 1): unknown {
  if (typeof value === "string") {
    return value.toWellFormed().replaceAll("\u0000", "\uFFFD");
  }
  if (value === null || typeof value !== "object") return value;
  if (depth > MAX_ENTRY_DEPTH) throw new TooDeep();
  if (Array.isArray(value)) return value.map((item) => storable(item, depth + 1));
  return Object.fromEntries(
    Object.entries(value).map(([key, item]) => [storable(key), storable(item, depth + 1)]),
  );
}

/** The entries to store, each made storable, and how many were dropped as stale or too deep. */
function storableEntries(entries: unknown[], maxAgeMs: number) {
  const kept: unknown[] = [];
  let stale = 0;
  let tooDeep = 0;
  const now = Date.now();
  for (const entry of entries) {
    const time = entryTimeMs((entry as { time?: unknown }).time);
    if (time !== undefined && now - time > maxAgeMs) {
      stale++;
      continue;
    }
    try {
      kept.push(storable(entry));
    } catch (error) {
      if (!(error instanceof TooDeep)) throw error;
      tooDeep++;
    }
  }
  return { kept, stale, tooDeep };
}

export function delivery({ db, verifier, retentionDays }: WebhookDeps) {
  // Older than the retention, its events may be purged; younger than Meta's 36 hours, it may be a retry.
  const maxEntryAgeMs = Math.max(retentionDays, MIN_ENTRY_AGE_DAYS) * DAY_MS;
  return async (c: Context<AppEnv>) => {
    const header = c.req.header("x-hub-signature-256");
    const check = verifier.signatureCheck(header);
    if (!check) {
      throw new AppError("webhook_signature_invalid", {
        cause: { signature_header: header === undefined ? "missing" : "malformed" },
      });
    }
    const body = await readBody(c, check);
    const app = check.signer();
    if (!app) {
      throw new AppError("webhook_signature_invalid", { cause: { signature_header: "present" } });
    }
    let json: unknown;
    try {
      json = JSON.parse(idsAsStrings(new TextDecoder("utf-8", { fatal: true }).decode(body)));
    } catch {
      throw new AppError("invalid_request", {
        message: "The delivery is not JSON.",
        cause: { reason: "json" },
      });
    }
    const parsed = Delivery.safeParse(json);
    if (!parsed.success) {
      throw new AppError("invalid_request", {
        message: "The delivery is not a webhook batch (object, entry[].id).",
        cause: { reason: "shape" },
      });
    }
    const { object, entry } = parsed.data;
    const events = entry.reduce(
      (sum, item) => sum + (item.messaging?.length ?? 0) + (item.changes?.length ?? 0),
      0,
    );
    if (!STORED_OBJECTS.has(object)) {
      c.set("outcome", {
        object,
        entries: entry.length,
        events,
        ignored: true,
      });
      return c.json({ stored: 0, ignored: events });
    }
    // The Instagram app has no Pages: a `page` delivery under its secret is for no link it made.
    let result: StoredWebhookBatch = { ...NOTHING_STORED, wrong_app_events: events };
    let dropped = { stale_entries: 0, too_deep_entries: 0 };
    if (!(app === "instagram" && object === "page")) {
      // The entries as Meta sent them (the schema above only checks them; it would drop unknown fields).
      const { kept, stale, tooDeep } = storableEntries((json as { entry: unknown[] }).entry, maxEntryAgeMs);
      dropped = { stale_entries: stale, too_deep_entries: tooDeep };
      result = kept.length === 0
        ? NOTHING_STORED
        : await db.storeWebhookEvents(object as "instagram" | "page", kept, app);
    }
    const answer = { ...result, ...dropped };
    // On the request's own log line: one line per delivery, as Meta may send many.
    c.set("outcome", {
      object,
      entries: entry.length,
      events,
      bytes: body.length,
      ...answer,
      app,
    });
    return c.json(answer);
  };
}
