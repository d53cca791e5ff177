// POST /instagram-webhook: one delivery from Meta, up to 1000 updates ("Webhooks - Getting Started").
//   1. The signature (X-Hub-Signature-256) over the raw body bytes, before anything is parsed: missing,
//      malformed or wrong is 401 and nothing is stored. Two apps deliver to this one URL: the Facebook
//      app (Page links) and the Instagram app (Instagram Login links, signed with its own secret:
//      ig_facts.md, chatwoot PR #14280). The secret that matched names the app the delivery came from.
//   2. The JSON and its shape: `object`, and `entry` items with an account id and `messaging` or
//      `changes` lists. Objects other than instagram and page are acknowledged and not stored.
//   3. One RPC stores the whole delivery in one transaction, routed to each account's doctor inside it,
//      an event delivered again stored once. Entries of accounts linked through the other app's path are
//      counted (wrong_app_events), not stored: a link only trusts the app it was made with. 200 only after it commits: a failure answers 5xx, and
//      Meta delivers again (for up to 36 hours).
// Patients' messages are health data: the log line holds counts, never a payload.
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import * as z from "zod/mini";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import { META_ID } from "../_shared/ids.ts";
import type { WebhookApp } from "../_shared/database.ts";
import type { WebhookVerifier } from "../_shared/meta/webhook_signature.ts";
import type { WebhookDeps } from "./deps.ts";

/** Meta's batches of 1000 updates stay far below this; a larger body is not Meta's. */
export const MAX_DELIVERY_BYTES = 4 * 1024 * 1024;

export const limitDelivery = bodyLimit({
  maxSize: MAX_DELIVERY_BYTES,
  onError: () => {
    throw new AppError("payload_too_large", {
      message: "A webhook delivery is at most 4 MiB.",
    });
  },
});

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

/**
 * The delivery as PostgreSQL's jsonb can hold it: no U+0000 and no lone surrogate (half of an emoji cut
 * in two), in values or keys, each becoming U+FFFD. One such character (a patient can type anything)
 * would otherwise fail the whole delivery, for every doctor in it, and Meta retries it for 36 hours.
 */
function storable(value: unknown): unknown {
  if (typeof value === "string") {
    return value.toWellFormed().replaceAll("\u0000", "\uFFFD");
  }
  if (Array.isArray(value)) return value.map(storable);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.entries(value).map((
        [key, item],
      ) => [storable(key), storable(item)]),
    );
  }
  return value;
}

/**
 * The app whose secret signed `body`, or undefined. Both keys are always tried (each check in constant
 * time), so the time taken does not tell which app's secret a forgery came near.
 */
async function signingApp(
  verifier: WebhookVerifier,
  header: string | undefined,
  body: Uint8Array<ArrayBuffer>,
): Promise<WebhookApp | undefined> {
  const [byFacebook, byInstagram] = await Promise.all([
    verifier.isSignedByApp(header, body),
    verifier.isSignedByInstagramApp(header, body),
  ]);
  return byFacebook ? "facebook" : byInstagram ? "instagram" : undefined;
}

export function delivery({ db, verifier }: WebhookDeps) {
  return async (c: Context<AppEnv>) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    const app = await signingApp(
      verifier,
      c.req.header("x-hub-signature-256"),
      body,
    );
    if (!app) {
      throw new AppError("webhook_signature_invalid", {
        cause: {
          signature_header: c.req.header("x-hub-signature-256") ? "present" : "missing",
        },
      });
    }
    let json: unknown;
    try {
      json = storable(
        JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body)),
      );
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
    // The entries as Meta sent them (the schema above only checks them; it would drop unknown fields).
    const raw = (json as { entry: unknown[] }).entry;
    // The Instagram app has no Pages: a `page` delivery under its secret is for no link it made.
    const result = app === "instagram" && object === "page"
      ? {
        stored: 0,
        duplicates: 0,
        unknown_account_events: 0,
        wrong_app_events: events,
        unsends: 0,
      }
      : await db.storeWebhookEvents(object as "instagram" | "page", raw, app);
    // On the request's own log line: one line per delivery, as Meta may send many.
    c.set("outcome", {
      object,
      entries: entry.length,
      events,
      bytes: body.length,
      ...result,
      app,
    });
    return c.json(result);
  };
}
