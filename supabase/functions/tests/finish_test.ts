// POST /instagram-connect/finish over real HTTP: only the doctor who started a flow turns its pending
// connection into a link, from their own session; the Page picker; every refusal; races; 409.
import { hmacSha256Hex } from "../_shared/crypto/digest.ts";
import assert from "node:assert/strict";
import { pageFieldRefusal } from "../../../scripts/lib/fake_meta.ts";
import { tokenKeyringOf } from "../../../scripts/lib/local_stack.ts";
import { pendingTokenHash } from "../_shared/oauth/pending_token.ts";
import {
  auditOf,
  finish,
  fullFlow,
  link,
  linkOf,
  newDoctor,
  pendingOf,
  racesRequests,
  stackTest,
  withStack,
} from "./_support.ts";

/** A stored (encrypted) token in either format: v1.<iv>.<ciphertext>, v2.<key id>.<iv>.<ciphertext>. */
const STORED_TOKEN = /v[12]\.[\w-]+\.[\w-]+/;

Deno.test("instagram-connect/finish", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const meta = stack.meta;
    const finishUrl = `${stack.functionUrl("instagram-connect")}/finish`;
    const keyring = await tokenKeyringOf(stack.env);
    const pendingFor = async (doctor: { token: string }, metaUserId: string) => {
      const { result } = await fullFlow(stack, doctor.token, metaUserId);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      return result.body.pending as string;
    };

    await t.step(
      "one usable Page: linked, the token copied encrypted, audited under our correlation id",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        const pending = await pendingFor(doctor, userId);
        const rpcBefore = stack.dbCalls.rpc ?? 0;
        const response = await fetch(finishUrl, {
          method: "POST",
          headers: {
            authorization: `Bearer ${doctor.token}`,
            "content-type": "application/json",
            "x-correlation-id": "client-chosen-id",
          },
          body: JSON.stringify({ pending }),
        });
        const body = await response.json();
        assert.equal(response.status, 200, JSON.stringify(body));
        assert.equal(
          (stack.dbCalls.rpc ?? 0) - rpcBefore,
          4,
          "open, link, then the subscription's version and holder before and after converging",
        );
        assert.equal(body.connected, true);
        assert.deepEqual(Object.keys(body.link).sort(), [
          "connected_at",
          "instagram_business_account_id",
          "instagram_page_id",
          "instagram_username",
          "page_name",
          "via",
        ]);
        assert.equal(body.link.via, "facebook");
        assert.equal(body.link.instagram_business_account_id, pages[0].instagram!.id);
        assert.equal(body.link.instagram_page_id, pages[0].id);
        assert.equal(body.link.instagram_username, pages[0].instagram!.username);

        const row = await linkOf(sql, doctor.id);
        assert.equal(row.instagram_page_id, pages[0].id);
        assert.equal(row.instagram_business_account_id, pages[0].instagram!.id);
        assert.equal(row.facebook_user_id, meta.appScopedId(userId));
        assert.deepEqual([...row.granted_scopes].sort(), meta.permissionsOf(userId).granted);
        assert.deepEqual(
          meta.subscriptions.get(pages[0].id),
          ["messages", "messaging_postbacks", "message_reactions", "message_reads"],
          "the Page is subscribed to the default webhook fields (with its Page token: the fake checks)",
        );
        assert.equal(
          await keyring.decrypt(row.instagram_access_token, {
            doctorId: doctor.id,
            pageId: pages[0].id,
          }),
          meta.pageTokens.get(pages[0].id)!.at(-1),
        );

        const audit = await auditOf(sql, doctor.id);
        assert.deepEqual(audit.map((entry) => entry.action), ["instagram.connected"]);
        assert.equal(audit[0].actor_id, doctor.id);
        const ours = response.headers.get("x-correlation-id");
        assert.equal(audit[0].correlation_id, ours, "the function's correlation id");
        assert.notEqual(ours, "client-chosen-id", "never the caller's");
        assert.doesNotMatch(
          JSON.stringify(audit[0].metadata),
          STORED_TOKEN,
          "no token in the audit metadata",
        );

        const [used] = await pendingOf(sql, doctor.id);
        assert.notEqual(used.used_at, null);
        assert.deepEqual(used.pages, [], "no Page token outlives the pending connection's use");

        const again = await finish(stack, doctor.token, { pending });
        assert.equal(again.status, 400);
        assert.equal(again.body.error.code, "pending_used");
      },
    );

    await t.step("several usable Pages: a choice without tokens, then the chosen one is linked", async () => {
      const doctor = await newDoctor(stack, sql);
      const pages = [meta.newPage(true), meta.newPage(false), meta.newPage(true)];
      const pending = await pendingFor(doctor, meta.addUser(`picker-${doctor.id}`, pages));

      const choice = await finish(stack, doctor.token, { pending });
      assert.equal(choice.status, 200);
      assert.equal(choice.body.connected, false);
      assert.deepEqual(
        choice.body.choose,
        [pages[0], pages[2]].map((page) => ({
          page_id: page.id,
          page_name: page.name,
          instagram_username: page.instagram!.username,
        })),
      );
      assert.ok(Date.parse(choice.body.expires_at) > Date.now());
      assert.doesNotMatch(JSON.stringify(choice.body), STORED_TOKEN, "never a token, even encrypted");
      assert.equal(await linkOf(sql, doctor.id), undefined, "choosing links nothing");

      const notOffered = await finish(stack, doctor.token, { pending, page_id: pages[1].id });
      assert.equal(notOffered.status, 422);
      assert.equal(notOffered.body.error.code, "page_not_found");

      const chosen = await finish(stack, doctor.token, { pending, page_id: pages[2].id });
      assert.equal(chosen.status, 200, JSON.stringify(chosen.body));
      assert.equal(chosen.body.link.instagram_page_id, pages[2].id);
      assert.equal((await linkOf(sql, doctor.id)).instagram_page_id, pages[2].id);
    });

    await t.step(
      "another signed-in doctor: 403, the pending connection destroyed, the refusal audited",
      async () => {
        const starter = await newDoctor(stack, sql);
        const intruder = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        const pending = await pendingFor(starter, userId);

        const refused = await finish(stack, intruder.token, { pending });
        assert.equal(refused.status, 403);
        assert.equal(refused.body.error.code, "session_mismatch");
        assert.equal(await linkOf(sql, starter.id), undefined);
        assert.equal(await linkOf(sql, intruder.id), undefined);
        assert.equal((await pendingOf(sql, starter.id)).length, 0, "destroyed, Page tokens and all");

        const [entry] = await auditOf(sql, starter.id);
        assert.equal(entry.action, "instagram.link_refused");
        assert.equal(entry.actor_id, intruder.id);
        assert.equal(entry.correlation_id, refused.headers.get("x-correlation-id"));
        assert.deepEqual(entry.metadata, {
          reason: "session_mismatch",
          pending_doctor_id: starter.id,
          offered_page_ids: [pages[0].id],
        });

        const late = await finish(stack, starter.token, { pending });
        assert.equal(late.body.error.code, "pending_unknown", "the starter must start again");
      },
    );

    await t.step("unknown, expired or malformed pending tokens", async () => {
      const doctor = await newDoctor(stack, sql);
      const unknown = await finish(stack, doctor.token, { pending: "A".repeat(43) });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.body.error.code, "pending_unknown");

      const pending = await pendingFor(doctor, meta.newUser(1).userId);
      await sql`update private.pending_connections set created_at = now() - interval '11 minutes',
                expires_at = now() - interval '1 minute' where token_hash = ${await pendingTokenHash(
        pending,
      )}`;
      const expired = await finish(stack, doctor.token, { pending });
      assert.equal(expired.status, 400);
      assert.equal(expired.body.error.code, "pending_expired");

      for (const body of [{}, { pending: "short" }, { pending: 42 }, { pending, page_id: "12ab" }]) {
        const bad = await finish(stack, doctor.token, body);
        assert.equal(bad.status, 400, JSON.stringify(body));
        assert.equal(bad.body.error.code, "invalid_request");
      }
      assert.equal(await linkOf(sql, doctor.id), undefined);
    });

    await t.step(
      "10 finishes racing for one pending connection: one link, the rest pending_used",
      async (t) => {
        racesRequests(t);
        const doctor = await newDoctor(stack, sql);
        const pending = await pendingFor(doctor, meta.newUser(1).userId);
        const results = await Promise.all(
          Array.from({ length: 10 }, () => finish(stack, doctor.token, { pending })),
        );
        assert.deepEqual(results.map((result) => result.status).sort(), [200, ...Array(9).fill(400)]);
        assert.ok(results.filter((r) => r.status === 400).every((r) => r.body.error.code === "pending_used"));
        assert.equal((await auditOf(sql, doctor.id)).length, 1, "one link, one audit entry");
      },
    );

    await t.step(
      "the webhook subscription fails: 502, nothing linked, the pending connection kept",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        const pending = await pendingFor(doctor, userId);
        meta.inject("subscribe", { status: 500 }, { status: 500 }, { status: 500 });
        meta.resetCounts();
        const failed = await finish(stack, doctor.token, { pending });
        assert.equal(failed.status, 502);
        assert.equal(failed.body.error.code, "webhook_subscription_failed");
        assert.equal(meta.calls.subscribe, 3, "transient failures are retried");
        assert.equal(await linkOf(sql, doctor.id), undefined);
        assert.equal((await pendingOf(sql, doctor.id))[0].used_at, null);

        meta.inject("subscribe", { status: 503, error: { code: 2 } });
        const retried = await finish(stack, doctor.token, { pending });
        assert.equal(retried.status, 200, "a later finish works, and one transient failure is retried");
        assert.equal((await linkOf(sql, doctor.id)).instagram_page_id, pages[0].id);
      },
    );

    await t.step(
      "a subscription Meta refuses for the role or a dead token is said so, nothing linked",
      async () => {
        for (
          const [fault, code] of [
            [{ status: 403, error: { code: 200 } }, "permissions_missing"],
            [{ status: 400, error: { code: 190, error_subcode: 463 } }, "meta_token_invalid"],
            [{ status: 400, error: { code: 100 } }, "webhook_subscription_failed"],
          ] as const
        ) {
          const doctor = await newDoctor(stack, sql);
          const pending = await pendingFor(doctor, meta.newUser(1).userId);
          meta.inject("subscribe", fault);
          meta.resetCounts();
          const failed = await finish(stack, doctor.token, { pending });
          assert.equal(failed.body.error.code, code);
          assert.equal(meta.calls.subscribe, 1, `${code}: not retried`);
          assert.equal(await linkOf(sql, doctor.id), undefined);
        }
      },
    );

    await t.step(
      "relinking the same Page subscribes again; moving to another unsubscribes the old",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const first = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, first.userId)).finished.status, 200);
        meta.resetCounts();
        assert.equal((await link(stack, doctor.token, first.userId)).finished.status, 200);
        assert.equal(meta.calls.subscribe, 2, "subscribed again before the link, and by converging after it");
        assert.equal(meta.calls.unsubscribe, 0, "the same Page is not unsubscribed");

        const second = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, second.userId)).finished.status, 200);
        assert.ok(meta.subscriptions.has(second.pages[0].id));
        assert.equal(
          meta.subscriptions.has(first.pages[0].id),
          false,
          "the Page the doctor left stops its webhooks",
        );
      },
    );

    await t.step(
      "a Page another doctor holds: offered as taken (never who), and chosen anyway 409 naming it; nothing written",
      async () => {
        const holder = await newDoctor(stack, sql);
        const other = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        assert.equal((await link(stack, holder.token, userId)).finished.status, 200);

        const pending = await pendingFor(other, meta.addUser(`shared-${other.id}`, pages));
        const offered = await finish(stack, other.token, { pending });
        assert.equal(offered.status, 200, "its only Page is taken: a choice, not an automatic 409");
        assert.deepEqual(offered.body.choose, [{
          page_id: pages[0].id,
          page_name: pages[0].name,
          instagram_username: pages[0].instagram!.username,
          taken: true,
        }]);
        assert.doesNotMatch(JSON.stringify(offered.body), new RegExp(holder.id), "never who holds it");
        const conflict = await finish(stack, other.token, { pending, page_id: pages[0].id });
        assert.equal(conflict.status, 409);
        assert.equal(conflict.body.error.code, "page_already_linked");
        assert.equal(
          conflict.body.error.message,
          `The Facebook Page "${pages[0].name}" (${
            pages[0].id
          }) is already linked to another doctor. They must disconnect it first, or choose another Page.`,
        );
        assert.equal(await linkOf(sql, other.id), undefined);
        assert.equal((await auditOf(sql, other.id)).length, 0);
        assert.equal((await pendingOf(sql, other.id))[0].used_at, null, "the refused link consumed nothing");
        assert.equal((await linkOf(sql, holder.id)).instagram_page_id, pages[0].id);
      },
    );

    await t.step("two doctors racing for one Page: exactly one row and one 409", async (t) => {
      racesRequests(t);
      const page = meta.newPage(true);
      const doctors = await Promise.all([newDoctor(stack, sql), newDoctor(stack, sql)]);
      const pendings = await Promise.all(
        doctors.map((doctor) => pendingFor(doctor, meta.addUser(`race-${doctor.id}`, [page]))),
      );
      const results = await Promise.all(
        doctors.map((doctor, i) => finish(stack, doctor.token, { pending: pendings[i] })),
      );
      assert.deepEqual(results.map((result) => result.status).sort(), [200, 409]);
      const rows =
        await sql`select doctor_id from public.doctor_instagram where instagram_page_id = ${page.id}`;
      assert.equal(rows.length, 1);
      assert.equal(rows[0].doctor_id, doctors[results.findIndex((result) => result.status === 200)].id);
    });

    await t.step("relink to another Page: one row, the new Page, audited as an update", async () => {
      const doctor = await newDoctor(stack, sql);
      const first = meta.newUser(1);
      const second = meta.newUser(1);
      assert.equal((await link(stack, doctor.token, first.userId)).finished.status, 200);
      assert.equal((await link(stack, doctor.token, second.userId)).finished.status, 200);
      assert.equal((await linkOf(sql, doctor.id)).instagram_page_id, second.pages[0].id);
      const audit = await auditOf(sql, doctor.id);
      assert.deepEqual(audit.map((entry) => entry.action), ["instagram.connected", "instagram.updated"]);
      assert.equal(audit[1].metadata.token_rotated, true);
      assert.deepEqual(audit[1].metadata.changed.instagram_page_id, {
        from: first.pages[0].id,
        to: second.pages[0].id,
      });
    });

    await t.step("names longer than the columns allow are linked cut to length, never a 500", async () => {
      const doctor = await newDoctor(stack, sql);
      const page = { ...meta.newPage(true), name: "N".repeat(300) };
      page.instagram = { ...page.instagram!, username: "u".repeat(100) };
      const { finished } = await link(stack, doctor.token, meta.addUser(`long-${doctor.id}`, [page]));
      assert.equal(finished.status, 200, JSON.stringify(finished.body));
      const row = await linkOf(sql, doctor.id);
      assert.equal(row.page_name, "N".repeat(255));
      assert.equal(row.instagram_username, "u".repeat(64));
    });

    await t.step("bodies: over 16 KiB 413, not JSON 415, malformed 400; nothing is recorded", async () => {
      const doctor = await newDoctor(stack, sql);
      const pending = await pendingFor(doctor, meta.newUser(1).userId);
      const post = (body: BodyInit, contentType?: string) =>
        fetch(finishUrl, {
          method: "POST",
          headers: {
            authorization: `Bearer ${doctor.token}`,
            ...(contentType ? { "content-type": contentType } : {}),
          },
          body,
        });
      const cases: [string, Promise<Response>, number, string][] = [
        [
          "17 KiB",
          post(JSON.stringify({ pending, pad: "x".repeat(17 * 1024) }), "application/json"),
          413,
          "payload_too_large",
        ],
        [
          "17 KiB streamed without Content-Length",
          post(
            new Blob([JSON.stringify({ pending, pad: "x".repeat(17 * 1024) })]).stream(),
            "application/json",
          ),
          413,
          "payload_too_large",
        ],
        ["text/plain", post(JSON.stringify({ pending }), "text/plain"), 415, "unsupported_media_type"],
        [
          "form",
          post(new URLSearchParams({ pending }), "application/x-www-form-urlencoded"),
          415,
          "unsupported_media_type",
        ],
        ["malformed JSON", post(`{"pending": "${pending}"`, "application/json"), 400, "invalid_request"],
        ["a JSON array", post(JSON.stringify([pending]), "application/json"), 400, "invalid_request"],
      ];
      for (const [label, request, status, code] of cases) {
        const response = await request;
        assert.equal(response.status, status, label);
        assert.equal((await response.json()).error.code, code, label);
      }
      assert.equal(await linkOf(sql, doctor.id), undefined);
      assert.equal((await pendingOf(sql, doctor.id))[0].used_at, null, "the pending connection is untouched");
    });

    await t.step("tokens that are not a doctor's session: 401 and nothing touched", async () => {
      const doctor = await newDoctor(stack, sql);
      const pending = await pendingFor(doctor, meta.newUser(1).userId);
      const tokens: Record<string, string> = {
        "no token": "",
        "role anon": await stack.jwt.sign({ sub: doctor.id, role: "anon" }),
        "role service_role": await stack.jwt.sign({ sub: doctor.id, role: "service_role" }),
        "another audience": await stack.jwt.sign({ sub: doctor.id, aud: "somebody-else" }),
        "a sub that is not a UUID": await stack.jwt.sign({ sub: "doctor-1" }),
        "an anonymous sign-in": await stack.jwt.sign({ sub: doctor.id, is_anonymous: true }),
      };
      for (const [label, token] of Object.entries(tokens)) {
        const refused = await finish(stack, token, { pending });
        assert.equal(refused.status, 401, label);
        assert.equal(refused.body.error.code, "unauthorized", label);
      }
      assert.equal((await pendingOf(sql, doctor.id))[0].used_at, null);
      assert.equal((await finish(stack, doctor.token, { pending })).status, 200, "the doctor still can");
    });
  });
});

Deno.test("INSTAGRAM_WEBHOOK_FIELDS empty: finish links without subscribing", stackTest, async () => {
  await withStack({ env: { INSTAGRAM_WEBHOOK_FIELDS: "" } }, async (stack, sql) => {
    const doctor = await newDoctor(stack, sql);
    const { userId, pages } = stack.meta.newUser(1);
    stack.meta.resetCounts();
    const { finished } = await link(stack, doctor.token, userId);
    assert.equal(finished.status, 200);
    assert.equal(stack.meta.calls.subscribe, 0);
    assert.equal((await linkOf(sql, doctor.id)).instagram_page_id, pages[0].id);
  });
});

Deno.test(
  "the default INSTAGRAM_WEBHOOK_FIELDS: a link succeeds against a Meta that refuses non-Page fields",
  stackTest,
  async () => {
    await withStack({}, async (stack, sql) => {
      assert.equal(stack.env.INSTAGRAM_WEBHOOK_FIELDS, undefined, "nothing configured: the default");
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = stack.meta.newUser(1);
      stack.meta.resetCounts();
      const { finished } = await link(stack, doctor.token, userId);
      assert.equal(finished.status, 200, JSON.stringify(finished.body));
      assert.equal(finished.body.connected, true);
      assert.equal(stack.meta.calls.subscribe, 2, "before the link, and by converging after it");
      assert.deepEqual(stack.meta.subscriptions.get(pages[0].id), [
        "messages",
        "messaging_postbacks",
        "message_reactions",
        "message_reads",
      ]);
      assert.equal((await linkOf(sql, doctor.id)).instagram_page_id, pages[0].id);

      // The same fake refuses what the old default sent, in Meta's words (restfb/restfb#1210).
      const pageToken = stack.meta.pageTokens.get(pages[0].id)!.at(-1)!;
      const url = new URL(
        `${stack.meta.url}/${stack.env.INSTAGRAM_GRAPH_VERSION}/${pages[0].id}/subscribed_apps`,
      );
      url.searchParams.set(
        "subscribed_fields",
        "messages,messaging_postbacks,messaging_seen,message_reactions",
      );
      url.searchParams.set("access_token", pageToken);
      url.searchParams.set("appsecret_proof", await hmacSha256Hex(stack.env.INSTAGRAM_APP_SECRET, pageToken));
      const refused = await fetch(url, { method: "POST" });
      const body = await refused.json();
      assert.equal(refused.status, 400);
      assert.equal(body.error.code, 100);
      assert.equal(body.error.type, "OAuthException");
      assert.equal(body.error.message, pageFieldRefusal(2, "messaging_seen"));
      assert.match(
        body.error.message,
        /^\(#100\) Param subscribed_fields\[2\] must be one of \{feed, mention, name, picture, .*, messages, message_reactions, .*, messaging_postbacks, .*, message_reads, .*\} - got "messaging_seen"$/,
      );
      assert.deepEqual(
        stack.meta.subscriptions.get(pages[0].id),
        ["messages", "messaging_postbacks", "message_reactions", "message_reads"],
        "a refused subscribe changes nothing",
      );
    });
  },
);
