// A signed_request whose user_id is a bare JSON integer above 2^53 (as the Instagram code exchange writes
// its user_id; Meta does not say how the Instagram app's signed_request writes it): read digit for digit,
// never through a JS number, which would change its last digits and match nobody's link.
import assert from "node:assert/strict";
import { encodeBase64Url } from "../_shared/crypto/base64url.ts";
import { createSignedRequestVerifier } from "../_shared/meta/signed_request.ts";

const SECRET = "0123456789abcdef0123456789abcdef";

async function signed(payloadText: string): Promise<string> {
  const body = encodeBase64Url(new TextEncoder().encode(payloadText));
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(SECRET),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const signature = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body)));
  return `${encodeBase64Url(signature)}.${body}`;
}

Deno.test("signed_request of the Instagram app: a bare integer user_id above 2^53 is read digit for digit", async () => {
  const id = "17841400000000001";
  assert.notEqual(String(JSON.parse(id)), id, "a JS number would change it");
  const now = Math.floor(Date.now() / 1000);
  const verifier = await createSignedRequestVerifier(SECRET, Date.now, { integerIds: true });
  const request = await verifier.verify(
    await signed(`{"algorithm":"HMAC-SHA256","issued_at":${now},"user_id":${id}}`),
  );
  assert.equal(request.facebookUserId, id);
  // The string form, as the Facebook app sends it, is unchanged.
  const quoted = await verifier.verify(
    await signed(`{"algorithm":"HMAC-SHA256","issued_at":${now},"user_id":"${id}"}`),
  );
  assert.equal(quoted.facebookUserId, id);
  // The Facebook app's verifier keeps to Meta's documented string.
  const facebook = await createSignedRequestVerifier(SECRET);
  await assert.rejects(
    facebook.verify(await signed(`{"algorithm":"HMAC-SHA256","issued_at":${now},"user_id":${id}}`)),
  );
});
