import assert from "node:assert/strict";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import { decodeBase64Url, encodeBase64Url } from "../_shared/crypto/base64url.ts";
import { AppError } from "../_shared/errors.ts";

const doctorId = "7d4c6a8e-1f0b-4c9e-9a51-3b2f6d8e0c17";

async function rejects(promise: Promise<unknown>, code: string) {
  await assert.rejects(promise, (error: unknown) => error instanceof AppError && error.code === code);
}

Deno.test("a state round-trips the doctor, expiry, page and nonce hash", async () => {
  const states = await createOAuthStates("app-secret-0123456789");
  const issued = await states.issue({ doctorId, ttlSeconds: 600, pageId: "1234567" });
  const verified = await states.verify(issued.state);
  assert.equal(verified.doctorId, doctorId);
  assert.equal(verified.pageId, "1234567");
  assert.equal(verified.nonceHash, issued.nonceHash);
  assert.match(verified.nonceHash, /^[0-9a-f]{64}$/);
  assert.equal(verified.expiresAt.getTime(), issued.expiresAt.getTime());
  assert.ok(issued.state.length <= 110, `state is compact (${issued.state.length} chars)`);
});

Deno.test("two states for the same doctor differ (random nonce)", async () => {
  const states = await createOAuthStates("app-secret-0123456789");
  const [a, b] = await Promise.all([0, 1].map(() => states.issue({ doctorId, ttlSeconds: 600 })));
  assert.notEqual(a.state, b.state);
  assert.notEqual(a.nonceHash, b.nonceHash);
});

Deno.test("a tampered payload, a tampered signature or another secret is refused", async () => {
  const states = await createOAuthStates("app-secret-0123456789");
  const { state } = await states.issue({ doctorId, ttlSeconds: 600 });
  const [payload, signature] = state.split(".");
  const bytes = decodeBase64Url(payload);
  bytes[30] ^= 1; // another doctor id
  await rejects(states.verify(`${encodeBase64Url(bytes)}.${signature}`), "state_invalid");
  const sig = decodeBase64Url(signature);
  sig[0] ^= 1;
  await rejects(states.verify(`${payload}.${encodeBase64Url(sig)}`), "state_invalid");
  const other = await createOAuthStates("another-app-secret-0123");
  await rejects(other.verify(state), "state_invalid");
});

Deno.test("garbage states are refused as invalid, never thrown as a crash", async () => {
  const states = await createOAuthStates("app-secret-0123456789");
  for (const garbage of ["", ".", "abc", "a.b.c", "%%%.%%%", "x".repeat(500), "AQ.AQ"]) {
    await rejects(states.verify(garbage), "state_invalid");
  }
});

Deno.test("an expired state is refused as expired", async () => {
  let now = Date.now();
  const states = await createOAuthStates("app-secret-0123456789", () => now);
  const { state } = await states.issue({ doctorId, ttlSeconds: 60 });
  await states.verify(state);
  now += 61_000;
  await rejects(states.verify(state), "state_expired");
});
