// Key rotation for stored Page tokens (INSTAGRAM_TOKEN_ENCRYPTION_KEYS): every listed key decrypts,
// only the primary encrypts, today's v1 values stay readable under the key `legacy`, and a ring without
// a key that stored tokens use is refused, naming the key. Pure crypto first; then the functions and
// token_key_usage() on the real database.
import assert from "node:assert/strict";
import { encodeBase64Url } from "../_shared/crypto/base64url.ts";
import {
  importTokenKeyring,
  MissingTokenKeyError,
  type TokenBinding,
  type TokenKey,
  type TokenKeyring,
} from "../_shared/crypto/page_token.ts";
import { describeMissingKeys, missingKeys } from "../_shared/crypto/token_key_usage.ts";
import { createDatabase } from "../_shared/database.ts";
import { LOCAL_SECRET_KEY, type LocalStack, tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { fullFlow, link, linkOf, newDoctor, pendingOf, stackTest, withStack } from "./_support.ts";

const binding = { doctorId: "7d4c6a8e-1f0b-4c9e-9a51-3b2f6d8e0c17", pageId: "1234567" };
const newKey = (id: string): TokenKey => ({ id, key: crypto.getRandomValues(new Uint8Array(32)) });
const base64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

// Written by the page_token.ts of before rotation (encryptPageToken, commit fc4e873) for `binding`
// under the key LEGACY_BYTES: a value as today's databases hold it.
const LEGACY_BYTES = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
const V1_VALUE = "v1.ntUcmmQVULETbuk1.TFZ5QLM05hs2Xt2qnZ30kReZVb5KQa4Lnu8BIQd7tN5If65hJBw3Mms";
const V1_TOKEN = "EAAGwrittenBeforeRotation";

/** The v1 format, written as it was (no key id; the doctor and the Page as additional data). */
async function v1Encrypt(rawKey: Uint8Array<ArrayBuffer>, token: string, { doctorId, pageId }: TokenBinding) {
  const key = await crypto.subtle.importKey("raw", rawKey, "AES-GCM", false, ["encrypt"]);
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const additionalData = new TextEncoder().encode(`doctor_instagram:${doctorId}:${pageId}`);
  const ciphertext = await crypto.subtle.encrypt(
    { name: "AES-GCM", iv, additionalData },
    key,
    new TextEncoder().encode(token),
  );
  return `v1.${encodeBase64Url(iv)}.${encodeBase64Url(new Uint8Array(ciphertext))}`;
}

async function refusesMissing(ring: TokenKeyring, stored: string, keyId: string) {
  await assert.rejects(ring.decrypt(stored, binding), (error: Error) => {
    assert.ok(error instanceof MissingTokenKeyError, String(error));
    assert.equal(error.keyId, keyId);
    assert.ok(error.message.includes(`"${keyId}"`), error.message);
    assert.match(error.message, /put it back in INSTAGRAM_TOKEN_ENCRYPTION_KEYS/);
    return true;
  });
}

Deno.test("rotation through three keys: each value stays readable while its key is listed; only the primary encrypts", async () => {
  const [k1, k2, k3] = [newKey("k1"), newKey("k2"), newKey("k3")];
  const rings = [[k1], [k2, k1], [k3, k2, k1], [k3, k2]];
  const written: { keyId: string; stored: string; token: string }[] = [];
  for (const keys of rings) {
    const ring = await importTokenKeyring(keys);
    assert.equal(ring.primaryId, keys[0].id);
    assert.deepEqual(ring.ids, keys.map((key) => key.id));
    // Every value written so far: readable exactly while its key is in the ring.
    for (const value of written) {
      if (ring.ids.includes(value.keyId)) {
        assert.equal(
          await ring.decrypt(value.stored, binding),
          value.token,
          `${value.keyId} under ${ring.ids}`,
        );
      } else {
        await refusesMissing(ring, value.stored, value.keyId);
      }
    }
    // Re-encrypting (what instagram-maintenance does) moves an older value to the primary.
    const oldest = written.find((value) => ring.ids.includes(value.keyId) && value.keyId !== ring.primaryId);
    if (oldest) {
      const moved = await ring.encrypt(await ring.decrypt(oldest.stored, binding), binding);
      assert.equal(ring.keyIdOf(moved), ring.primaryId);
      assert.equal(await ring.decrypt(moved, binding), oldest.token);
    }
    for (let i = 0; i < 3; i++) {
      const token = `EAAGpage${ring.primaryId}${i}`;
      const stored = await ring.encrypt(token, binding);
      assert.ok(stored.startsWith(`v2.${ring.primaryId}.`), stored);
      assert.equal(ring.keyIdOf(stored), ring.primaryId, "only the primary encrypts");
      written.push({ keyId: ring.primaryId, stored, token });
    }
  }
  assert.deepEqual([...new Set(written.map((value) => value.keyId))], ["k1", "k2", "k3"]);
  // A ring that has not been given the new key yet (an instance still on the old secrets) cannot read it.
  await refusesMissing(await importTokenKeyring([k1]), written.at(-1)!.stored, "k3");
});

Deno.test("v1 values written before rotation are read with the key whose id is legacy", async () => {
  const legacy = { id: "legacy", key: LEGACY_BYTES };
  const alone = await importTokenKeyring([legacy]);
  assert.equal(alone.keyIdOf(V1_VALUE), "legacy");
  assert.equal(await alone.decrypt(V1_VALUE, binding), V1_TOKEN);
  assert.ok((await alone.encrypt(V1_TOKEN, binding)).startsWith("v2.legacy."), "new values carry the id");

  const rotated = await importTokenKeyring([newKey("k2"), legacy]);
  assert.equal(await rotated.decrypt(V1_VALUE, binding), V1_TOKEN);
  assert.equal(rotated.keyIdOf(await rotated.encrypt(V1_TOKEN, binding)), "k2");
  await assert.rejects(
    rotated.decrypt(V1_VALUE, { ...binding, pageId: "7654321" }),
    "still bound to the row",
  );

  await refusesMissing(await importTokenKeyring([newKey("k2")]), V1_VALUE, "legacy");
  await assert.rejects(
    (await importTokenKeyring([newKey("legacy")])).decrypt(V1_VALUE, binding),
    (error) => !(error instanceof MissingTokenKeyError),
    "another key named legacy: a decryption failure, not a missing key",
  );
});

Deno.test("missingKeys: the key ids stored tokens use that the ring lacks, with their counts, said in one line", async () => {
  const ring = await importTokenKeyring([newKey("k3"), newKey("k2")]);
  const usage = [
    { key_id: "k1", link_tokens: 2, pending_tokens: 1 },
    { key_id: "k2", link_tokens: 5, pending_tokens: 0 },
    { key_id: "k3", link_tokens: 1, pending_tokens: 4 },
    { key_id: "legacy", link_tokens: 0, pending_tokens: 1 },
    { key_id: null, link_tokens: 1, pending_tokens: 0 },
  ];
  const missing = missingKeys(usage, ring);
  assert.deepEqual(missing, [
    { keyId: "k1", rows: 3 },
    { keyId: "legacy", rows: 1 },
    { keyId: null, rows: 1 },
  ]);
  assert.equal(
    describeMissingKeys(missing),
    'INSTAGRAM_TOKEN_ENCRYPTION_KEYS lacks keys that stored tokens use: key "k1" (3 stored tokens), ' +
      'key "legacy" (1 stored token), 1 stored token in no known format; put them back until no token ' +
      "uses them (README, Rotating the token encryption key)",
  );
  assert.deepEqual(missingKeys(usage.slice(1, 3), ring), [], "every key in use is listed");
  assert.deepEqual(missingKeys([{ key_id: "k1", link_tokens: 0, pending_tokens: 0 }], ring), []);
});

async function disconnect(stack: LocalStack, token: string) {
  const response = await fetch(stack.functionUrl("instagram-connect"), {
    method: "DELETE",
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: response.status, body: await response.json() };
}

Deno.test(
  "the functions on INSTAGRAM_TOKEN_ENCRYPTION_KEYS: written under the primary, read under every listed key and v1, counted by token_key_usage",
  stackTest,
  async (t) => {
    // Key ids unique to this run: the database is shared with the other tests (usage is compared by id).
    const run = crypto.randomUUID().slice(0, 8);
    const [primary, older, legacy, gone] = [
      newKey(`new-${run}`),
      newKey(`old-${run}`),
      newKey("legacy"),
      newKey(`gone-${run}`),
    ];
    const env = {
      INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
      INSTAGRAM_TOKEN_ENCRYPTION_KEYS: [primary, older, legacy].map((k) => `${k.id}:${base64(k.key)}`).join(
        ",",
      ),
      INSTAGRAM_META_TIMEOUT_MS: "400",
      INSTAGRAM_CALLBACK_DEADLINE_MS: "3000",
    };
    await withStack({ env }, async (stack, sql) => {
      const meta = stack.meta;
      const ring = await tokenKeyringOf(stack.env);
      assert.deepEqual(ring.ids, [primary.id, older.id, "legacy"]);
      const db = createDatabase({
        database: { url: stack.url, secretKey: LOCAL_SECRET_KEY, timeoutMs: 5000 },
      });
      const usageBefore = await db.tokenKeyUsage();

      /** A doctor linked through the functions, then their stored token rewritten by `rewrite`. */
      const doctors: string[] = [];
      const linked = async (rewrite?: (token: string, binding: TokenBinding) => Promise<string>) => {
        const doctor = await newDoctor(stack, sql);
        doctors.push(doctor.id);
        const { userId, pages } = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
        const page = { doctorId: doctor.id, pageId: pages[0].id };
        const pageToken = meta.pageTokens.get(page.pageId)!.at(-1)!;
        if (rewrite) {
          await sql`update public.doctor_instagram set instagram_access_token = ${await rewrite(
            pageToken,
            page,
          )}
                    where doctor_id = ${doctor.id}`;
        }
        return { doctor, page, pageToken };
      };
      const underOlder = async (token: string, binding: TokenBinding) =>
        await (await importTokenKeyring([older])).encrypt(token, binding);
      const asV1 = (token: string, binding: TokenBinding) => v1Encrypt(legacy.key, token, binding);

      await t.step("a link and a pending connection are written under the primary key", async () => {
        const { doctor, page, pageToken } = await linked();
        const stored = (await linkOf(sql, doctor.id)).instagram_access_token;
        assert.ok(stored.startsWith(`v2.${primary.id}.`), stored);
        assert.equal(await ring.decrypt(stored, page), pageToken);

        const waiting = await newDoctor(stack, sql);
        doctors.push(waiting.id);
        const { result } = await fullFlow(stack, waiting.token, meta.newUser(1).userId);
        assert.equal(result.status, 200, JSON.stringify(result.body));
        const [pending] = await pendingOf(sql, waiting.id);
        assert.ok(pending.pages[0].access_token.startsWith(`v2.${primary.id}.`));
      });

      await t.step(
        "every listed key decrypts: disconnect unsubscribes with tokens stored under an older key and as v1",
        async () => {
          for (const rewrite of [underOlder, asV1]) {
            const { doctor, page } = await linked(rewrite);
            assert.ok(meta.subscriptions.has(page.pageId));
            const result = await disconnect(stack, doctor.token);
            assert.equal(result.status, 200, JSON.stringify(result.body));
            assert.equal(result.body.meta.unsubscribed, true, "Meta took the decrypted Page token");
            assert.equal(meta.subscriptions.has(page.pageId), false);
          }
        },
      );

      await t.step(
        "token_key_usage (Data API, service role) counts tokens per key id; a ring lacking one in use is refused by name",
        async () => {
          await linked(underOlder);
          await linked(underOlder);
          await linked(asV1);
          const usage = await db.tokenKeyUsage();
          const delta = (id: string) => {
            const [now, then] = [usage, usageBefore].map((rows) => rows.find((row) => row.key_id === id));
            return [
              (now?.link_tokens ?? 0) - (then?.link_tokens ?? 0),
              (now?.pending_tokens ?? 0) - (then?.pending_tokens ?? 0),
            ];
          };
          assert.deepEqual(
            delta(primary.id),
            [1, 1],
            "the link and the pending connection of the first step",
          );
          assert.deepEqual(delta(older.id), [2, 0]);
          assert.deepEqual(delta("legacy"), [1, 0], "v1 values count under legacy");
          for (const row of usage) {
            assert.equal(typeof row.link_tokens, "number");
            assert.equal(typeof row.pending_tokens, "number");
          }

          const withoutOlder = await importTokenKeyring([primary, legacy]);
          const missing = missingKeys(usage, withoutOlder).filter((entry) => entry.keyId === older.id);
          assert.deepEqual(missing, [{ keyId: older.id, rows: 2 }]);
          assert.match(describeMissingKeys(missing), new RegExp(`key "${older.id}" \\(2 stored tokens\\)`));
          // Only this test's keys: other tests' rows share the database.
          const ours = new Set(ring.ids);
          assert.deepEqual(
            missingKeys(usage, ring).filter((entry) => entry.keyId && ours.has(entry.keyId)),
            [],
          );
        },
      );

      await t.step(
        "a token under a key the ring does not list: the disconnect's log names the key id, never the token",
        async () => {
          const { doctor, pageToken } = await linked(async (token, binding) =>
            await (await importTokenKeyring([gone])).encrypt(token, binding)
          );
          const result = await disconnect(stack, doctor.token);
          assert.equal(result.status, 200);
          assert.equal(result.body.meta.unsubscribed, false, "no Page token to unsubscribe with");
          const output = stack.functions["instagram-connect"].output();
          const line = output.split("\n").find((line) =>
            line.includes('"page_unsubscribe_failed"') && line.includes(gone.id)
          );
          assert.ok(line, output.slice(-2000));
          assert.match(line, /MissingTokenKeyError/);
          assert.ok(!output.includes(pageToken) && !output.includes(base64(gone.key)));
        },
      );

      // This test's rows go with it: the tests share one database, and rows under its keys (its own
      // `legacy` included) cannot be read by any other stack.
      await sql`delete from auth.users where id = any(${doctors})`;
    });
  },
);
