// instagram-webhook, as Meta reaches it and as an attacker would: the verification handshake, signed
// deliveries stored once for the right doctor (RLS), reactions, read receipts and unsends, forged and
// re-serialised signatures, oversized bodies, unknown accounts, 1000-event batches, two workers
// claiming in parallel, retention and Meta's data deletion. No message text ever reaches a log line.
import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  deliverWebhook,
  directMessage,
  instagramDelivery,
  newMid,
  reaction,
  readReceipt,
  unsend,
  webhookSignature,
} from "../../../scripts/lib/fake_meta_webhooks.ts";
import { LOCAL_WEBHOOK_VERIFY_TOKEN, type LocalStack } from "../../../scripts/lib/local_stack.ts";
import {
  databaseUrl,
  newDoctor,
  pageLinkedDoctor,
  racesRequests,
  signedRequest,
  stackTest,
  withStack,
} from "./_support.ts";

type Doctor = Awaited<ReturnType<typeof newDoctor>>;

/** A doctor linked through the fake Meta to a Page with an Instagram account; ids unique per call. */
async function linkedDoctor(stack: LocalStack, sql: postgres.Sql) {
  const doctor = await pageLinkedDoctor(stack, sql, "178");
  // The app-scoped Facebook user id Meta gave the link: what its data deletion request names.
  const [{ facebook_user_id: facebookUserId }] = await sql`
    select facebook_user_id from public.doctor_instagram where doctor_id = ${doctor.id}`;
  return { ...doctor, facebookUserId: facebookUserId as string };
}

const hookUrl = (stack: LocalStack) => stack.functionUrl("instagram-webhook");
const deliver = (stack: LocalStack, body: unknown, headers?: Record<string, string>) =>
  deliverWebhook(hookUrl(stack), stack.env.INSTAGRAM_APP_SECRET, body, headers);

async function eventsOf(sql: postgres.Sql, doctorId: string) {
  return await sql`select * from public.instagram_events where doctor_id = ${doctorId} order by id`;
}

/** What a doctor's own session reads through the gateway (PostgREST, RLS). */
async function eventsReadAs(stack: LocalStack, doctor: Doctor) {
  const answer = await fetch(`${stack.url}/rest/v1/instagram_events?select=doctor_id,kind,payload`, {
    headers: {
      apikey: JSON.parse(stack.env.SUPABASE_PUBLISHABLE_KEYS).default,
      authorization: `Bearer ${doctor.token}`,
    },
  });
  assert.equal(answer.status, 200);
  return await answer.json() as { doctor_id: string; kind: string; payload: Record<string, any> }[];
}

Deno.test("instagram-webhook", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    await t.step(
      "the handshake: the right token echoes the challenge as text; a wrong token or mode is 403",
      async () => {
        const handshake = (query: Record<string, string>) =>
          fetch(`${hookUrl(stack)}?${new URLSearchParams(query)}`);
        const ok = await handshake({
          "hub.mode": "subscribe",
          "hub.verify_token": LOCAL_WEBHOOK_VERIFY_TOKEN,
          "hub.challenge": "1158201444",
        });
        assert.equal(ok.status, 200);
        assert.match(ok.headers.get("content-type") ?? "", /^text\/plain/);
        assert.equal(await ok.text(), "1158201444");
        for (
          const query of <Record<string, string>[]> [
            {
              "hub.mode": "subscribe",
              "hub.verify_token": "wrong-token-of-some-length",
              "hub.challenge": "1",
            },
            {
              "hub.mode": "subscribe",
              "hub.verify_token": `${LOCAL_WEBHOOK_VERIFY_TOKEN}x`,
              "hub.challenge": "1",
            },
            {
              "hub.mode": "unsubscribe",
              "hub.verify_token": LOCAL_WEBHOOK_VERIFY_TOKEN,
              "hub.challenge": "1",
            },
            { "hub.verify_token": LOCAL_WEBHOOK_VERIFY_TOKEN, "hub.challenge": "1" },
            {
              "hub.mode": "subscribe",
              "hub.verify_token": LOCAL_WEBHOOK_VERIFY_TOKEN,
              "hub.challenge": "<script>",
            },
          ]
        ) {
          const refused = await handshake(query);
          assert.equal(refused.status, 403, JSON.stringify(query));
          assert.equal((await refused.json()).error.code, "webhook_verification_failed");
        }
      },
    );

    const one = await linkedDoctor(stack, sql);
    const two = await linkedDoctor(stack, sql);
    const patient = "5550000000001";

    await t.step(
      "a signed batch is stored for the account's doctor only; the other doctor reads nothing of it",
      async () => {
        const first = directMessage(one.accountId, patient, "Hello, can I book an appointment?");
        const echo = directMessage(one.accountId, patient, "Of course: Tuesday 10:00?", { echo: true });
        const answer = await deliver(
          stack,
          instagramDelivery([{ accountId: one.accountId, items: [first, echo] }]),
        );
        assert.equal(answer.status, 200);
        assert.deepEqual(await answer.json(), {
          stored: 2,
          duplicates: 0,
          unknown_account_events: 0,
          wrong_app_events: 0,
          unsends: 0,
          stale_entries: 0,
          too_deep_entries: 0,
        });
        const rows = await eventsOf(sql, one.id);
        assert.deepEqual(
          rows.map((row) => [row.kind, row.direction, row.message_id, row.account_id, row.facebook_user_id]),
          [
            ["messages", "incoming", (first.message as any).mid, one.accountId, one.facebookUserId],
            ["messages", "echo", (echo.message as any).mid, one.accountId, one.facebookUserId],
          ],
        );
        assert.equal(rows[0].sender_id, patient);
        assert.equal(rows[0].occurred_at.getTime(), first.timestamp);
        assert.equal((await eventsReadAs(stack, one)).length, 2);
        assert.deepEqual(await eventsReadAs(stack, two), [], "RLS: another doctor reads nothing");
      },
    );

    await t.step("a page object delivery is routed by the Page to its account's doctor", async () => {
      const item = directMessage(two.accountId, patient, "Routed by Page");
      const answer = await deliver(stack, {
        object: "page",
        entry: [{ id: two.page.id, time: Date.now(), messaging: [item] }],
      });
      assert.equal(answer.status, 200);
      assert.equal((await answer.json()).stored, 1);
      assert.equal((await eventsOf(sql, two.id)).at(-1)?.account_id, two.accountId);
    });

    await t.step("a duplicate delivery (Meta's retry) is stored once", async () => {
      const batch = instagramDelivery([{
        accountId: one.accountId,
        items: [directMessage(one.accountId, patient, "Once")],
      }]);
      const before = (await eventsOf(sql, one.id)).length;
      assert.deepEqual(await (await deliver(stack, batch)).json(), {
        stored: 1,
        duplicates: 0,
        unknown_account_events: 0,
        wrong_app_events: 0,
        unsends: 0,
        stale_entries: 0,
        too_deep_entries: 0,
      });
      // The same JSON with its keys in another order is the same event.
      const reordered = JSON.parse(
        JSON.stringify(batch),
        (_key, value) =>
          value && typeof value === "object" && !Array.isArray(value)
            ? Object.fromEntries(Object.entries(value).reverse())
            : value,
      );
      assert.deepEqual(await (await deliver(stack, reordered)).json(), {
        stored: 0,
        duplicates: 1,
        unknown_account_events: 0,
        wrong_app_events: 0,
        unsends: 0,
        stale_entries: 0,
        too_deep_entries: 0,
      });
      assert.equal((await eventsOf(sql, one.id)).length, before + 1);
    });

    await t.step(
      "a reaction, a read receipt and an unsend for a stored message; the unsend removes its text",
      async () => {
        const message = directMessage(one.accountId, patient, "My date of birth is 01.02.1980");
        const mid = (message.message as { mid: string }).mid;
        await deliver(stack, instagramDelivery([{ accountId: one.accountId, items: [message] }]));
        const batch = instagramDelivery([{
          accountId: one.accountId,
          items: [
            reaction(one.accountId, patient, mid),
            readReceipt(one.accountId, patient, mid),
            unsend(one.accountId, patient, mid, "true"),
          ],
        }]);
        assert.deepEqual(await (await deliver(stack, batch)).json(), {
          stored: 3,
          duplicates: 0,
          unknown_account_events: 0,
          wrong_app_events: 0,
          unsends: 1,
          stale_entries: 0,
          too_deep_entries: 0,
        });
        // Delivered again: the reaction and the read receipt (which carry the message's mid) are no new events.
        assert.deepEqual(await (await deliver(stack, batch)).json(), {
          stored: 0,
          duplicates: 3,
          unknown_account_events: 0,
          wrong_app_events: 0,
          unsends: 0,
          stale_entries: 0,
          too_deep_entries: 0,
        });
        const about = (await eventsOf(sql, one.id)).filter((row) => row.message_id === mid);
        assert.deepEqual(about.map((row) => row.kind), [
          "messages",
          "message_reactions",
          "messaging_seen",
          "messages",
        ]);
        const [original, , , removal] = about;
        assert.equal(original.payload.message.text, undefined, "the unsent text is gone");
        assert.equal(original.payload.message.mid, mid);
        assert.ok(original.text_removed_at);
        assert.equal(removal.event_key, `unsend:${mid}`);
        const stored = JSON.stringify(await sql`select payload from public.instagram_events`);
        assert.ok(!stored.includes("01.02.1980"));
      },
    );

    await t.step(
      "an unsend that arrives before its message (is_deleted: true): the message is stored without text",
      async () => {
        const mid = newMid();
        await deliver(
          stack,
          instagramDelivery([{
            accountId: one.accountId,
            items: [unsend(one.accountId, patient, mid, true)],
          }]),
        );
        await deliver(
          stack,
          instagramDelivery([{
            accountId: one.accountId,
            items: [directMessage(one.accountId, patient, "Too late", { mid })],
          }]),
        );
        const [message] =
          await sql`select payload from public.instagram_events where event_key = ${`message:${mid}`}`;
        assert.equal(message.payload.message.text, undefined);
      },
    );

    await t.step(
      "odd but signed events never fail the batch (Meta would retry it for 36 hours)",
      async () => {
        const longMid = `m${"x".repeat(300)}`;
        const answer = await deliver(stack, {
          object: "instagram",
          entry: [{
            id: one.accountId,
            time: Date.now(),
            messaging: [
              directMessage(one.accountId, patient, "long mid", { mid: longMid }),
              unsend(one.accountId, patient, longMid),
              {
                sender: { id: patient },
                recipient: { id: one.accountId },
                timestamp: "soon",
                unknown_thing: {},
              },
            ],
            changes: [{
              field: "Not-A-Field!",
              value: { id: "1", text: "nul \u0000 inside", "key\ud800": "half \ud83d" },
            }],
          }],
        });
        assert.equal(answer.status, 200);
        assert.deepEqual(await answer.json(), {
          stored: 4,
          duplicates: 0,
          unknown_account_events: 0,
          wrong_app_events: 0,
          unsends: 1,
          stale_entries: 0,
          too_deep_entries: 0,
        });
        const [message] = await sql`
        select payload, event_key from public.instagram_events where message_id = ${
          longMid.slice(0, 512)
        } and kind = 'messages'
        order by id limit 1`;
        assert.equal(message.payload.message.text, undefined, "the unsend found its long-mid message");
        assert.match(message.event_key, /^message:sha256:[0-9a-f]{64}$/);
        const [other] = await sql`select payload from public.instagram_events where kind = 'other'`;
        assert.equal(
          other.payload.value.text,
          "nul \uFFFD inside",
          "U+0000, which jsonb cannot hold, is stored as U+FFFD",
        );
      },
    );

    await t.step("an unsend also removes the text of the message's edits, before or after it", async () => {
      const mid = newMid();
      const edit = (text: string) => ({
        sender: { id: patient },
        recipient: { id: one.accountId },
        timestamp: Date.now(),
        message_edit: { mid, text, num_edit: 1 },
      });
      await deliver(
        stack,
        instagramDelivery([{
          accountId: one.accountId,
          items: [directMessage(one.accountId, patient, "first words", { mid }), edit("edited words")],
        }]),
      );
      await deliver(
        stack,
        instagramDelivery([{ accountId: one.accountId, items: [unsend(one.accountId, patient, mid)] }]),
      );
      await deliver(stack, instagramDelivery([{ accountId: one.accountId, items: [edit("late edit")] }]));
      const rows =
        await sql`select kind, payload from public.instagram_events where message_id = ${mid} order by id`;
      assert.deepEqual(rows.map((row) => row.kind), ["messages", "message_edit", "messages", "message_edit"]);
      const text = JSON.stringify(rows.map((row) => row.payload));
      for (const words of ["first words", "edited words", "late edit"]) {
        assert.ok(!text.includes(words), words);
      }
    });

    await t.step(
      "a message and its unsend stored at the same time: the text does not survive the race",
      async (t) => {
        racesRequests(t);
        const mid = newMid();
        const entries = (item: Record<string, unknown>) =>
          sql.json([{ id: one.accountId, messaging: [item] }] as never);
        // The message's transaction holds on before committing; the unsend arrives meanwhile.
        const held = sql.reserve();
        const first = await held;
        await first`begin`;
        await first`select public.store_instagram_events('instagram', ${
          entries(directMessage(one.accountId, patient, "race secret", { mid }))
        })`;
        const second = sql`select public.store_instagram_events('instagram', ${
          entries(unsend(one.accountId, patient, mid))
        }) as r`;
        await new Promise((resolve) => setTimeout(resolve, 300));
        await first`commit`;
        first.release();
        assert.equal((await second)[0].r.unsends, 1);
        const [message] =
          await sql`select payload, text_removed_at from public.instagram_events where event_key = ${`message:${mid}`}`;
        assert.equal(message.payload.message.text, undefined);
        assert.ok(message.text_removed_at);
      },
    );

    await t.step(
      "signatures: missing, malformed, forged, or over re-serialised JSON: 401 and nothing stored",
      async () => {
        const body = JSON.stringify(
          instagramDelivery([{
            accountId: one.accountId,
            items: [directMessage(one.accountId, patient, "forged")],
          }]),
        );
        const before = (await eventsOf(sql, one.id)).length;
        const bytes = new TextEncoder().encode(body);
        const good = await webhookSignature(stack.env.INSTAGRAM_APP_SECRET, bytes);
        // Same JSON, other bytes: whitespace, and an escaped character.
        const spaced = JSON.stringify(JSON.parse(body), null, 2);
        const escaped = body.replace("forged", "forg\\u0065d");
        assert.deepEqual(JSON.parse(escaped), JSON.parse(body));
        const attempts: [string, Record<string, string>][] = [
          [body, { "x-hub-signature-256": "" }],
          [body, { "x-hub-signature-256": good.replace("sha256=", "sha1=") }],
          [body, { "x-hub-signature-256": `${good.slice(0, -1)}${good.endsWith("0") ? "1" : "0"}` }],
          [body, { "x-hub-signature-256": await webhookSignature("another-app-secret-0123456789", bytes) }],
          [spaced, { "x-hub-signature-256": good }],
          [escaped, { "x-hub-signature-256": good }],
        ];
        for (const [text, headers] of attempts) {
          const answer = await fetch(hookUrl(stack), {
            method: "POST",
            headers: { "content-type": "application/json", ...headers },
            body: text,
          });
          assert.equal(answer.status, 401, JSON.stringify(headers));
          assert.equal((await answer.json()).error.code, "webhook_signature_invalid");
        }
        const unsigned = await fetch(hookUrl(stack), {
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        assert.equal(unsigned.status, 401);
        await unsigned.body?.cancel();
        assert.equal((await eventsOf(sql, one.id)).length, before);
      },
    );

    await t.step(
      "4 MiB + 1 byte is refused with 413 (even signed); 4 MiB of a valid batch is accepted",
      async () => {
        const limit = 4 * 1024 * 1024;
        const make = (size: number) => {
          const item = directMessage(one.accountId, patient, "");
          const shell = JSON.stringify(instagramDelivery([{ accountId: one.accountId, items: [item] }]));
          return shell.replace('"text":""', `"text":"${"x".repeat(size - shell.length)}"`);
        };
        const over = make(limit + 1);
        assert.equal(new TextEncoder().encode(over).length, limit + 1);
        const refused = await deliver(stack, over);
        assert.equal(refused.status, 413);
        assert.equal((await refused.json()).error.code, "payload_too_large");
        const exact = make(limit);
        const accepted = await deliver(stack, exact);
        assert.equal(accepted.status, 200);
        assert.equal((await accepted.json()).stored, 1);
      },
    );

    await t.step("events for an account no doctor holds are counted, not stored", async () => {
      const before = (await sql`select count(*)::int as n from public.instagram_events`)[0].n;
      const answer = await deliver(
        stack,
        instagramDelivery([
          {
            accountId: "17841499999999999",
            items: [directMessage("17841499999999999", patient, "to nobody")],
          },
        ]),
      );
      assert.deepEqual(await answer.json(), {
        stored: 0,
        duplicates: 0,
        unknown_account_events: 1,
        wrong_app_events: 0,
        unsends: 0,
        stale_entries: 0,
        too_deep_entries: 0,
      });
      assert.equal((await sql`select count(*)::int as n from public.instagram_events`)[0].n, before);
    });

    await t.step("not a webhook batch: 400; another object: 200 and nothing stored", async () => {
      const bad = await deliver(stack, "not json");
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
      const shape = await deliver(stack, { object: "instagram", entry: [{ id: "not-a-number" }] });
      assert.equal(shape.status, 400);
      await shape.body?.cancel();
      const other = await deliver(stack, {
        object: "permissions",
        entry: [{ id: "1", changes: [{ field: "x" }] }],
      });
      assert.equal(other.status, 200);
      assert.deepEqual(await other.json(), { stored: 0, ignored: 1 });
    });

    await t.step("1000 events in one batch: all stored, in one call", async () => {
      const items = Array.from(
        { length: 1000 },
        (_, i) => directMessage(two.accountId, `555${i}`, `message ${i}`),
      );
      const before = stack.dbCalls["rpc store_instagram_events"] ?? 0;
      const answer = await deliver(stack, instagramDelivery([{ accountId: two.accountId, items }]));
      assert.equal(answer.status, 200);
      assert.deepEqual(await answer.json(), {
        stored: 1000,
        duplicates: 0,
        unknown_account_events: 0,
        wrong_app_events: 0,
        unsends: 0,
        stale_entries: 0,
        too_deep_entries: 0,
      });
      assert.equal(stack.dbCalls["rpc store_instagram_events"], before + 1);
    });

    await t.step(
      "two workers claiming in parallel never get the same event; ack needs the lease",
      async (t) => {
        racesRequests(t);
        const claim = (worker: string) =>
          sql`select id from public.claim_instagram_events(${worker}, 300, 60)`.then((rows) =>
            rows.map((row) => Number(row.id))
          );
        const unprocessed =
          (await sql`select count(*)::int as n from public.instagram_events where processed_at is null`)[0].n;
        const [a, b] = await Promise.all([claim("worker-a"), claim("worker-b")]);
        assert.equal(new Set([...a, ...b]).size, a.length + b.length, "no event in both claims");
        assert.equal(
          a.length + b.length,
          Math.min(unprocessed, 600),
          "each took what it asked for, as long as there was some",
        );
        assert.equal(
          (await sql`select public.ack_instagram_events('worker-b', ${a}::bigint[]) as n`)[0].n,
          0,
          "not b's to ack",
        );
        assert.equal(
          (await sql`select public.ack_instagram_events('worker-a', ${a}::bigint[]) as n`)[0].n,
          a.length,
        );
        const again = await claim("worker-c");
        assert.ok(
          again.every((id) => !a.includes(id) && !b.includes(id)),
          "processed and leased events are not claimed again",
        );
      },
    );

    await t.step(
      "a worker claims through PostgREST with the secret key: an array, oldest first; a doctor may not",
      async () => {
        const rpc = (name: string, body: unknown, auth: Record<string, string>) =>
          fetch(`${stack.url}/rest/v1/rpc/${name}`, {
            method: "POST",
            headers: { "content-type": "application/json", ...auth },
            body: JSON.stringify(body),
          });
        const secret = { apikey: JSON.parse(stack.env.SUPABASE_SECRET_KEYS).default };
        await deliver(
          stack,
          instagramDelivery([{
            accountId: one.accountId,
            items: [1, 2, 3].map((i) => directMessage(one.accountId, patient, `queue ${i}`)),
          }]),
        );
        const claimed = await (await rpc("claim_instagram_events", {
          p_worker: "http-worker",
          p_limit: 3,
          p_lease_seconds: 30,
        }, secret)).json();
        assert.ok(Array.isArray(claimed) && claimed.length === 3, JSON.stringify(claimed).slice(0, 200));
        const ids = claimed.map((event: { id: number }) => Number(event.id));
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "oldest first");
        assert.equal(
          await (await rpc("ack_instagram_events", { p_worker: "http-worker", p_ids: ids }, secret)).json(),
          3,
        );
        const asDoctor = await rpc("claim_instagram_events", { p_worker: "doctor" }, {
          apikey: JSON.parse(stack.env.SUPABASE_PUBLISHABLE_KEYS).default,
          authorization: `Bearer ${one.token}`,
        });
        assert.equal(asDoctor.status, 403);
        await asDoctor.body?.cancel();
        await sql`update public.instagram_events set processed_at = now() where processed_at is null`;
        assert.deepEqual(
          await (await rpc("claim_instagram_events", { p_worker: "idle" }, secret)).json(),
          [],
          "nothing free: []",
        );
      },
    );

    await t.step("retention removes more rows than one call of the old sweep (50), in one call", async () => {
      await sql`update public.instagram_events set received_at = now() - interval '91 days' where doctor_id = ${two.id}`;
      const old =
        (await sql`select count(*)::int as n from public.instagram_events where doctor_id = ${two.id}`)[0].n;
      assert.ok(old > 1000);
      assert.equal((await sql`select public.purge_instagram_events(90) as n`)[0].n, old);
      assert.equal((await eventsOf(sql, two.id)).length, 0);
      assert.ok((await eventsOf(sql, one.id)).length > 0, "recent events stay");
    });

    await t.step(
      "Meta's data deletion removes the Facebook user's events, after a disconnect too, and counts them",
      async () => {
        const stored = (await eventsOf(sql, one.id)).length;
        assert.ok(stored > 0);
        const disconnected = await fetch(stack.functionUrl("instagram-connect"), {
          method: "DELETE",
          headers: { authorization: `Bearer ${one.token}` },
        });
        assert.equal(disconnected.status, 200);
        await disconnected.body?.cancel();
        assert.equal(
          (await eventsOf(sql, one.id)).length,
          stored,
          "a disconnect keeps the practice's record",
        );
        const answer = await fetch(`${stack.functionUrl("instagram-callback")}/data-deletion`, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({
            signed_request: await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
              algorithm: "HMAC-SHA256",
              issued_at: Math.floor(Date.now() / 1000),
              user_id: one.facebookUserId,
            }),
          }),
        });
        assert.equal(answer.status, 200);
        const { confirmation_code } = await answer.json();
        assert.equal((await eventsOf(sql, one.id)).length, 0);
        const status = await fetch(
          `${stack.functionUrl("instagram-callback")}/data-deletion?code=${confirmation_code}`,
          {
            headers: { accept: "application/json" },
          },
        );
        assert.equal((await status.json()).events_deleted, stored);
      },
    );

    await t.step("no message text in any log line", () => {
      const output = stack.functions["instagram-webhook"].output();
      assert.match(
        output,
        /"event":"request","time":"[^"]+","fn":"instagram-webhook".*"path":"\/instagram-webhook","status":200,"object":"instagram","entries":1,"events":1000,"bytes":\d+,"stored":1000,/,
      );
      for (
        const text of [
          "Hello, can I book",
          "01.02.1980",
          "message 999",
          "Routed by Page",
          "forged",
          "xxxxxxxx",
        ]
      ) {
        assert.ok(!output.includes(text), `"${text}" is not logged`);
      }
    });
  });
  assert.ok(databaseUrl);
});
