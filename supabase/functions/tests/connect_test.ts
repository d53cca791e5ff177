// instagram-connect over real HTTP: JWT verification by @supabase/server, the state it records,
// the dialog URL it answers, JSON vs redirect, CORS.
import assert from "node:assert/strict";
import { createJwtIssuer } from "../../../scripts/lib/jwt_issuer.ts";
import { newDoctor, stackTest, startConnect, withStack } from "./_support.ts";

Deno.test("instagram-connect", stackTest, async (t) => {
  await withStack(
    { env: { INSTAGRAM_ALLOWED_ORIGINS: "https://dashboard.example.test" } },
    async (stack, sql) => {
      const connectUrl = stack.functionUrl("instagram-connect");

      await t.step("answers Meta's dialog URL and records the state", async () => {
        const doctor = await newDoctor(stack, sql);
        const { url, expires_at } = await startConnect(stack, doctor.token);
        const dialog = new URL(url);
        assert.equal(dialog.origin, stack.meta.url);
        assert.equal(dialog.pathname, "/v24.0/dialog/oauth");
        assert.equal(dialog.searchParams.get("client_id"), stack.env.INSTAGRAM_APP_ID);
        assert.equal(dialog.searchParams.get("redirect_uri"), stack.env.INSTAGRAM_REDIRECT_URI);
        assert.equal(dialog.searchParams.get("response_type"), "code");
        assert.equal(
          dialog.searchParams.get("scope"),
          "pages_show_list,instagram_basic,instagram_manage_messages,pages_manage_metadata",
        );
        assert.match(dialog.searchParams.get("state")!, /^[\w-]+\.[\w-]{43}$/);
        const lifetime = Date.parse(expires_at) - Date.now();
        assert.ok(lifetime > 590_000 && lifetime <= 600_000, `state lives 10 minutes (${lifetime} ms)`);
        const [state] = await sql`select * from private.oauth_states where doctor_id = ${doctor.id}`;
        assert.ok(state, "a state row exists for the doctor");
        assert.equal(state.consumed_at, null);
        assert.ok(!url.includes(state.nonce_hash), "only the hash of the nonce is stored, not the state");
      });

      await t.step("redirects (302) a browser navigation to the dialog", async () => {
        const doctor = await newDoctor(stack, sql);
        const response = await fetch(connectUrl, {
          headers: {
            authorization: `Bearer ${doctor.token}`,
            "sec-fetch-mode": "navigate",
            accept: "text/html",
          },
          redirect: "manual",
        });
        await response.body?.cancel();
        assert.equal(response.status, 302);
        assert.match(response.headers.get("location")!, /\/v24\.0\/dialog\/oauth\?client_id=/);
      });

      await t.step("accepts POST with a JSON body (supabase.functions.invoke) and page_id", async () => {
        const doctor = await newDoctor(stack, sql);
        const response = await fetch(connectUrl, {
          method: "POST",
          headers: { authorization: `Bearer ${doctor.token}`, "content-type": "application/json" },
          body: JSON.stringify({ page_id: "123456" }),
        });
        assert.equal(response.status, 200);
        assert.ok((await response.json()).url);
      });

      await t.step("refuses a malformed page_id with 400 and records nothing", async () => {
        const doctor = await newDoctor(stack, sql);
        const response = await fetch(`${connectUrl}?page_id=12;drop`, {
          headers: { authorization: `Bearer ${doctor.token}` },
        });
        assert.equal(response.status, 400);
        assert.equal((await response.json()).error.code, "invalid_request");
        const rows = await sql`select 1 from private.oauth_states where doctor_id = ${doctor.id}`;
        assert.equal(rows.length, 0);
      });

      await t.step("401 JSON, not a redirect, without a valid JWT", async () => {
        const doctor = await newDoctor(stack, sql);
        const stranger = await createJwtIssuer(stack.jwt.jwks.keys[0].kid);
        const cases: Record<string, Record<string, string>> = {
          "no Authorization header": {},
          "a JWT signed by another key (same kid)": {
            authorization: `Bearer ${await stranger.sign({ sub: doctor.id })}`,
          },
          "an expired JWT": {
            authorization: `Bearer ${await stack.jwt.sign({ sub: doctor.id }, {
              expiresIn: Math.floor(Date.now() / 1000) - 60,
            })}`,
          },
          "a JWT without sub": { authorization: `Bearer ${await stack.jwt.sign({})}` },
          "garbage": { authorization: "Bearer not.a.jwt" },
        };
        for (const [label, headers] of Object.entries(cases)) {
          const response = await fetch(connectUrl, {
            headers: { ...headers, "sec-fetch-mode": "navigate" },
            redirect: "manual",
          });
          assert.equal(response.status, 401, label);
          assert.equal((await response.json()).error.code, "unauthorized", label);
        }
        const rows = await sql`select 1 from private.oauth_states where doctor_id = ${doctor.id}`;
        assert.equal(rows.length, 0, "no state was recorded for a refused request");
      });

      await t.step("a JWT for a user that no longer exists is refused, not a 500", async () => {
        const token = await stack.jwt.sign({ sub: crypto.randomUUID() });
        const response = await fetch(connectUrl, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(response.status, 401);
        assert.equal((await response.json()).error.code, "unauthorized");
      });

      await t.step("CORS: preflight allowed for a configured origin only", async () => {
        const allowed = await fetch(connectUrl, {
          method: "OPTIONS",
          headers: {
            origin: "https://dashboard.example.test",
            "access-control-request-method": "GET",
            "access-control-request-headers": "authorization",
          },
        });
        await allowed.body?.cancel();
        assert.equal(allowed.status, 204);
        assert.equal(allowed.headers.get("access-control-allow-origin"), "https://dashboard.example.test");
        const denied = await fetch(connectUrl, {
          method: "OPTIONS",
          headers: { origin: "https://evil.example.test", "access-control-request-method": "GET" },
        });
        await denied.body?.cancel();
        assert.equal(denied.headers.get("access-control-allow-origin"), null);
      });

      await t.step("unknown paths answer a JSON 404", async () => {
        const response = await fetch(`${connectUrl}/nope`);
        assert.equal(response.status, 404);
        assert.equal((await response.json()).error.code, "not_found");
      });
    },
  );
});
