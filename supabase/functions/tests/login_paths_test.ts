// Either path alone (issue 18): with only the Instagram Login app configured, every function starts, and
// what needs the Facebook app refuses clearly (login_path_not_configured) instead of crashing or
// reaching Meta.
import assert from "node:assert/strict";
import { signedRequest } from "../../../scripts/lib/fake_meta.ts";
import { deliverWebhook, webhookSignature } from "../../../scripts/lib/fake_meta_webhooks.ts";
import { createWebhookVerifier, type WebhookVerifier } from "../_shared/meta/webhook_signature.ts";
import { newDoctor, stackTest, withStack } from "./_support.ts";

Deno.test("Instagram Login alone: the Facebook path is refused as not configured", stackTest, async (t) => {
  await withStack({ env: { INSTAGRAM_APP_ID: "", INSTAGRAM_APP_SECRET: "" } }, async (stack, sql) => {
    await t.step(
      "starting via Facebook: 404 login_path_not_configured, no state recorded, no Meta call",
      async () => {
        const doctor = await newDoctor(stack, sql);
        // via=facebook said outright: without it, an Instagram-only deployment starts Instagram Login.
        const response = await fetch(`${stack.functionUrl("instagram-connect")}?via=facebook`, {
          method: "POST",
          headers: { authorization: `Bearer ${doctor.token}`, accept: "application/json" },
        });
        assert.equal(response.status, 404);
        assert.equal((await response.json()).error.code, "login_path_not_configured");
        const [{ n }] =
          await sql`select count(*)::int as n from private.oauth_states where doctor_id = ${doctor.id}`;
        assert.equal(n, 0);
        assert.equal(stack.meta.calls.dialog, 0);
      },
    );

    await t.step("the Facebook app's deauthorize callback: 404 login_path_not_configured", async () => {
      const value = await signedRequest("0123456789abcdef0123456789abcdef", {
        algorithm: "HMAC-SHA256",
        issued_at: Math.floor(Date.now() / 1000),
        user_id: "10200000000000001",
      });
      const response = await fetch(`${stack.functionUrl("instagram-callback")}/deauthorize`, {
        method: "POST",
        body: new URLSearchParams({ signed_request: value }),
      });
      assert.equal(response.status, 404);
      assert.equal((await response.json()).error.code, "login_path_not_configured");
    });

    await t.step("a delivery signed with the Facebook app's secret is not accepted", async () => {
      const response = await deliverWebhook(
        stack.functionUrl("instagram-webhook"),
        "0123456789abcdef0123456789abcdef",
        { object: "instagram", entry: [] },
      );
      assert.equal(response.status, 401);
      await response.body?.cancel();
    });
  });
});

Deno.test("the webhook verifier checks each app's signature under that app's secret only", async () => {
  const facebookSecret = "0123456789abcdef0123456789abcdef";
  const instagramSecret = "fedcba9876543210fedcba9876543210";
  const body = new TextEncoder().encode('{"object":"instagram","entry":[]}');
  const both = await createWebhookVerifier(facebookSecret, "a-verify-token-for-these-tests", instagramSecret);
  const byFacebook = await webhookSignature(facebookSecret, body);
  const byInstagram = await webhookSignature(instagramSecret, body);
  /** Who `verifier` finds signed `body` under `header`, the body fed in `size`-byte pieces. */
  const signer = (verifier: WebhookVerifier, header: string, size = body.length) => {
    const check = verifier.signatureCheck(header)!;
    for (let at = 0; at < body.length; at += size) check.update(body.subarray(at, at + size));
    return check.signer();
  };
  assert.equal(signer(both, byFacebook), "facebook");
  assert.equal(signer(both, byInstagram), "instagram");
  assert.equal(
    signer(both, byInstagram.toUpperCase().replace("SHA256=", "sha256=")),
    "instagram",
    "hex in any case",
  );
  assert.equal(signer(both, byFacebook, 1), "facebook", "fed a byte at a time: the same HMAC");
  assert.equal(signer(both, byInstagram, 5), "instagram");
  assert.equal(signer(both, `sha256=${"0".repeat(64)}`), undefined, "well-formed, neither secret's");
  for (const malformed of [undefined, "", "sha256=", `sha1=${"0".repeat(40)}`, `sha256=${"0".repeat(63)}`]) {
    assert.equal(both.signatureCheck(malformed), undefined, `refused before any byte: ${malformed}`);
  }
  const instagramOnly = await createWebhookVerifier(
    undefined,
    "a-verify-token-for-these-tests",
    instagramSecret,
  );
  assert.equal(signer(instagramOnly, byFacebook), undefined, "no Facebook app: nothing is its");
  assert.equal(signer(instagramOnly, byInstagram), "instagram");
});
