// instagram-callback over real HTTP against the real database (through the gateway) and the fake
// Meta: one attempt per state, claimed before Meta; a pending connection and never a link; every
// Meta failure; and how many calls each path makes.
import assert from "node:assert/strict";
import { createOAuthStates } from "../_shared/oauth/state.ts";
import { pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import { tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import type { FakeMeta, Fault } from "../../../scripts/lib/fake_meta.ts";
import {
  auditOf,
  callback,
  fullFlow,
  linkOf,
  metaCallCount,
  newDoctor,
  pendingOf,
  racesRequests,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

const FAST_FAILURES = { INSTAGRAM_META_TIMEOUT_MS: "400", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" };

Deno.test("instagram-callback", stackTest, async (t) => {
  await withStack({ env: FAST_FAILURES }, async (stack, sql) => {
    const meta = stack.meta;
    const callbackUrl = stack.functionUrl("instagram-callback");
    const keyring = await tokenKeyringOf(stack.env);
    const stateOf = async (doctorId: string) =>
      (await sql`select consumed_at from private.oauth_states where doctor_id = ${doctorId}`).map((row) =>
        row.consumed_at === null ? "open" : "claimed"
      );

    await t.step(
      "3 Meta calls, a pending connection with encrypted Page tokens, nothing linked",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        meta.resetCounts();
        const rpcBefore = stack.dbCalls.rpc ?? 0;
        const { result } = await fullFlow(stack, doctor.token, userId);

        assert.equal(result.status, 200, JSON.stringify(result.body));
        assert.match(result.body.pending, /^[\w-]{43}$/);
        const lifetime = Date.parse(result.body.expires_at) - Date.now();
        assert.ok(lifetime > 590_000 && lifetime <= 600_000, `pending lives 10 minutes (${lifetime} ms)`);
        assert.deepEqual(graphCalls(meta), { code_exchange: 1, token_exchange: 1, list_pages: 1 });
        assert.equal((stack.dbCalls.rpc ?? 0) - rpcBefore, 3, "create state, claim state, create pending");

        const [pending] = await pendingOf(sql, doctor.id);
        assert.equal(
          pending.token_hash,
          await pendingTokenHash(result.body.pending),
          "only the hash is stored",
        );
        assert.equal(pending.facebook_user_id, meta.appScopedId(userId), "the app-scoped Facebook user id");
        assert.deepEqual([...pending.granted_scopes].sort(), meta.permissionsOf(userId).granted);
        assert.equal(pending.used_at, null);
        assert.equal(pending.pages.length, 1);
        const [page] = pending.pages;
        assert.equal(page.page_id, pages[0].id);
        assert.equal(page.page_name, pages[0].name);
        assert.equal(page.instagram_username, pages[0].instagram!.username);
        assert.equal(page.instagram_account_id, pages[0].instagram!.id);
        // The local stack sets only the old single INSTAGRAM_TOKEN_ENCRYPTION_KEY: a ring whose one key is
        // `legacy`, writing the current format under it.
        assert.match(page.access_token, /^v2\.legacy\.[\w-]{16}\.[\w-]+$/);
        assert.equal(
          await keyring.decrypt(page.access_token, { doctorId: doctor.id, pageId: pages[0].id }),
          meta.pageTokens.get(pages[0].id)!.at(-1),
          "the stored token decrypts, bound to this doctor and Page, to the Page token Meta issued",
        );

        assert.equal(await linkOf(sql, doctor.id), undefined, "the callback links nothing");
        assert.equal((await auditOf(sql, doctor.id)).length, 0);
        assert.deepEqual(await stateOf(doctor.id), ["claimed"]);
      },
    );

    await t.step("the same callback again: state_used before any Meta call", async () => {
      const doctor = await newDoctor(stack, sql);
      const { redirect, result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 200);
      meta.resetCounts();
      const again = await callback(redirect);
      assert.equal(again.status, 400);
      assert.equal(again.body.error.code, "state_used");
      assert.equal(metaCallCount(stack), 0, "the replay never reached Meta");
      assert.equal((await pendingOf(sql, doctor.id)).length, 1);
    });

    await t.step(
      "10 parallel requests for one callback URL: 1 code exchange, 1 pending connection",
      async (t) => {
        racesRequests(t);
        const doctor = await newDoctor(stack, sql);
        const { url } = await startConnect(stack, doctor.token);
        const redirect = await meta.approve(url, meta.newUser(1).userId);
        meta.resetCounts();
        const results = await Promise.all(Array.from({ length: 10 }, () => callback(redirect)));
        assert.deepEqual(results.map((r) => r.status).sort(), [200, ...Array(9).fill(400)]);
        assert.equal(results.filter((r) => r.body.error?.code === "state_used").length, 9);
        assert.deepEqual(graphCalls(meta), { code_exchange: 1, token_exchange: 1, list_pages: 1 });
        assert.equal((await pendingOf(sql, doctor.id)).length, 1);
      },
    );

    await t.step("one state approved 10 times (10 codes) in parallel: 3 Meta calls in all", async (t) => {
      racesRequests(t);
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token);
      const { userId } = meta.newUser(1);
      const redirects = await Promise.all(Array.from({ length: 10 }, () => meta.approve(url, userId)));
      assert.equal(new Set(redirects).size, 10, "ten different codes");
      meta.resetCounts();
      const results = await Promise.all(redirects.map((redirect) => callback(redirect)));
      assert.equal(results.filter((r) => r.status === 200).length, 1);
      assert.equal(metaCallCount(stack), 3);
    });

    await t.step(
      "a failure after the claim leaves the state claimed, unusable, and nothing written",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { url } = await startConnect(stack, doctor.token);
        const { userId } = meta.newUser(1);
        meta.inject("code_exchange", { status: 500, error: { code: 2, is_transient: true } });
        const failed = await callback(await meta.approve(url, userId));
        assert.equal(failed.status, 502);
        assert.deepEqual(await stateOf(doctor.id), ["claimed"]);
        assert.equal((await pendingOf(sql, doctor.id)).length, 0);

        // Whoever holds the dialog URL cannot try again: a new code for the same state is refused first.
        meta.resetCounts();
        const retried = await callback(await meta.approve(url, userId));
        assert.equal(retried.body.error.code, "state_used");
        assert.equal(metaCallCount(stack), 0);
        assert.equal(await linkOf(sql, doctor.id), undefined);
      },
    );

    await t.step("state refusals happen before any Meta call and claim nothing", async () => {
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
      assert.deepEqual(await stateOf(doctor.id), ["open"]);
      assert.equal((await callback(redirect.toString())).status, 200, "the genuine callback still works");
    });

    await t.step(
      "the doctor cancels at Meta: 403 access_denied, no Meta call, the state is used up",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { url } = await startConnect(stack, doctor.token);
        meta.resetCounts();
        const result = await callback(await meta.cancel(url));
        assert.equal(result.status, 403);
        assert.equal(result.body.error.code, "access_denied");
        assert.equal(metaCallCount(stack), 0);
        assert.deepEqual(await stateOf(doctor.id), ["claimed"]);
        const later = await callback(await meta.approve(url, meta.newUser(1).userId));
        assert.equal(later.body.error.code, "state_used", "the cancelled attempt cannot be finished later");
        assert.equal(metaCallCount(stack), 0);
      },
    );

    await t.step("missing or malformed parameters: 400 invalid_request, never a 500", async () => {
      for (
        const query of [
          "",
          "?code=abc",
          "?state=abc",
          "?code=a%20b&state=x.y",
          `?code=abc&state=${"x".repeat(300)}`,
          `?code=${"a".repeat(3000)}&state=x.y`,
        ]
      ) {
        const result = await callback(`${callbackUrl}${query}`);
        assert.equal(result.status, 400, query);
        assert.equal(result.body.error.code, "invalid_request", query);
      }
    });

    await t.step("HEAD, POST, PUT, DELETE on the callback: 405, no claim, no Meta call", async () => {
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token);
      const redirect = await meta.approve(url, meta.newUser(1).userId);
      meta.resetCounts();
      for (const method of ["HEAD", "POST", "PUT", "DELETE", "PATCH"]) {
        const response = await fetch(redirect, { method, redirect: "manual" });
        await response.body?.cancel();
        assert.equal(response.status, 405, method);
        assert.equal(response.headers.get("allow"), "GET", method);
      }
      assert.equal(metaCallCount(stack), 0);
      assert.deepEqual(await stateOf(doctor.id), ["open"]);
      assert.equal((await callback(redirect)).status, 200, "the GET still works afterwards");
    });

    await t.step("the callback's page_id parameter is ignored; a page_id signed at connect is", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(3);
      const { url } = await startConnect(stack, doctor.token, `?page_id=${pages[1].id}`);
      const redirect = new URL(await meta.approve(url, userId));
      redirect.searchParams.set("page_id", pages[2].id);
      assert.equal((await callback(redirect.toString())).status, 200);
      const [pending] = await pendingOf(sql, doctor.id);
      assert.deepEqual(pending.pages.map((page: { page_id: string }) => page.page_id), [pages[1].id]);

      const other = await newDoctor(stack, sql);
      const flow = await startConnect(stack, other.token);
      const unsigned = new URL(await meta.approve(flow.url, userId));
      unsigned.searchParams.set("page_id", pages[0].id);
      assert.equal((await callback(unsigned.toString())).status, 200);
      const [all] = await pendingOf(sql, other.id);
      assert.equal(all.pages.length, 3, "every usable Page is offered");
    });

    await t.step("Meta refuses a used or expired code: 400 oauth_code_invalid, not retried", async () => {
      const doctor = await newDoctor(stack, sql);
      meta.inject("code_exchange", {
        status: 400,
        error: { code: 100, error_subcode: 36009, message: "This authorization code has been used." },
      });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
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
      meta.inject("code_exchange", { status: 500, error: { code: 2, is_transient: true } });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 502);
      assert.equal(result.body.error.code, "meta_error");
      assert.equal(meta.calls.code_exchange, 1);
    });

    await t.step("a code exchange that timed out (never answered) is retried and succeeds", async () => {
      const doctor = await newDoctor(stack, sql);
      meta.inject("code_exchange", { delayMs: 5_000 });
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.equal(meta.calls.code_exchange, 2);
    });

    await t.step("transient Meta errors are retried and the flow succeeds", async () => {
      const doctor = await newDoctor(stack, sql);
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
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.deepEqual(graphCalls(meta), { code_exchange: 1, token_exchange: 2, list_pages: 3 });
      assert.equal((await pendingOf(sql, doctor.id)).length, 1);
    });

    await t.step("Meta's error classes: what is retried, and what the doctor is told", async () => {
      const usage = {
        "x-business-use-case-usage": '{"1":[{"type":"pages","estimated_time_to_regain_access":5}]}',
      };
      const cases: [string, Fault, number, string, number, string?][] = [
        [
          "190 (subcode 460: password changed)",
          { status: 400, error: { code: 190, error_subcode: 460 } },
          400,
          "meta_token_invalid",
          1,
        ],
        ["10: permission denied", { status: 403, error: { code: 10 } }, 422, "permissions_missing", 1],
        ["200: permissions error", { status: 403, error: { code: 200 } }, 422, "permissions_missing", 1],
        ["4: app rate limit", { status: 400, error: { code: 4 } }, 503, "meta_rate_limited", 3, "60"],
        ["17: user rate limit", { status: 400, error: { code: 17 } }, 503, "meta_rate_limited", 3, "60"],
        ["32: Page rate limit", { status: 400, error: { code: 32 } }, 503, "meta_rate_limited", 3, "60"],
        ["613", { status: 400, error: { code: 613 } }, 503, "meta_rate_limited", 3, "60"],
        [
          "80004 with Meta's usage header",
          { status: 400, error: { code: 80004 }, headers: usage },
          503,
          "meta_rate_limited",
          3,
          "300",
        ],
        [
          "is_transient",
          { status: 400, error: { code: 3, is_transient: true } },
          503,
          "meta_rate_limited",
          3,
          "60",
        ],
        ["1: unknown error", { status: 400, error: { code: 1 } }, 502, "meta_error", 3],
        ["2: service unavailable", { status: 503, error: { code: 2 } }, 502, "meta_error", 3],
        ["341: application limit", { status: 400, error: { code: 341 } }, 502, "meta_error", 3],
        ["HTTP 500 without a Graph body", { status: 500 }, 502, "meta_error", 3],
        ["another 4xx (803)", { status: 400, error: { code: 803 } }, 502, "meta_error", 1],
      ];
      for (const [label, fault, status, code, calls, retryAfter] of cases) {
        const doctor = await newDoctor(stack, sql);
        meta.inject("list_pages", fault, fault, fault);
        meta.resetCounts();
        const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
        assert.equal(result.status, status, label);
        assert.equal(result.body.error.code, code, label);
        assert.equal(
          meta.calls.list_pages,
          calls,
          `${label}: ${calls === 1 ? "not retried" : "retried twice"}`,
        );
        assert.equal(result.headers.get("retry-after") ?? undefined, retryAfter, label);
        assert.equal((await pendingOf(sql, doctor.id)).length, 0, label);
        meta.clearFaults(); // a call that was not retried left the rest of the queue
      }
    });

    await t.step("Meta too slow on every attempt: 504 meta_timeout within the deadline", async () => {
      const doctor = await newDoctor(stack, sql);
      meta.inject("list_pages", { delayMs: 10_000 }, { delayMs: 10_000 }, { delayMs: 10_000 });
      meta.resetCounts();
      const started = performance.now();
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 504);
      assert.equal(result.body.error.code, "meta_timeout");
      assert.ok(performance.now() - started < 3_500, "bounded by the callback deadline");
      assert.equal(meta.calls.list_pages, 3, "1 try + INSTAGRAM_META_MAX_RETRIES (2)");
      assert.equal((await pendingOf(sql, doctor.id)).length, 0);
      assert.deepEqual(await stateOf(doctor.id), ["claimed"], "a timed-out attempt still used the state up");
    });

    await t.step(
      "paging.next is followed with the proof re-attached (Require App Secret is on)",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(5);
        meta.accountsPageSize = 2;
        try {
          meta.resetCounts();
          const linksBefore = meta.pagingLinks.length;
          const { result } = await fullFlow(stack, doctor.token, userId);
          assert.equal(result.status, 200, JSON.stringify(result.body));
          assert.equal(meta.calls.list_pages, 3, "5 pages, 2 per answer");
          const links = meta.pagingLinks.slice(linksBefore);
          assert.equal(links.length, 2);
          assert.ok(
            links.every((link) => !new URL(link).searchParams.has("appsecret_proof")),
            "Meta's next links carry no proof, so the client must add it",
          );
          const refused = await fetch(links[0]);
          assert.equal(refused.status, 400, "and a next link used as it is fails with the proof required");
          assert.match((await refused.json()).error.message, /appsecret_proof/);
          const [pending] = await pendingOf(sql, doctor.id);
          assert.deepEqual(
            pending.pages.map((page: { page_id: string }) => page.page_id),
            pages.map((p) => p.id),
          );
        } finally {
          meta.accountsPageSize = 25;
        }
      },
    );

    await t.step(
      "no Page, a signed page_id not shared, no Page with Instagram: 422, nothing stored",
      async () => {
        const cases: [string, ReturnType<typeof meta.newUser>, string][] = [
          ["no_pages", meta.newUser(0), ""],
          ["page_not_found", meta.newUser(1), "?page_id=42"],
          ["instagram_account_missing", meta.newUser(2, false), ""],
        ];
        for (const [code, user, query] of cases) {
          const doctor = await newDoctor(stack, sql);
          const { result } = await fullFlow(stack, doctor.token, user.userId, query);
          assert.equal(result.status, 422, code);
          assert.equal(result.body.error.code, code);
          assert.equal((await pendingOf(sql, doctor.id)).length, 0);
        }
      },
    );

    await t.step(
      "a paging link to another origin is not followed (it would carry the token), and said",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(3);
        meta.accountsPageSize = 2;
        meta.pagingOrigin = "http://127.0.0.2:9";
        try {
          meta.resetCounts();
          const { result } = await fullFlow(stack, doctor.token, userId);
          assert.equal(result.status, 200);
          assert.equal(meta.calls.list_pages, 1, "only the first answer");
          const [pending] = await pendingOf(sql, doctor.id);
          assert.deepEqual(
            pending.pages.map((page: { page_id: string }) => page.page_id),
            pages.slice(0, 2).map((p) => p.id),
          );
          assert.match(
            stack.functions["instagram-callback"].output(),
            /"event":"paging_link_ignored","[^}]*"reason":"origin"/,
          );
        } finally {
          meta.accountsPageSize = 25;
          meta.pagingOrigin = undefined;
        }
      },
    );

    await t.step("only Pages with an Instagram account are offered", async () => {
      const doctor = await newDoctor(stack, sql);
      const plain = meta.newPage(false);
      const withInstagram = meta.newPage(true);
      const userId = meta.addUser(`mixed-${doctor.id}`, [plain, withInstagram]);
      assert.equal((await fullFlow(stack, doctor.token, userId)).result.status, 200);
      const [pending] = await pendingOf(sql, doctor.id);
      assert.deepEqual(pending.pages.map((page: { page_id: string }) => page.page_id), [withInstagram.id]);
    });

    await t.step(
      "a 300-character Page name and a 100-character username are stored cut, not a 500",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const page = { ...meta.newPage(true), name: "Ä".repeat(300) };
        page.instagram = { ...page.instagram!, username: "u".repeat(100) };
        const userId = meta.addUser(`long-${doctor.id}`, [page]);
        assert.equal((await fullFlow(stack, doctor.token, userId)).result.status, 200);
        const [pending] = await pendingOf(sql, doctor.id);
        assert.equal(pending.pages[0].page_name, "Ä".repeat(255));
        assert.equal(pending.pages[0].instagram_username, "u".repeat(64));
      },
    );

    await t.step("at most 10 pending connections per doctor: the 11th is refused before Meta", async () => {
      const doctor = await newDoctor(stack, sql);
      for (let i = 0; i < 10; i++) {
        assert.equal((await fullFlow(stack, doctor.token, meta.newUser(1).userId)).result.status, 200);
      }
      // Their ten states have lived out their lifetime, as with a short INSTAGRAM_STATE_TTL_SECONDS:
      // else the 11th start would be refused first, by the limit of 10 states per state lifetime.
      await sql`update private.oauth_states
                set created_at = now() - interval '11 minutes', expires_at = now() - interval '1 minute'
                where doctor_id = ${doctor.id}`;
      meta.resetCounts();
      const { result } = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      assert.equal(result.status, 429);
      assert.equal(result.body.error.code, "too_many_requests");
      const retryAfter = Number(result.headers.get("retry-after"));
      assert.ok(retryAfter > 0 && retryAfter <= 600, `Retry-After ${retryAfter}`);
      assert.equal(metaCallCount(stack), 0, "refused at the claim, before any Meta call");
      assert.equal((await pendingOf(sql, doctor.id)).length, 10);
      assert.equal(
        (await stateOf(doctor.id)).filter((state) => state === "open").length,
        1,
        "its state stays usable",
      );
    });

    await t.step("10 callbacks of one doctor at once with 5 places left: exactly 5 more", async (t) => {
      racesRequests(t);
      const doctor = await newDoctor(stack, sql);
      await sql`insert into private.pending_connections (token_hash, doctor_id, pages, expires_at, facebook_user_id)
                select encode(sha256(convert_to(${doctor.id} || n, 'utf8')), 'hex'), ${doctor.id}, '[]',
                       now() + interval '10 minutes', '1' from generate_series(1, 5) as n`;
      const redirects = await Promise.all(Array.from({ length: 10 }, async () => {
        const { url } = await startConnect(stack, doctor.token);
        return await meta.approve(url, meta.newUser(1).userId);
      }));
      const results = await Promise.all(redirects.map((redirect) => callback(redirect)));
      assert.equal(results.filter((r) => r.status === 200).length, 5, results.map((r) => r.status).join());
      assert.equal(results.filter((r) => r.status === 429).length, 5);
      assert.equal((await pendingOf(sql, doctor.id)).length, 10);
    });

    await t.step("a declined permission: 422 naming it, nothing stored; rerequest asks again", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId } = meta.newUser(1);
      const first = await startConnect(stack, doctor.token);
      const declined = await callback(await meta.approve(first.url, userId, ["instagram_manage_messages"]));
      assert.equal(declined.status, 422);
      assert.equal(declined.body.error.code, "permissions_missing");
      assert.match(declined.body.error.message, /instagram_manage_messages/);
      assert.equal((await pendingOf(sql, doctor.id)).length, 0);
      const logged = stack.functions["instagram-callback"].output();
      assert.match(
        logged,
        /"error_code":"permissions_missing","cause":\{"missing":\["instagram_manage_messages"\]\}/,
      );

      // Meta does not ask again for a declined permission: the same flow without rerequest fails again.
      const again = await startConnect(stack, doctor.token);
      assert.equal(
        (await callback(await meta.approve(again.url, userId))).body.error.code,
        "permissions_missing",
      );

      const rerequest = await startConnect(stack, doctor.token, "?rerequest=1");
      assert.equal(new URL(rerequest.url).searchParams.get("auth_type"), "rerequest");
      const granted = await callback(await meta.approve(rerequest.url, userId));
      assert.equal(granted.status, 200, JSON.stringify(granted.body));
      assert.ok(meta.permissionsOf(userId).granted.includes("instagram_manage_messages"));
    });

    await t.step(
      "only Pages where the doctor may MODERATE are offered; none: 422 page_role_insufficient",
      async () => {
        const analyst = { ...meta.newPage(true), tasks: ["ANALYZE", "ADVERTISE"] };
        const moderator = { ...meta.newPage(true), tasks: ["MODERATE", "MESSAGING", "ANALYZE", "ADVERTISE"] };
        const doctor = await newDoctor(stack, sql);
        assert.equal(
          (await fullFlow(stack, doctor.token, meta.addUser(`mixed-${doctor.id}`, [analyst, moderator])))
            .result.status,
          200,
        );
        const [pending] = await pendingOf(sql, doctor.id);
        assert.deepEqual(pending.pages.map((page: { page_id: string }) => page.page_id), [moderator.id]);

        const other = await newDoctor(stack, sql);
        const { result } = await fullFlow(stack, other.token, meta.addUser(`analyst-${other.id}`, [analyst]));
        assert.equal(result.status, 422);
        assert.equal(result.body.error.code, "page_role_insufficient");
        assert.equal((await pendingOf(sql, other.id)).length, 0);
      },
    );

    await t.step("any other error Meta reports: 502, and the state is used up too", async () => {
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token);
      const state = new URL(url).searchParams.get("state")!;
      meta.resetCounts();
      const failed = await callback(
        `${callbackUrl}?error=server_error&error_description=boom&state=${encodeURIComponent(state)}`,
      );
      assert.equal(failed.status, 502);
      assert.equal(failed.body.error.code, "meta_error");
      assert.deepEqual(await stateOf(doctor.id), ["claimed"]);
      assert.equal(
        (await callback(await meta.approve(url, meta.newUser(1).userId))).body.error.code,
        "state_used",
      );
      assert.equal(metaCallCount(stack), 0);
    });

    await t.step("names with NUL, broken surrogates or bidi overrides are cleaned, never a 500", async () => {
      const doctor = await newDoctor(stack, sql);
      const page = { ...meta.newPage(true), name: "Evil\u0000 Clinic\u202E\u2066 \uD800(1)\n" };
      page.instagram = { ...page.instagram!, username: "evil\uDC00_clinic\u200F" };
      assert.equal(
        (await fullFlow(stack, doctor.token, meta.addUser(`evil-${doctor.id}`, [page]))).result.status,
        200,
      );
      const [pending] = await pendingOf(sql, doctor.id);
      assert.equal(pending.pages[0].page_name, "Evil Clinic \uFFFD(1)");
      assert.equal(pending.pages[0].instagram_username, "evil\uFFFD_clinic");
    });

    await t.step("101 usable Pages: the first 100 are offered, never a 500", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(101);
      const { result } = await fullFlow(stack, doctor.token, userId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      const [pending] = await pendingOf(sql, doctor.id);
      assert.deepEqual(
        pending.pages.map((page: { page_id: string }) => page.page_id),
        pages.slice(0, 100).map((p) => p.id),
      );
    });

    await t.step("every answer is no-store and nosniff, success or failure", async () => {
      const doctor = await newDoctor(stack, sql);
      const ok = await fullFlow(stack, doctor.token, meta.newUser(1).userId);
      const bad = await callback(`${callbackUrl}?code=abc`);
      const missing = await callback(`${callbackUrl}/nope`);
      for (const { headers, status } of [ok.result, bad, missing]) {
        assert.equal(headers.get("cache-control"), "no-store", String(status));
        assert.equal(headers.get("x-content-type-options"), "nosniff", String(status));
        assert.equal(headers.get("referrer-policy"), "no-referrer", String(status));
      }
      assert.equal(missing.status, 404);
    });
  });
});

Deno.test(
  "instagram-callback with INSTAGRAM_FRONTEND_REDIRECT_URI: the pending token in the fragment",
  stackTest,
  async () => {
    const frontend = "https://dashboard.example.test/settings/instagram?tab=social";
    await withStack({ env: { INSTAGRAM_FRONTEND_REDIRECT_URI: frontend } }, async (stack, sql) => {
      const doctor = await newDoctor(stack, sql);
      const { result } = await fullFlow(stack, doctor.token, stack.meta.newUser(1).userId);
      assert.equal(result.status, 302);
      const location = new URL(result.location!);
      assert.equal(`${location.origin}${location.pathname}${location.search}`, frontend);
      const token = new URLSearchParams(location.hash.slice(1)).get("instagram_pending")!;
      assert.match(token, /^[\w-]{43}$/, "the token travels in the fragment, never in the query");
      assert.equal(result.headers.get("referrer-policy"), "no-referrer");
      const [pending] = await pendingOf(sql, doctor.id);
      assert.equal(pending.token_hash, await pendingTokenHash(token));

      const { url } = await startConnect(stack, doctor.token);
      const cancelled = await callback(await stack.meta.cancel(url));
      assert.equal(
        cancelled.location,
        "https://dashboard.example.test/settings/instagram?tab=social&connected=0&error=access_denied#",
      );
      const bad = await callback(`${stack.functionUrl("instagram-callback")}?code=abc&state=forged.state`);
      assert.match(bad.location!, /&connected=0&error=state_invalid#$/);

      const head = await fetch(`${stack.functionUrl("instagram-callback")}?code=abc&state=x`, {
        method: "HEAD",
        redirect: "manual",
      });
      assert.equal(head.status, 405, "not a redirect: HEAD is not Meta's redirect");
    });
  },
);

Deno.test(
  "instagram-callback when the database is unreachable: 503, no Meta call, nothing written",
  stackTest,
  async () => {
    await withStack({}, async (stack, sql) => {
      const doctor = await newDoctor(stack, sql);
      const { url } = await startConnect(stack, doctor.token);
      const redirect = await stack.meta.approve(url, stack.meta.newUser(1).userId);
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
      assert.equal((await pendingOf(sql, doctor.id)).length, 0);
    });
  },
);

/** The Graph API calls of the callback (the dialog and the webhook steps are not its business). */
function graphCalls(meta: FakeMeta) {
  const { code_exchange, token_exchange, list_pages } = meta.calls;
  return { code_exchange, token_exchange, list_pages };
}
