// instagram-webhook's edge cases (issue 23): stale replays, deep nesting, ids above 2^53, dedupe keys
// that cannot collide across kinds, the signature header checked before the body is read, and a client
// that drops mid-body. Real HTTP (raw TCP where a test needs to hold a body open or cut it), the real
// database, the fake Meta on loopback. No message text in any log line.
import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  deliverInstagramLoginWebhook,
  deliverWebhook,
  directMessage,
  newMid,
  unsend,
  webhookSignature,
} from "../../../scripts/lib/fake_meta_webhooks.ts";
import type { LocalStack } from "../../../scripts/lib/local_stack.ts";
import { databaseUrl, pageLinkedDoctor, stackTest, withStack } from "./_support.ts";

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const encoder = new TextEncoder();
const patient = "5550000000777";

/** A doctor linked through the fake Meta; the account id has 17 digits (above 2^53), as real ones do. */
const linkedDoctor = (stack: LocalStack, sql: postgres.Sql) => pageLinkedDoctor(stack, sql, "17841");

/** One `instagram` entry for `accountId` at `time` (as Meta writes it: a number, its unit the caller's). */
const entry = (accountId: string, time: number, items: Record<string, unknown>[]) => ({
  id: accountId,
  time,
  messaging: items,
});

/** The counts a delivery answers when nothing was dropped, with `changes` over them. */
const counts = (changes: Record<string, number>) => ({
  stored: 0,
  duplicates: 0,
  unknown_account_events: 0,
  wrong_app_events: 0,
  unsends: 0,
  stale_entries: 0,
  too_deep_entries: 0,
  ...changes,
});

/** `depth` arrays, one inside the other: `[[[]]]` is 3. */
const nested = (depth: number): unknown => JSON.parse("[".repeat(depth) + "]".repeat(depth));

/** A raw HTTP/1.1 POST to the function itself (no router between), its body's first bytes sent, held open. */
async function openPost(stack: LocalStack, headers: Record<string, string>, first: Uint8Array) {
  const { hostname, port } = new URL(stack.functions["instagram-webhook"].url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const head = [
    "POST /instagram-webhook HTTP/1.1",
    `host: ${hostname}:${port}`,
    "content-type: application/json",
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    "",
    "",
  ].join("\r\n");
  for (const bytes of [encoder.encode(head), first]) {
    for (let written = 0; written < bytes.length;) written += await conn.write(bytes.subarray(written));
  }
  return conn;
}

/**
 * The status line's code of the answer on `conn`, or undefined if none came. The guard only ends a wait
 * that would otherwise never end (the answer that never comes while the body is held open).
 */
async function statusOf(conn: Deno.Conn): Promise<number | undefined> {
  const guard = setTimeout(() => conn.close(), 60_000);
  let text = "";
  const buffer = new Uint8Array(4096);
  try {
    while (!text.includes("\r\n\r\n")) {
      const read = await conn.read(buffer);
      if (read === null) return undefined;
      text += new TextDecoder().decode(buffer.subarray(0, read));
    }
  } catch {
    return undefined;
  } finally {
    clearTimeout(guard);
  }
  return Number(text.match(/^HTTP\/1\.1 (\d{3})/)?.[1]);
}

/** Closed, unless the guard of statusOf already closed it. */
function closeQuietly(conn: Deno.Conn) {
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** The function's log lines that name `clientId` (sent as x-correlation-id), once its request line is out. */
async function linesOf(stack: LocalStack, clientId: string): Promise<Record<string, unknown>[]> {
  const mine = () =>
    stack.functions["instagram-webhook"].output().split("\n")
      .filter((line) => line.includes(`"client_correlation_id":"${clientId}"`))
      .map((line) => JSON.parse(line));
  // Polled until the request's own line is written (it ends every request), however long that takes.
  while (!mine().some((line) => line.event === "request")) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return mine();
}

Deno.test("instagram-webhook: the receiver's edge cases", stackTest, async (t) => {
  // A retention of one day: the floor of two days (Meta retries for 36 hours) is then what decides.
  await withStack({ env: { INSTAGRAM_EVENT_RETENTION_DAYS: "1" } }, async (stack, sql) => {
    const url = stack.functionUrl("instagram-webhook");
    const secret = stack.env.INSTAGRAM_APP_SECRET;
    const deliver = (body: unknown) => deliverWebhook(url, secret, body);
    const doctor = await linkedDoctor(stack, sql);
    const account = doctor.accountId;
    const textOf = async (mid: string) =>
      (await sql`select payload from public.instagram_events
        where account_id = ${account} and event_key = ${`message:${mid}`}`)[0]?.payload?.message?.text;

    await t.step(
      "entries older than max(retention, 2 days) by entry.time, in ms or in s, are dropped and counted",
      async () => {
        const now = Date.now();
        const sent = [
          directMessage(account, patient, "stale words ms"),
          directMessage(account, patient, "stale words s"),
          directMessage(account, patient, "retry words"),
          directMessage(account, patient, "fresh words ms"),
          directMessage(account, patient, "fresh words s"),
        ];
        const answer = await deliver({
          object: "instagram",
          entry: [
            entry(account, now - 3 * DAY, [sent[0]]),
            entry(account, Math.floor((now - 3 * DAY) / 1000), [sent[1]]),
            // Meta's retry of a delivery it could not hand over, 30 hours on: within its 36 hours.
            entry(account, now - 30 * HOUR, [sent[2]]),
            entry(account, now, [sent[3]]),
            entry(account, Math.floor(now / 1000), [sent[4]]),
          ],
        });
        assert.equal(answer.status, 200);
        assert.deepEqual(await answer.json(), counts({ stored: 3, stale_entries: 2 }));
        const stored =
          await sql`select message_id from public.instagram_events where account_id = ${account}`;
        assert.deepEqual(
          new Set(stored.map((row) => row.message_id)),
          new Set(sent.slice(2).map((item) => (item.message as { mid: string }).mid)),
        );
      },
    );

    await t.step("a signed delivery replayed after its events were purged is not stored again", async () => {
      const mid = newMid();
      // Received three days ago (stored then, as it was fresh), purged at one day's retention, replayed now.
      const body = JSON.stringify({
        object: "instagram",
        entry: [
          entry(account, Date.now() - 3 * DAY, [directMessage(account, patient, "replayed words", { mid })]),
        ],
      });
      await sql`select public.store_instagram_events('instagram', ${
        sql.json(JSON.parse(body).entry as never)
      }, 'facebook')`;
      await sql`update public.instagram_events set received_at = now() - interval '3 days'
        where account_id = ${account} and message_id = ${mid}`;
      assert.ok((await sql`select public.purge_instagram_events(1) as n`)[0].n >= 1);
      const answer = await deliverWebhook(url, secret, body);
      assert.deepEqual(await answer.json(), counts({ stale_entries: 1 }));
      assert.equal(
        (await sql`select count(*)::int as n from public.instagram_events where message_id = ${mid}`)[0].n,
        0,
      );
    });

    await t.step(
      "an entry nested deeper than 64 is dropped and counted, the rest of the batch stored (not a 5xx)",
      async () => {
        // entry (1) > messaging (2) > item (3) > message (4) > `depth - 4` arrays.
        const deep = (depth: number) =>
          entry(account, Date.now(), [{
            sender: { id: patient },
            recipient: { id: account },
            timestamp: Date.now(),
            message: { mid: newMid(), text: "deep words", attachments: nested(depth - 4) },
          }]);
        const fine = directMessage(account, patient, "shallow words");
        // 3000 deep overflowed the database client's serialisation: 503, and Meta's retries for 36 hours.
        const answer = await deliver({
          object: "instagram",
          entry: [deep(3000), entry(account, Date.now(), [fine]), deep(64), deep(65)],
        });
        assert.equal(answer.status, 200);
        assert.deepEqual(await answer.json(), counts({ stored: 2, too_deep_entries: 2 }));
        assert.equal(await textOf((fine.message as { mid: string }).mid), "shallow words");
        // Beside the entries, which are all that is stored: never walked, at any depth (spliced in as
        // text: JSON.stringify itself would overflow the stack here).
        const batch = JSON.stringify({
          object: "instagram",
          entry: [entry(account, Date.now(), [directMessage(account, patient, "beside words")])],
        });
        const beside = await deliver(
          `${batch.slice(0, -1)},"extra":${"[".repeat(100_000)}${"]".repeat(100_000)}}`,
        );
        assert.equal(beside.status, 200);
        assert.deepEqual(await beside.json(), counts({ stored: 1 }));
      },
    );

    await t.step("ids sent as JSON numbers above 2^53 are stored as their digits", async () => {
      assert.ok(BigInt(account) > 2n ** 53n);
      const [incoming, echo] = [newMid(), newMid()];
      const sender = "17841400000000001";
      // Written by hand: JSON.stringify cannot write these numbers exactly.
      const body = `{"object":"instagram","entry":[{"id":${account},"time":${Date.now()},"messaging":[` +
        `{"sender":{"id":${sender}},"recipient":{"id":${account}},"timestamp":${Date.now()},` +
        `"message":{"mid":"${incoming}","text":"number words"}},` +
        `{"sender":{"id":${account}},"recipient":{"id":${sender}},"timestamp":${Date.now()},` +
        `"message":{"mid":"${echo}","text":"our words"}}]}]}`;
      const answer = await deliverWebhook(url, secret, body);
      assert.equal(answer.status, 200);
      assert.equal((await answer.json()).stored, 2);
      const rows = await sql`select message_id, sender_id, recipient_id, direction, payload
        from public.instagram_events where message_id in (${incoming}, ${echo}) order by id`;
      assert.deepEqual(
        rows.map((row) => [row.message_id, row.sender_id, row.recipient_id, row.direction]),
        [[incoming, sender, account, "incoming"], [echo, account, sender, "echo"]],
        "the practice's own message is recognised by its account id",
      );
      assert.equal(rows[0].payload.sender.id, sender, "the payload holds the id's digits");
    });

    await t.step("dedupe keys: a `changes` item named unsend is no unsend of a message", async () => {
      const change = { field: "unsend", value: { id: "1", note: "a field Meta may one day send" } };
      const [{ hash }] = await sql`select encode(sha256(convert_to(${
        sql.json(change as never)
      }::jsonb::text, 'UTF8')), 'hex') as hash`;
      const first = await deliver({
        object: "instagram",
        entry: [{ id: account, time: Date.now(), changes: [change] }],
      });
      assert.equal((await first.json()).stored, 1);
      // A message whose mid reads like that item's hash keeps its text, and its real unsend counts.
      const message = await deliver({
        object: "instagram",
        entry: [entry(account, Date.now(), [directMessage(account, patient, "hash words", { mid: hash })])],
      });
      assert.equal((await message.json()).stored, 1);
      assert.equal(await textOf(hash), "hash words");
      const removal = await deliver({
        object: "instagram",
        entry: [entry(account, Date.now(), [unsend(account, patient, hash)])],
      });
      assert.deepEqual(await removal.json(), counts({ stored: 1, unsends: 1 }));
      assert.equal(await textOf(hash), undefined);
    });

    await t.step(
      "dedupe keys: a short mid that reads `sha256:<hex>` is not the long mid so hashed",
      async () => {
        const long = `m${"y".repeat(300)}${newMid()}`;
        const [{ hex }] = await sql`select encode(sha256(convert_to(${long}, 'UTF8')), 'hex') as hex`;
        const answer = await deliver({
          object: "instagram",
          entry: [entry(account, Date.now(), [
            directMessage(account, patient, "long words", { mid: long }),
            directMessage(account, patient, "lookalike words", { mid: `sha256:${hex}` }),
          ])],
        });
        assert.deepEqual(await answer.json(), counts({ stored: 2 }));
      },
    );

    await t.step(
      "an unsend removes the text of its own mid only, not of one sharing its first 512 characters",
      async () => {
        const prefix = `m${"z".repeat(511)}`;
        const [kept, removed] = [`${prefix}${newMid()}`, `${prefix}${newMid()}`];
        await deliver({
          object: "instagram",
          entry: [entry(account, Date.now(), [
            directMessage(account, patient, "kept words", { mid: kept }),
            directMessage(account, patient, "removed words", { mid: removed }),
          ])],
        });
        const answer = await deliver({
          object: "instagram",
          entry: [entry(account, Date.now(), [unsend(account, patient, removed)])],
        });
        assert.deepEqual(await answer.json(), counts({ stored: 1, unsends: 1 }));
        const rows = await sql`select payload from public.instagram_events
        where message_id = ${prefix} and kind = 'messages' and not (payload -> 'message' ? 'is_deleted')`;
        assert.deepEqual(
          rows.map((row) => [row.payload.message.mid, row.payload.message.text]).sort(),
          [[kept, "kept words"], [removed, undefined]].sort(),
        );
      },
    );

    await t.step(
      "dedupe keys written before this change still match (a redelivery is stored once)",
      async () => {
        const mid = newMid();
        const reaction = {
          sender: { id: patient },
          recipient: { id: account },
          timestamp: Date.now(),
          reaction: { mid, action: "react", reaction: "love" },
        };
        const comment = { field: "comments", value: { id: "17800000000000001", text: "comment words" } };
        const body = {
          object: "instagram",
          entry: [
            entry(account, Date.now(), [directMessage(account, patient, "once words", { mid }), reaction]),
            { id: account, time: Date.now(), changes: [comment] },
          ],
        };
        assert.deepEqual(await (await deliver(body)).json(), counts({ stored: 3 }));
        // The keys as the function before this change wrote them: message:<mid>, <kind>:<sha256 of the item>.
        const hash = (item: unknown) =>
          sql`select encode(sha256(convert_to(${sql.json(item as never)}::jsonb::text, 'UTF8')), 'hex') as h`
            .then(([row]) => row.h as string);
        const keys = await sql`select event_key from public.instagram_events
        where account_id = ${account} and (message_id = ${mid} or kind = 'comments') order by id`;
        assert.deepEqual(keys.map((row) => row.event_key), [
          `message:${mid}`,
          `message_reactions:${await hash(reaction)}`,
          `comments:${await hash(comment)}`,
        ]);
        assert.deepEqual(await (await deliver(body)).json(), counts({ duplicates: 3 }));
      },
    );

    await t.step("a missing or malformed signature header is refused before the body is read", async () => {
      for (const signature of [undefined, "sha256=nothex", "sha1=0123"]) {
        // A body announced as 3 MB of which 16 bytes are sent, and the rest never: only an answer that
        // does not wait for the body can come.
        const conn = await openPost(stack, {
          "content-length": "3000000",
          ...(signature ? { "x-hub-signature-256": signature } : {}),
        }, encoder.encode('{"object":"inst'));
        try {
          assert.equal(await statusOf(conn), 401, `answered with the body still open (${signature})`);
        } finally {
          closeQuietly(conn);
        }
      }
    });

    await t.step(
      "a signed body that arrives in many pieces is checked as it arrives and stored",
      async () => {
        const mid = newMid();
        const bytes = encoder.encode(JSON.stringify({
          object: "instagram",
          entry: [entry(account, Date.now(), [directMessage(account, patient, "piece words", { mid })])],
        }));
        const signature = await webhookSignature(secret, bytes);
        let offset = 0;
        const body = new ReadableStream<Uint8Array>({
          pull(controller) {
            if (offset >= bytes.length) return controller.close();
            controller.enqueue(bytes.slice(offset, offset += 7));
          },
        });
        const answer = await fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json", "x-hub-signature-256": signature },
          body,
        });
        assert.equal(answer.status, 200);
        assert.equal((await answer.json()).stored, 1);
        assert.equal(await textOf(mid), "piece words");
        // Under the other app's secret: both secrets are checked over the one read, the Instagram one's too.
        const other = await deliverInstagramLoginWebhook(url, {
          instagramAppSecret: stack.env.INSTAGRAM_LOGIN_APP_SECRET,
        }, new TextDecoder().decode(bytes));
        assert.equal((await other.json()).wrong_app_events, 1);
      },
    );

    await t.step(
      "a client that drops mid-body gets a 400 logged at info level, no 500 or error line",
      async () => {
        const clientId = `drop-${crypto.randomUUID()}`;
        const conn = await openPost(
          stack,
          {
            "content-length": "1000",
            "x-hub-signature-256": `sha256=${"ab".repeat(32)}`,
            "x-correlation-id": clientId,
          },
          encoder.encode('{"object":"instagram","entry":[{"id":"1","messaging":[{"message":{"text":"cut wor'),
        );
        conn.close();
        const lines = await linesOf(stack, clientId);
        const request = lines.find((line) => line.event === "request")!;
        assert.equal(request.status, 400, JSON.stringify(request));
        assert.equal(request.error_code, "invalid_request");
        assert.deepEqual(lines.map((line) => line.level), lines.map(() => "info"), JSON.stringify(lines));
        assert.ok(lines.some((line) => JSON.stringify(line).includes('"reason":"body_incomplete"')));
      },
    );

    await t.step("no message text in any log line; the drops are counted in the request's line", () => {
      const output = stack.functions["instagram-webhook"].output();
      assert.match(output, /"event":"request".*"status":200,.*"stale_entries":2,"too_deep_entries":0/);
      assert.match(output, /"event":"request".*"status":200,.*"stale_entries":0,"too_deep_entries":2/);
      for (const words of ["words", "a field Meta may", "cut wor"]) {
        assert.ok(!output.includes(words), `"${words}" is not logged`);
      }
    });
  });
  assert.ok(databaseUrl);
});
