import assert from "node:assert/strict";
import { decryptPageToken, encryptPageToken, importTokenKey } from "../_shared/crypto/page_token.ts";

const binding = { doctorId: "7d4c6a8e-1f0b-4c9e-9a51-3b2f6d8e0c17", pageId: "1234567" };
const key = await importTokenKey(crypto.getRandomValues(new Uint8Array(32)));

Deno.test("a page token encrypts to the versioned format and decrypts back", async () => {
  const stored = await encryptPageToken(key, "EAAGpageTOKEN", binding);
  assert.match(stored, /^v1\.[\w-]{16}\.[\w-]+$/);
  assert.ok(!stored.includes("EAAGpageTOKEN"));
  assert.equal(await decryptPageToken(key, stored, binding), "EAAGpageTOKEN");
});

Deno.test("the same token encrypts differently each time (random IV)", async () => {
  assert.notEqual(await encryptPageToken(key, "t", binding), await encryptPageToken(key, "t", binding));
});

Deno.test("a ciphertext does not decrypt for another row, another key or after tampering", async () => {
  const stored = await encryptPageToken(key, "EAAGpageTOKEN", binding);
  await assert.rejects(decryptPageToken(key, stored, { ...binding, doctorId: crypto.randomUUID() }));
  await assert.rejects(decryptPageToken(key, stored, { ...binding, pageId: "7654321" }));
  const otherKey = await importTokenKey(crypto.getRandomValues(new Uint8Array(32)));
  await assert.rejects(decryptPageToken(otherKey, stored, binding));
  const tampered = stored.slice(0, -2) + (stored.endsWith("A") ? "BB" : "AA");
  await assert.rejects(decryptPageToken(key, tampered, binding));
  await assert.rejects(decryptPageToken(key, "v2.abc.def", binding), /unsupported token format/);
});
