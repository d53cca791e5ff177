// instagram-connect (start) over real HTTP: JWT verification by @supabase/server plus our claim
// checks, the state it records (at most 10 per state lifetime), the dialog URL with PKCE, JSON vs redirect, request
// bodies, CORS and the headers every answer carries.
import assert from "node:assert/strict";
import { createJwtIssuer } from "../../../scripts/lib/jwt_issuer.ts";
import { LOCAL_PUBLISHABLE_KEY } from "../../../scripts/lib/local_stack.ts";
import { pkceChallenge } from "../_shared/oauth/pkce.ts";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import { callback, newDoctor, racesRequests, stackTest, startConnect, withStack } from "./_support.ts";

Deno.test("instagram-connect", stackTest, async (t) => {
  await withStack(
    { env: { INSTAGRAM_ALLOWED_ORIGINS: "https://dashboard.example.test" } },
    async (stack, sql) => {
      const connectUrl = stack.functionUrl("instagram-connect");
      const statesOf = (doctorId: string) =>
        sql`select * from private.oauth_states where doctor_id = ${doctorId}`;

      await t.step("answers Meta's dialog URL with a PKCE challenge and records the state", async () => {
        const doctor = await newDoctor(stack, sql);
        const { url, expires_at } = await startConnect(stack, doctor.token);
        const dialog = new URL(url);
        assert.equal(dialog.origin, stack.meta.url);
        assert.equal(dialog.pathname, `/${stack.env.INSTAGRAM_GRAPH_VERSION}/dialog/oauth`);
        assert.equal(dialog.searchParams.get("client_id"), stack.env.INSTAGRAM_APP_ID);
        assert.equal(dialog.searchParams.get("redirect_uri"), stack.env.INSTAGRAM_REDIRECT_URI);
        assert.equal(dialog.searchParams.get("response_type"), "code");
        assert.ok(dialog.searchParams.get("scope"));
        const state = dialog.searchParams.get("state")!;
        assert.match(state, /^[\w-]+\.[\w-]{43}$/);
        const lifetime = Date.parse(expires_at) - Date.now();
        assert.ok(lifetime > 590_000 && lifetime <= 600_000, `state lives 10 minutes (${lifetime} ms)`);

        // The challenge is S256 of the verifier derived from this state's nonce; the verifier itself
        // is not in the URL.
        const { codeVerifier } = await (await createOAuthStates(stack.env.INSTAGRAM_APP_SECRET)).verify(
          state,
        );
        assert.equal(dialog.searchParams.get("code_challenge_method"), "S256");
        assert.equal(dialog.searchParams.get("code_challenge"), await pkceChallenge(codeVerifier));
        assert.match(codeVerifier, /^[\w-]{43}$/);
        assert.ok(!url.includes(codeVerifier));

        const [row] = await statesOf(doctor.id);
        assert.ok(row, "a state row exists for the doctor");
        assert.equal(row.consumed_at, null);
        assert.ok(!url.includes(row.nonce_hash), "only the hash of the nonce is stored, not the state");
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
        assert.match(response.headers.get("location")!, /\/dialog\/oauth\?client_id=/);
      });

      await t.step(
        "POST with or without a JSON body (supabase.functions.invoke); page_id is signed in",
        async () => {
          const doctor = await newDoctor(stack, sql);
          const post = (init: RequestInit) =>
            fetch(connectUrl, {
              method: "POST",
              ...init,
              headers: { authorization: `Bearer ${doctor.token}`, ...init.headers },
            });
          const withPage = await post({
            headers: { "content-type": "application/json; charset=utf-8" },
            body: JSON.stringify({ page_id: "123456" }),
          });
          assert.equal(withPage.status, 200);
          const state = new URL((await withPage.json()).url).searchParams.get("state")!;
          const claims = await (await createOAuthStates(stack.env.INSTAGRAM_APP_SECRET)).verify(state);
          assert.equal(claims.pageId, "123456");

          const empty = await post({});
          assert.equal(empty.status, 200);
          assert.ok((await empty.json()).url);
        },
      );

      await t.step(
        "bodies: over 16 KiB 413, not JSON 415, malformed 400, bad page_id 400; nothing recorded",
        async () => {
          const doctor = await newDoctor(stack, sql);
          const post = (body: BodyInit, contentType: string) =>
            fetch(connectUrl, {
              method: "POST",
              headers: { authorization: `Bearer ${doctor.token}`, "content-type": contentType },
              body,
            });
          const big = JSON.stringify({ pad: "x".repeat(100 * 1024) });
          const cases: [string, Promise<Response>, number, string][] = [
            ["100 KiB", post(big, "application/json"), 413, "payload_too_large"],
            [
              "100 KiB streamed",
              post(new Blob([big]).stream(), "application/json"),
              413,
              "payload_too_large",
            ],
            ["text/plain", post('{"page_id":"1"}', "text/plain"), 415, "unsupported_media_type"],
            ["malformed JSON", post('{"page_id":', "application/json"), 400, "invalid_request"],
            ["page_id not a string", post('{"page_id":12}', "application/json"), 400, "invalid_request"],
            ["page_id not digits", post('{"page_id":"12;drop"}', "application/json"), 400, "invalid_request"],
            [
              "page_id in the query",
              fetch(`${connectUrl}?page_id=12;drop`, {
                headers: { authorization: `Bearer ${doctor.token}` },
              }),
              400,
              "invalid_request",
            ],
          ];
          for (const [label, request, status, code] of cases) {
            const response = await request;
            assert.equal(response.status, status, label);
            assert.equal((await response.json()).error.code, code, label);
          }
          assert.equal((await statesOf(doctor.id)).length, 0);
        },
      );

      await t.step("401 JSON, not a redirect, for anything but a doctor's own session", async () => {
        const doctor = await newDoctor(stack, sql);
        const stranger = await createJwtIssuer(stack.jwt.jwks.keys[0].kid);
        const cases: Record<string, string | undefined> = {
          "no Authorization header": undefined,
          "a JWT signed by another key (same kid)": await stranger.sign({ sub: doctor.id }),
          "an expired JWT": await stack.jwt.sign({ sub: doctor.id }, {
            expiresIn: Math.floor(Date.now() / 1000) - 60,
          }),
          "a JWT without sub": await stack.jwt.sign({}),
          "role anon": await stack.jwt.sign({ sub: doctor.id, role: "anon" }),
          "role service_role": await stack.jwt.sign({ sub: doctor.id, role: "service_role" }),
          "no role": await stack.jwt.sign({ sub: doctor.id, role: undefined }),
          "another audience": await stack.jwt.sign({ sub: doctor.id, aud: "other" }),
          "a sub that is not a UUID": await stack.jwt.sign({ sub: "not-a-uuid'--" }),
          "an anonymous sign-in": await stack.jwt.sign({ sub: doctor.id, is_anonymous: true }),
          "garbage": "not.a.jwt",
          "the publishable key": LOCAL_PUBLISHABLE_KEY,
        };
        for (const [label, token] of Object.entries(cases)) {
          const response = await fetch(connectUrl, {
            headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), "sec-fetch-mode": "navigate" },
            redirect: "manual",
          });
          assert.equal(response.status, 401, label);
          assert.equal((await response.json()).error.code, "unauthorized", label);
        }
        assert.equal((await statesOf(doctor.id)).length, 0, "no state was recorded for a refused request");
      });

      await t.step("a JWT for a user that no longer exists is refused, not a 500", async () => {
        const token = await stack.jwt.sign({ sub: crypto.randomUUID() });
        const response = await fetch(connectUrl, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(response.status, 401);
        assert.equal((await response.json()).error.code, "unauthorized");
      });

      await t.step("at most 10 states per doctor, even when requested at once: then 429", async (t) => {
        racesRequests(t);
        const doctor = await newDoctor(stack, sql);
        const responses = await Promise.all(
          Array.from(
            { length: 14 },
            () => fetch(connectUrl, { headers: { authorization: `Bearer ${doctor.token}` } }),
          ),
        );
        const statuses = responses.map((response) => response.status);
        assert.equal(statuses.filter((status) => status === 200).length, 10, statuses.join());
        const refused = responses.find((response) => response.status === 429)!;
        const retryAfter = Number(refused.headers.get("retry-after"));
        assert.ok(retryAfter > 590 && retryAfter <= 600, `Retry-After ${retryAfter}`);
        assert.equal((await refused.json()).error.code, "too_many_requests");
        await Promise.all(responses.filter((response) => !response.bodyUsed).map((r) => r.body?.cancel()));
        assert.equal((await statesOf(doctor.id)).length, 10);

        // A claimed state counts until it expires; an expired one no longer does.
        const [oldest] = await sql`select nonce_hash from private.oauth_states where doctor_id = ${doctor.id}
                                   order by expires_at limit 1`;
        await sql`update private.oauth_states set consumed_at = now() where nonce_hash = ${oldest.nonce_hash}`;
        const stillRefused = await fetch(connectUrl, {
          headers: { authorization: `Bearer ${doctor.token}` },
        });
        assert.equal(stillRefused.status, 429, "a claimed state still holds its place");
        await stillRefused.body?.cancel();
        await sql`update private.oauth_states
                  set created_at = now() - interval '11 minutes', expires_at = now() - interval '1 minute'
                  where nonce_hash = ${oldest.nonce_hash}`;
        assert.ok(await startConnect(stack, doctor.token), "an expired state frees a place");
      });

      await t.step(
        "start-then-cancel rounds: the cancelled states count, so the 11th start is 429 and rows stay bounded",
        async () => {
          const doctor = await newDoctor(stack, sql);
          for (let round = 1; round <= 10; round++) {
            const { url } = await startConnect(stack, doctor.token);
            // Cancel at Meta: its redirect (error=access_denied) reaches the callback, which uses the state up.
            const cancelled = await callback(await stack.meta.cancel(url));
            assert.equal(cancelled.body.error.code, "access_denied", `round ${round}`);
          }
          const states = await statesOf(doctor.id);
          assert.equal(states.length, 10);
          assert.ok(states.every((state) => state.consumed_at !== null), "each was used up by its cancel");

          for (let round = 11; round <= 30; round++) {
            const refused = await fetch(connectUrl, { headers: { authorization: `Bearer ${doctor.token}` } });
            assert.equal(refused.status, 429, `round ${round}`);
            assert.equal((await refused.json()).error.code, "too_many_requests");
            // When the oldest of the ten expires (they live 10 minutes) a place frees.
            const retryAfter = Number(refused.headers.get("retry-after"));
            const oldest = Math.min(...states.map((state) => state.expires_at.getTime()));
            const expected = (oldest - Date.now()) / 1000;
            assert.ok(
              Math.abs(retryAfter - expected) <= 2,
              `Retry-After ${retryAfter}, expected ${expected}`,
            );
          }
          assert.equal((await statesOf(doctor.id)).length, 10, "no row for a refused start");
        },
      );

      await t.step(
        "the correlation id is ours; a caller's is only logged, and only when well-formed",
        async () => {
          const doctor = await newDoctor(stack, sql);
          const send = (id: string) =>
            fetch(connectUrl, {
              headers: { authorization: `Bearer ${doctor.token}`, "x-correlation-id": id },
            });
          const fine = await send("dashboard-req.42");
          await fine.body?.cancel();
          const ours = fine.headers.get("x-correlation-id")!;
          assert.match(ours, /^[0-9a-f-]{36}$/);
          const hostile = await send(`"},"event":"forged","x":"${"y".repeat(80)}`);
          await hostile.body?.cancel();
          const log = stack.functions["instagram-connect"].output().split("\n");
          const line = log.find((entry) => entry.includes(ours) && entry.includes('"event":"request"'))!;
          assert.equal(JSON.parse(line).client_correlation_id, "dashboard-req.42");
          const hostileLine = log.find((entry) =>
            entry.includes(hostile.headers.get("x-correlation-id")!) && entry.includes('"event":"request"')
          )!;
          assert.equal(JSON.parse(hostileLine).client_correlation_id, undefined);
          assert.ok(
            !log.some((entry) => entry.includes('"event":"forged"')),
            "nothing of it reaches the log",
          );
        },
      );

      await t.step("every answer is no-store and nosniff: success, refusal, 404, preflight", async () => {
        const doctor = await newDoctor(stack, sql);
        const responses = [
          await fetch(connectUrl, { headers: { authorization: `Bearer ${doctor.token}` } }),
          await fetch(connectUrl),
          await fetch(`${connectUrl}/nope`),
          await fetch(connectUrl, {
            method: "OPTIONS",
            headers: { origin: "https://dashboard.example.test", "access-control-request-method": "POST" },
          }),
        ];
        for (const response of responses) {
          await response.body?.cancel();
          assert.equal(response.headers.get("cache-control"), "no-store", String(response.status));
          assert.equal(response.headers.get("x-content-type-options"), "nosniff", String(response.status));
        }
        assert.deepEqual(responses.map((response) => response.status), [200, 401, 404, 204]);
      });

      await t.step("CORS: preflight allowed for a configured origin only", async () => {
        const allowed = await fetch(`${connectUrl}/finish`, {
          method: "OPTIONS",
          headers: {
            origin: "https://dashboard.example.test",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
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

      await t.step("HEAD and other methods: 405, no state", async () => {
        const doctor = await newDoctor(stack, sql);
        for (const method of ["HEAD", "PUT", "PATCH"]) {
          const response = await fetch(connectUrl, {
            method,
            headers: { authorization: `Bearer ${doctor.token}` },
          });
          await response.body?.cancel();
          assert.equal(response.status, 405, method);
          assert.equal(response.headers.get("allow"), "GET, POST, DELETE", method);
        }
        assert.equal((await statesOf(doctor.id)).length, 0);
      });

      await t.step("rerequest (body or query) asks Meta again for declined permissions", async () => {
        const doctor = await newDoctor(stack, sql);
        const viaBody = await fetch(connectUrl, {
          method: "POST",
          headers: { authorization: `Bearer ${doctor.token}`, "content-type": "application/json" },
          body: JSON.stringify({ rerequest: true }),
        });
        assert.equal(new URL((await viaBody.json()).url).searchParams.get("auth_type"), "rerequest");
        const plain = new URL((await startConnect(stack, doctor.token)).url);
        assert.equal(plain.searchParams.get("auth_type"), null);
        const bad = await fetch(`${connectUrl}?rerequest=maybe`, {
          headers: { authorization: `Bearer ${doctor.token}` },
        });
        assert.equal(bad.status, 400);
        await bad.body?.cancel();
      });

      await t.step("unknown paths answer a JSON 404", async () => {
        const response = await fetch(`${connectUrl}/nope`);
        assert.equal(response.status, 404);
        assert.equal((await response.json()).error.code, "not_found");
      });
    },
  );
});

Deno.test("INSTAGRAM_PKCE=off: no challenge in the dialog URL", stackTest, async () => {
  await withStack({ env: { INSTAGRAM_PKCE: "off" } }, async (stack, sql) => {
    const doctor = await newDoctor(stack, sql);
    const dialog = new URL((await startConnect(stack, doctor.token)).url);
    assert.equal(dialog.searchParams.get("code_challenge"), null);
    assert.equal(dialog.searchParams.get("code_challenge_method"), null);
  });
});
