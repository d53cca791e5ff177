// instagram-callback over real HTTP against the real database (through the gateway) and the fake
// Meta: every outcome, what is written, and how many calls each path makes.
import assert from "node:assert/strict";
import { createOAuthStates } from "../_shared/oauth_state.ts";
import { decryptPageToken, importTokenKey } from "../_shared/token_crypto.ts";
import { decodeBase64 } from "../_shared/config.ts";
import {
  auditOf,
  callback,
  fullFlow,
  linkOf,
  metaCallCount,
  newDoctor,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

const FAST_FAILURES = { INSTAGRAM_META_TIMEOUT_MS: "400", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" };

Deno.test("instagram-callback", stackTest, async (t) => {
  await withStack({ env: FAST_FAILURES }, async (stack, sql) => {
    const meta = stack.meta;
    const callbackUrl = stack.functionUrl("instagram-callback");
    const tokenKey = await importTokenKey(decodeBase64(stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY)!);

    await t.step("happy path: 3 Meta calls, the encrypted Page token stored, one audit entry", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(1);
      meta.resetCounts();
      const gatewayCalls = stack.dbCalls.rpc ?? 0;
      const { result } = await fullFlow(stack, doctor.token, userId);

      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(result.body.connected, true);
      assert.equal(result.body.instagram_page_id, pages[0].id);
      assert.equal(result.body.instagram_username, pages[0].instagram!.username);
      assert.deepEqual(
        { ...meta.calls, dialog: 0 },
        { dialog: 0, code_exchange: 1, token_exchange: 1, list_pages: 1 },
      );
      assert.equal((stack.dbCalls.rpc ?? 0) - gatewayCalls, 3, "create state, check state, link");

      const row = await linkOf(sql, doctor.id);
      assert.equal(row.instagram_page_id, pages[0].id);
      assert.equal(row.page_name, pages[0].name);
      assert.equal(row.instagram_business_account_id, pages[0].instagram!.id);
      assert.match(row.instagram_access_token, /^v1\./);
      const issued = meta.pageTokens.get(pages[0].id)!;
      assert.equal(
        await decryptPageToken(tokenKey, row.instagram_access_token, {
          doctorId: doctor.id,
          pageId: pages[0].id,
        }),
        issued[issued.length - 1],
        "the stored token decrypts to the Page token Meta issued",
      );

      const audit = await auditOf(sql, doctor.id);
      assert.equal(audit.length, 1);
      assert.equal(audit[0].action, "instagram.connected");
      assert.equal(audit[0].actor_id, doctor.id);
      assert.equal(audit[0].correlation_id, result.body.correlation_id);
      assert.ok(!JSON.stringify(audit[0].metadata).includes("EAAG"), "no token in the audit metadata");
    });

    await t.step(
      "the same callback twice: one link, one rejection before Meta, no second audit",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId } = meta.newUser(1);
        const { redirect, result } = await fullFlow(stack, doctor.token, userId);
        assert.equal(result.status, 200);
        meta.resetCounts();
        const again = await callback(redirect);
        assert.equal(again.status, 400);
        assert.equal(again.body.error.code, "state_used");
        assert.equal(metaCallCount(stack), 0, "the replay never reached Meta");
        assert.equal((await auditOf(sql, doctor.id)).length, 1);
      },
    );

    await t.step("state refusals happen before any Meta call", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      const { url } = await startConnect(stack, doctor.token);
      const redirect = new URL(await meta.approve(url, userId));
      const state = redirect.searchParams.get("state")!;
      const signer = await createOAuthStates(stack.env.INSTAGRAM_APP_SECRET);
      const pastSigner = await createOAuthStates(
        stack.env.INSTAGRAM_APP_SECRET,
        () => Date.now() - 3_600_000,
      );
      const cases: Record<string, [string, string]> = {
        state_invalid: [`${state.slice(0, -4)}AAAA`, "a tampered signature"],
        state_expired: [
          (await pastSigner.issue({ doctorId: doctor.id, ttlSeconds: 600 })).state,
          "an expired state",
        ],
        state_unknown: [
          (await signer.issue({ doctorId: doctor.id, ttlSeconds: 600 })).state,
          "a never-recorded state",
        ],
      };
      meta.resetCounts();
      for (const [code, [value, label]] of Object.entries(cases)) {
        const forged = new URL(redirect);
        forged.searchParams.set("state", value);
        const result = await callback(forged.toString());
        assert.equal(result.status, 400, label);
        assert.equal(result.body.error.code, code, label);
      }
      assert.equal(metaCallCount(stack), 0);
      assert.equal(await linkOf(sql, doctor.id), undefined);
      // The genuine callback still works afterwards: refusals consumed nothing.
      assert.equal((await callback(redirect.toString())).status, 200);
    });

    await t.step("the doctor cancels at Meta: 403 access_denied, nothing written", async () => {
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token);
      meta.resetCounts();
      const result = await callback(await meta.cancel(url));
      assert.equal(result.status, 403);
      assert.equal(result.body.error.code, "access_denied");
      assert.equal(metaCallCount(stack), 0);
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });

    await t.step("missing or malformed parameters: 400 invalid_request, never a 500", async () => {
      for (
        const query of [
          "",
          "?code=abc",
          "?state=abc",
          "?code=a%20b&state=x.y",
          `?code=abc&state=${"x".repeat(300)}`,
          "?code=abc&state=x.y&page_id=abc",
        ]
      ) {
        const result = await callback(`${callbackUrl}${query}`);
        assert.equal(result.status, 400, query);
        assert.equal(result.body.error.code, "invalid_request", query);
      }
    });

    await t.step("Meta refuses a used or expired code: 400 oauth_code_invalid, not retried", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("code_exchange", {
        status: 400,
        error: { code: 100, error_subcode: 36009, message: "This authorization code has been used." },
      });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 400);
      assert.equal(result.body.error.code, "oauth_code_invalid");
      assert.equal(meta.calls.code_exchange, 1, "a code exchange Meta answered is never retried");
      assert.ok(
        !JSON.stringify(result.body).includes("authorization code has been used"),
        "Meta's text stays out",
      );
    });

    await t.step("a 5xx on the code exchange is not retried (Meta answered): 502", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("code_exchange", { status: 500, error: { code: 2, is_transient: true } });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 502);
      assert.equal(result.body.error.code, "meta_error");
      assert.equal(meta.calls.code_exchange, 1);
    });

    await t.step("a code exchange that timed out (never answered) is retried and succeeds", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("code_exchange", { delayMs: 5_000 });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(meta.calls.code_exchange, 2);
    });

    await t.step("transient Meta errors are retried and the link succeeds", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("token_exchange", {
        status: 503,
        error: { code: 2, message: "Service temporarily unavailable" },
      });
      meta.inject("list_pages", {
        status: 400,
        error: { code: 4, message: "Application request limit reached" },
      }, {
        status: 500,
      });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.deepEqual({ ...meta.calls, dialog: 0 }, {
        dialog: 0,
        code_exchange: 1,
        token_exchange: 2,
        list_pages: 3,
      });
      assert.ok(await linkOf(sql, doctor.id));
    });

    await t.step("a token Meta rejects (190) is not retried: 502, nothing written", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("list_pages", { status: 400, error: { code: 190, message: "Invalid OAuth access token" } });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 502);
      assert.equal(meta.calls.list_pages, 1);
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });

    await t.step("Meta too slow on every attempt: 504 meta_timeout within the deadline", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      meta.inject("list_pages", { delayMs: 10_000 }, { delayMs: 10_000 }, { delayMs: 10_000 });
      meta.resetCounts();
      const started = performance.now();
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 504);
      assert.equal(result.body.error.code, "meta_timeout");
      assert.ok(performance.now() - started < 3_500, "bounded by the callback deadline");
      assert.equal(meta.calls.list_pages, 3, "1 try + INSTAGRAM_META_MAX_RETRIES (2)");
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });

    await t.step("paging.next is followed and page_id picks the Page", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(5);
      meta.accountsPageSize = 2;
      try {
        meta.resetCounts();
        const { result } = await fullFlow(stack, doctor.token, userId, `?page_id=${pages[4].id}`);
        assert.equal(result.status, 200, JSON.stringify(result.body));
        assert.equal(result.body.instagram_page_id, pages[4].id);
        assert.equal(meta.calls.list_pages, 3, "5 pages, 2 per answer");
      } finally {
        meta.accountsPageSize = 25;
      }
    });

    await t.step("no Page, a page_id not among them, a Page without Instagram: 422", async () => {
      const cases: [string, ReturnType<typeof meta.newUser>, string][] = [
        ["no_pages", meta.newUser(0), ""],
        ["page_not_found", meta.newUser(1), "?page_id=42"],
        ["instagram_account_missing", meta.newUser(1, false), ""],
      ];
      for (const [code, user, query] of cases) {
        const doctor = await newDoctor(stack, sql);
        const { result } = await fullFlow(stack, doctor.token, user.userId, query);
        assert.equal(result.status, 422, code);
        assert.equal(result.body.error.code, code);
        assert.equal(await linkOf(sql, doctor.id), undefined);
      }
    });

    await t.step("the first Page with an Instagram account is chosen without page_id", async () => {
      const doctor = await newDoctor(stack, sql);
      const plain = meta.newPage(false);
      const withInstagram = meta.newPage(true);
      const userId = meta.addUser(`mixed-${doctor.id}`, [plain, withInstagram]);
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.body.instagram_page_id, withInstagram.id);
    });

    await t.step("relink to another Page: one row, the new Page, audited as an update", async () => {
      const doctor = await newDoctor(stack, sql);
      const first = meta.newUser(1);
      const second = meta.newUser(1);
      assert.equal((await fullFlow(stack, doctor.token, first.userId)).result.status, 200);
      const { result } = await fullFlow(stack, doctor.token, second.userId);
      assert.equal(result.status, 200);
      const row = await linkOf(sql, doctor.id);
      assert.equal(row.instagram_page_id, second.pages[0].id);
      const audit = await auditOf(sql, doctor.id);
      assert.deepEqual(audit.map((entry) => entry.action), ["instagram.connected", "instagram.updated"]);
      assert.equal(audit[1].metadata.token_rotated, true);
      assert.deepEqual(audit[1].metadata.changed.instagram_page_id, {
        from: first.pages[0].id,
        to: second.pages[0].id,
      });
    });

    await t.step(
      "a Page linked to another doctor: 409 with a clear message, nothing half-written",
      async () => {
        const holder = await newDoctor(stack, sql);
        const other = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        const otherUser = meta.addUser(`shared-${other.id}`, pages);
        assert.equal((await fullFlow(stack, holder.token, userId)).result.status, 200);
        const { result } = await fullFlow(stack, other.token, otherUser);
        assert.equal(result.status, 409);
        assert.equal(result.body.error.code, "page_already_linked");
        assert.equal(
          result.body.error.message,
          `Facebook Page ${pages[0].id} is already linked to another doctor`,
        );
        assert.equal(await linkOf(sql, other.id), undefined);
        assert.equal((await auditOf(sql, other.id)).length, 0);
        const states = await sql`select consumed_at from private.oauth_states where doctor_id = ${other.id}`;
        assert.deepEqual(
          states.map((state) => state.consumed_at),
          [null],
          "the refused flow consumed nothing",
        );
        assert.equal((await linkOf(sql, holder.id)).instagram_page_id, pages[0].id);
      },
    );

    await t.step("two doctors racing for one Page: exactly one row and one 409", async () => {
      const page = meta.newPage(true);
      const doctors = await Promise.all([newDoctor(stack, sql), newDoctor(stack, sql)]);
      const redirects = await Promise.all(doctors.map(async (doctor) => {
        const { url } = await startConnect(stack, doctor.token);
        return await meta.approve(url, meta.addUser(`race-${doctor.id}`, [page]));
      }));
      const results = await Promise.all(redirects.map((redirect) => callback(redirect)));
      assert.deepEqual(results.map((result) => result.status).sort(), [200, 409]);
      const rows =
        await sql`select doctor_id from public.doctor_instagram where instagram_page_id = ${page.id}`;
      assert.equal(rows.length, 1);
      const winner = doctors[results.findIndex((result) => result.status === 200)];
      assert.equal(rows[0].doctor_id, winner.id);
    });
  });
});

Deno.test(
  "instagram-callback with INSTAGRAM_FRONTEND_REDIRECT_URI redirects with a stable code",
  stackTest,
  async () => {
    const frontend = "https://dashboard.example.test/settings/instagram?tab=social";
    await withStack({ env: { INSTAGRAM_FRONTEND_REDIRECT_URI: frontend } }, async (stack, sql) => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = stack.meta.newUser(1);
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 302);
      assert.equal(
        result.location,
        "https://dashboard.example.test/settings/instagram?tab=social&connected=1#",
      );

      const { url } = await startConnect(stack, doctor.token);
      const cancelled = await callback(await stack.meta.cancel(url));
      assert.equal(cancelled.location, `${frontend}&connected=0&error=access_denied#`);

      const bad = await callback(`${stack.functionUrl("instagram-callback")}?code=abc&state=forged.state`);
      assert.equal(bad.location, `${frontend}&connected=0&error=state_invalid#`);
    });
  },
);

Deno.test(
  "instagram-callback when the database is unreachable: 503, no Meta call, nothing written",
  stackTest,
  async () => {
    await withStack({}, async (stack, sql) => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = stack.meta.newUser(1);
      const { url } = await startConnect(stack, doctor.token);
      const redirect = await stack.meta.approve(url, userId);
      // The callback now points at a port where nothing listens: the database API is down.
      const dead = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const deadUrl = `http://127.0.0.1:${(dead.addr as Deno.NetAddr).port}`;
      dead.close();
      await stack.restart("instagram-callback", { SUPABASE_URL: deadUrl });
      stack.meta.resetCounts();
      const result = await callback(redirect);
      assert.equal(result.status, 503);
      assert.equal(result.body.error.code, "database_unavailable");
      assert.equal(metaCallCount(stack), 0);
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });
  },
);
