// instagram-webhook's edge cases (issue 23): the signature header checked before the body is read, and
// a client that drops mid-body. Real HTTP (raw TCP where a test needs to hold a body open or cut it), the real
// database, the fake Meta on loopback. No message text in any log line.
import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  deliverInstagramLoginWebhook,
  directMessage,
  newMid,
  webhookSignature,
} from "../../../scripts/lib/fake_meta_webhooks.ts";
import type { LocalStack } from "../../../scripts/lib/local_stack.ts";
import { databaseUrl, link, newDoctor, stackTest, withStack } from "./_support.ts";

const encoder = new TextEncoder();
const patient = "5550000000777";

/** A doctor linked through the fake Meta; the Instagram account id has 17 digits (above 2^53), as real ones. */
async function linkedDoctor(stack: LocalStack, sql: postgres.Sql) {
  const doctor = await newDoctor(stack, sql);
  const n = String(Math.floor(Math.random() * 1e12)).padStart(12, "0");
  const page = { id: `2${n}`, name: `Clinic ${n}`, instagram: { id: `17841${n}`, username: `edge_${n}` } };
  const { finished } = await link(stack, doctor.token, stack.meta.addUser(`edge-${doctor.id}`, [page]));
  assert.equal(finished.status, 200, JSON.stringify(finished.body));
  return { ...doctor, accountId: page.instagram.id };
}

/** One `instagram` entry for `accountId` at `time` (as Meta writes it: a number, its unit the caller's). */
const entry = (accountId: string, time: number, items: Record<string, unknown>[]) => ({
  id: accountId,
  time,
  messaging: items,
});

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
  await withStack({}, async (stack, sql) => {
    const url = stack.functionUrl("instagram-webhook");
    const secret = stack.env.INSTAGRAM_APP_SECRET;
    const doctor = await linkedDoctor(stack, sql);
    const account = doctor.accountId;
    const textOf = async (mid: string) =>
      (await sql`select payload from public.instagram_events
        where account_id = ${account} and event_key = ${`message:${mid}`}`)[0]?.payload?.message?.text;

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

    await t.step("no message text in any log line", () => {
      const output = stack.functions["instagram-webhook"].output();
      for (const words of ["words", "a field Meta may", "cut wor"]) {
        assert.ok(!output.includes(words), `"${words}" is not logged`);
      }
    });
  });
  assert.ok(databaseUrl);
});
