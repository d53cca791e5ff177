// The stored form of a Page token: what the key ring writes, what it refuses to decrypt, and what it
// refuses to be made of. Rotation across rings is token_keys_test.ts.
import assert from "node:assert/strict";
import { importTokenKeyring, type TokenKey } from "../_shared/crypto/page_token.ts";

const binding = { doctorId: "7d4c6a8e-1f0b-4c9e-9a51-3b2f6d8e0c17", pageId: "1234567" };
const newKey = (id: string): TokenKey => ({ id, key: crypto.getRandomValues(new Uint8Array(32)) });
const k1 = newKey("k1");
const ring = await importTokenKeyring([k1]);

Deno.test("a page token encrypts to v2.<primary key id>.<iv>.<ciphertext> and decrypts back", async () => {
  const stored = await ring.encrypt("EAAGpageTOKEN", binding);
  assert.match(stored, /^v2\.k1\.[\w-]{16}\.[\w-]+$/);
  assert.ok(!stored.includes("EAAGpageTOKEN"));
  assert.equal(await ring.decrypt(stored, binding), "EAAGpageTOKEN");
  assert.equal(ring.keyIdOf(stored), "k1");
  assert.equal(ring.primaryId, "k1");
  assert.deepEqual(ring.ids, ["k1"]);
});

Deno.test("the same token encrypts differently each time (random IV)", async () => {
  assert.notEqual(await ring.encrypt("t", binding), await ring.encrypt("t", binding));
});

Deno.test("a ciphertext does not decrypt for another row, another key, after tampering or relabelling", async () => {
  const stored = await ring.encrypt("EAAGpageTOKEN", binding);
  await assert.rejects(ring.decrypt(stored, { ...binding, doctorId: crypto.randomUUID() }));
  await assert.rejects(ring.decrypt(stored, { ...binding, pageId: "7654321" }));
  const impostor = await importTokenKeyring([newKey("k1")]);
  await assert.rejects(impostor.decrypt(stored, binding), "another key under the same id");
  const tampered = stored.slice(0, -2) + (stored.endsWith("A") ? "BB" : "AA");
  await assert.rejects(ring.decrypt(tampered, binding));
  // The same key listed under a second id: the key id is authenticated, so the label cannot be moved.
  const twice = await importTokenKeyring([k1, { id: "k1-copy", key: k1.key }]);
  await assert.rejects(twice.decrypt(stored.replace(/^v2\.k1\./, "v2.k1-copy."), binding));
  assert.equal(await twice.decrypt(stored, binding), "EAAGpageTOKEN");
});

Deno.test("a value in no known form is refused without echoing it", async () => {
  for (
    const value of [
      "EAAGrawPageTokenNeverStored",
      "v3.k1.aXY.Y3Q",
      "v2.abc.def",
      "v2.K1.aXY.Y3Q",
      "v1.aXY.Y3Q.extra",
      "v2.k1.a+b.Y3Q",
    ]
  ) {
    await assert.rejects(ring.decrypt(value, binding), (error: Error) => {
      assert.match(error.message, /^unsupported token format/, value);
      assert.ok(!error.message.includes(value), "the value is not echoed");
      return true;
    });
    assert.throws(() => ring.keyIdOf(value), /unsupported token format/, value);
  }
  await assert.rejects(ring.decrypt("v3.k1.aXY.Y3Q", binding), /unsupported token format \(v3\)/);
});

Deno.test("a key ring is refused when empty, with a bad or repeated id, or a key that is not 32 bytes; never shows a key", async () => {
  const key = k1.key;
  const secret = btoa(String.fromCharCode(...key));
  const refusals: [TokenKey[], RegExp][] = [
    [[], /needs at least one key/],
    [[{ id: secret, key }], /a token key id must be 1 to 32 of a-z/],
    [[{ id: "", key }], /a token key id must be/],
    [[{ id: "Primary", key }], /a token key id must be/],
    [[{ id: "-k", key }], /a token key id must be/],
    [[{ id: "k".repeat(33), key }], /a token key id must be/],
    [[{ id: "k1", key }, { id: "k1", key: newKey("x").key }], /the token key id "k1" is listed twice/],
    [[{ id: "k1", key: key.slice(0, 16) }], /the token key "k1" must be 32 bytes/],
  ];
  for (const [keys, expected] of refusals) {
    await assert.rejects(importTokenKeyring(keys), (error: Error) => {
      assert.ok(error instanceof TypeError);
      assert.match(error.message, expected);
      assert.ok(!error.message.includes(secret) && !error.message.includes(secret.slice(0, 12)));
      return true;
    });
  }
  const longest = await importTokenKeyring([{ id: `0${"a-_".repeat(10)}z`, key }]);
  assert.equal(longest.primaryId.length, 32);
});

// Issue 18: Instagram Login links have no Page; their tokens are bound to the Instagram account.
const accountBinding = { doctorId: binding.doctorId, instagramAccountId: "17841400000000001" };

Deno.test("a Page binding's additional data is byte for byte as before (stored tokens still decrypt)", async () => {
  // Built here by hand with the additional data of before Instagram Login: v2.<key id>:doctor_instagram:<doctor>:<page>.
  const key = await crypto.subtle.importKey("raw", k1.key, "AES-GCM", false, ["encrypt"]);
  const iv = new Uint8Array(12).fill(7);
  const additionalData = new TextEncoder().encode(
    `v2.k1:doctor_instagram:${binding.doctorId}:${binding.pageId}`,
  );
  const ciphertext = new Uint8Array(
    await crypto.subtle.encrypt(
      { name: "AES-GCM", iv, additionalData },
      key,
      new TextEncoder().encode("EAAGold"),
    ),
  );
  const b64u = (bytes: Uint8Array) =>
    btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_")
      .replace(/=+$/, "");
  assert.equal(await ring.decrypt(`v2.k1.${b64u(iv)}.${b64u(ciphertext)}`, binding), "EAAGold");
});

Deno.test("an Instagram account binding: decrypts for its doctor and account only, never as a Page", async () => {
  const stored = await ring.encrypt("IGAAtoken", accountBinding);
  assert.match(stored, /^v2\.k1\./);
  assert.equal(await ring.decrypt(stored, accountBinding), "IGAAtoken");
  await assert.rejects(
    ring.decrypt(stored, { doctorId: binding.doctorId, pageId: "17841400000000001" }),
    "as Page X",
  );
  await assert.rejects(
    ring.decrypt(stored, { ...accountBinding, instagramAccountId: "17841400000000002" }),
    "another account",
  );
  await assert.rejects(
    ring.decrypt(stored, { ...accountBinding, doctorId: crypto.randomUUID() }),
    "another doctor",
  );
  const asPage = await ring.encrypt("EAAGpage", { doctorId: binding.doctorId, pageId: "17841400000000001" });
  await assert.rejects(ring.decrypt(asPage, accountBinding), "a Page X token never decrypts as account X");
});
