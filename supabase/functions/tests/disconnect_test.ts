// DELETE /instagram-connect: the Page unsubscribed, the Facebook user's grant revoked unless another
// doctor's link needs it, the row deleted whatever Meta says, and the audit entry saying what Meta did.
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  auditOf,
  databaseUrl,
  finish,
  fullFlow,
  link,
  linkOf,
  newDoctor,
  racesRequests,
  stackTest,
  withStack,
} from "./_support.ts";
import { LOCAL_PUBLISHABLE_KEY, type LocalStack } from "../../../scripts/lib/local_stack.ts";
import { DATABASE_RETRY_AFTER_SECONDS } from "../_shared/database.ts";

const FAST_FAILURES = { INSTAGRAM_META_TIMEOUT_MS: "400", INSTAGRAM_CALLBACK_DEADLINE_MS: "3000" };

async function disconnect(stack: LocalStack, token: string) {
  const response = await fetch(stack.functionUrl("instagram-connect"), {
    method: "DELETE",
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  return { status: response.status, body: await response.json(), headers: response.headers };
}

/**
 * The test database read-only (or writable again) for every session from now on, as a standby or
 * Supabase's read-only mode ("Database size": "cannot execute INSERT in a read-only transaction") makes
 * it: a database setting, which a session takes when it starts. So the sessions already open are ended
 * (the gateway's pool opens new ones); on PGlite's one shared session a client's start or end applies
 * the database's settings, so a short-lived client does it.
 */
async function setReadOnly(readOnly: boolean) {
  const client = () => postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const admin = client();
  try {
    const [{ name }] = await admin`select current_database() as name`;
    const setting = readOnly
      ? "set default_transaction_read_only = on"
      : "reset default_transaction_read_only";
    // READ WRITE explicitly: this session may itself have started read-only.
    await admin.begin("read write", (tx) => tx.unsafe(`alter database "${name}" ${setting}`));
    await admin`select pg_terminate_backend(pid) from pg_stat_activity
                where datname = current_database() and pid <> pg_backend_pid()`;
    for (let i = 0; i < 50; i++) {
      const [{ others }] = await admin`select count(*)::int as others from pg_stat_activity
                                       where datname = current_database() and pid <> pg_backend_pid()`;
      if (others === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    await admin.end();
  }
  const fresh = client();
  const [{ mode }] = await fresh`select current_setting('default_transaction_read_only') as mode`;
  await fresh.end();
  assert.equal(mode, readOnly ? "on" : "off", "a new session starts from the database's setting");
  // The gateway and the test's own pool (both in this process) drop their ended connections as the
  // sockets close.
  await new Promise((resolve) => setTimeout(resolve, 200));
}

Deno.test("instagram-connect disconnect", stackTest, async (t) => {
  await withStack({ env: FAST_FAILURES }, async (stack, sql) => {
    const meta = stack.meta;

    await t.step("no link: 404 not_connected; no session: 401", async () => {
      const doctor = await newDoctor(stack, sql);
      const none = await disconnect(stack, doctor.token);
      assert.equal(none.status, 404);
      assert.equal(none.body.error.code, "not_connected");
      assert.equal((await disconnect(stack, "")).status, 401);
    });

    await t.step("Meta up: unsubscribed, revoked, deleted, and the audit entry says so", async () => {
      const doctor = await newDoctor(stack, sql);
      const { userId, pages, appScopedId } = meta.newUser(1);
      assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
      assert.ok(meta.subscriptions.has(pages[0].id));

      const result = await disconnect(stack, doctor.token);
      assert.equal(result.status, 200, JSON.stringify(result.body));
      assert.deepEqual(result.body, { disconnected: true, meta: { unsubscribed: true, revoked: true } });
      assert.equal(await linkOf(sql, doctor.id), undefined);
      assert.equal(meta.subscriptions.has(pages[0].id), false, "the Page no longer sends webhooks");
      assert.deepEqual(meta.revocations.slice(-1), [appScopedId], "revoked for that Facebook user");
      assert.deepEqual(meta.permissionsOf(userId).granted, [], "the app holds no grant of theirs any more");

      const entry = (await auditOf(sql, doctor.id)).at(-1)!;
      assert.equal(entry.action, "instagram.disconnected");
      assert.equal(entry.actor_id, doctor.id);
      assert.deepEqual(entry.metadata.meta, { unsubscribed: true, revoked: true });

      assert.equal((await disconnect(stack, doctor.token)).status, 404, "a second disconnect: nothing left");
    });

    await t.step(
      "Meta failing: the row is deleted anyway, and the answer and audit say what failed",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const { userId, pages } = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
        meta.inject("unsubscribe", { status: 500 }, { status: 500 }, { status: 500 });
        meta.inject("revoke", { status: 400, error: { code: 190 } });
        meta.resetCounts();

        const result = await disconnect(stack, doctor.token);
        assert.equal(result.status, 200);
        assert.deepEqual(result.body.meta, { unsubscribed: false, revoked: false });
        assert.equal(meta.calls.unsubscribe, 3, "the unsubscribe was retried");
        assert.equal(await linkOf(sql, doctor.id), undefined, "the doctor's intent wins");
        assert.ok(meta.subscriptions.has(pages[0].id), "(Meta really did not unsubscribe)");
        assert.deepEqual((await auditOf(sql, doctor.id)).at(-1)!.metadata.meta, {
          unsubscribed: false,
          revoked: false,
        });
        meta.clearFaults();
      },
    );

    await t.step("the unsubscribe never answers: bounded by the timeouts, the rest still done", async () => {
      const doctor = await newDoctor(stack, sql);
      assert.equal((await link(stack, doctor.token, meta.newUser(1).userId)).finished.status, 200);
      meta.inject("unsubscribe", { delayMs: 5_000 }, { delayMs: 5_000 }, { delayMs: 5_000 });
      const started = performance.now();
      const result = await disconnect(stack, doctor.token);
      assert.equal(result.status, 200);
      assert.deepEqual(result.body.meta, { unsubscribed: false, revoked: true });
      assert.ok(performance.now() - started < 4_000, "bounded by the deadline");
      assert.equal(await linkOf(sql, doctor.id), undefined);
      meta.clearFaults();
    });

    await t.step(
      "a practice manager linked Pages for two doctors: revoke is skipped until the last",
      async () => {
        const first = await newDoctor(stack, sql);
        const second = await newDoctor(stack, sql);
        const { userId, pages, appScopedId } = meta.newUser(2);
        assert.equal((await link(stack, first.token, userId, pages[0].id)).finished.status, 200);
        assert.equal((await link(stack, second.token, userId, pages[1].id)).finished.status, 200);

        const firstOut = await disconnect(stack, first.token);
        assert.deepEqual(firstOut.body.meta, { unsubscribed: true, revoked: "skipped" });
        assert.ok(!meta.revocations.includes(appScopedId));
        assert.ok(meta.subscriptions.has(pages[1].id), "the other doctor's Page still sends its webhooks");
        assert.ok(meta.permissionsOf(userId).granted.includes("instagram_manage_messages"));
        assert.deepEqual((await auditOf(sql, first.id)).at(-1)!.metadata.meta, {
          unsubscribed: true,
          revoked: "skipped",
        });

        const secondOut = await disconnect(stack, second.token);
        assert.deepEqual(secondOut.body.meta, { unsubscribed: true, revoked: true });
        assert.ok(meta.revocations.includes(appScopedId));
      },
    );

    await t.step("another doctor's connection still waiting to be finished keeps the grant too", async () => {
      const first = await newDoctor(stack, sql);
      const second = await newDoctor(stack, sql);
      const { userId, pages, appScopedId } = meta.newUser(2);
      assert.equal((await link(stack, first.token, userId, pages[0].id)).finished.status, 200);
      const waiting = await fullFlow(stack, second.token, userId); // the manager is halfway for doctor 2
      const out = await disconnect(stack, first.token);
      assert.deepEqual(out.body.meta, { unsubscribed: true, revoked: "skipped" });
      assert.ok(!meta.revocations.includes(appScopedId));
      const finished = await finish(stack, second.token, {
        pending: waiting.result.body.pending,
        page_id: pages[1].id,
      });
      assert.equal(finished.status, 200, "doctor 2 can still finish with the grant intact");
    });

    await t.step(
      "a finish moving the doctor to another Page while a disconnect runs: refused, both Pages end clean",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const first = meta.newUser(1);
        const second = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, first.userId)).finished.status, 200);
        const waiting = await fullFlow(stack, doctor.token, second.userId);
        // The disconnect's unsubscribe of Page 1 is held until the other tab's finish is done.
        stack.gate.reset();
        const held = stack.gate.holdNext("meta unsubscribe");
        const disconnecting = disconnect(stack, doctor.token);
        await held.reached;
        const moved = await finish(stack, doctor.token, { pending: waiting.result.body.pending }).finally(
          () => held.release(),
        );
        assert.equal(moved.status, 409, "the other tab's finish waits for the disconnect");
        assert.equal(moved.body.error.code, "disconnect_in_progress");
        const out = await disconnecting;
        assert.equal(out.status, 200);
        assert.equal(await linkOf(sql, doctor.id), undefined, "the doctor ends disconnected");
        assert.equal(meta.subscriptions.has(first.pages[0].id), false);
        assert.equal(
          meta.subscriptions.has(second.pages[0].id),
          false,
          "the refused finish took its subscription back",
        );
        const last = (await auditOf(sql, doctor.id)).at(-1)!;
        assert.equal(last.action, "instagram.disconnected");
        assert.equal(last.metadata.page_id, first.pages[0].id);
        const again = await finish(stack, doctor.token, { pending: waiting.result.body.pending });
        assert.equal(again.status, 200, "once disconnected, the same connection can be finished");
      },
    );

    await t.step(
      "while a disconnect waits on Meta, neither the doctor's other tab nor another doctor links its Page",
      async (t) => {
        racesRequests(t);
        // Dr. A holds P1 and disconnects; Meta is slow over the unsubscribe of P1. Meanwhile A's other tab
        // and Dr. B each try to link P1: both wait for the disconnect, and B links it after.
        const a = await newDoctor(stack, sql);
        const b = await newDoctor(stack, sql);
        const userA = meta.newUser(2);
        const [p1, p2] = userA.pages;
        assert.equal((await link(stack, a.token, userA.userId, p1.id)).finished.status, 200);
        const otherTab = await fullFlow(stack, a.token, userA.userId);
        const bFlow = await fullFlow(stack, b.token, meta.addUser(`p1-manager-${b.id}`, [p1]));
        stack.gate.reset();
        const unsubscribing = stack.gate.holdNext("meta unsubscribe");
        const disconnecting = disconnect(stack, a.token);
        await unsubscribing.reached;
        try {
          const moved = await finish(stack, a.token, {
            pending: otherTab.result.body.pending,
            page_id: p2.id,
          });
          assert.equal(moved.status, 409);
          assert.equal(moved.body.error.code, "disconnect_in_progress");
          const taken = await finish(stack, b.token, { pending: bFlow.result.body.pending, page_id: p1.id });
          assert.equal(taken.status, 409);
          assert.equal(taken.body.error.code, "page_already_linked", "A still holds P1 until the delete");
        } finally {
          unsubscribing.release();
        }
        assert.equal((await disconnecting).status, 200);
        assert.equal(meta.subscriptions.has(p1.id), false);
        const bAgain = await fullFlow(stack, b.token, `p1-manager-${b.id}`);
        const linked = await finish(stack, b.token, { pending: bAgain.result.body.pending, page_id: p1.id });
        assert.equal(linked.status, 200, JSON.stringify(linked.body));
        assert.equal((await linkOf(sql, b.id)).instagram_page_id, p1.id);
        assert.ok(meta.subscriptions.has(p1.id), "B's Page is subscribed");
      },
    );

    await t.step("a doctor cannot delete the row directly (RLS), so no disconnect skips Meta", async () => {
      const doctor = await newDoctor(stack, sql);
      assert.equal((await link(stack, doctor.token, meta.newUser(1).userId)).finished.status, 200);
      const response = await fetch(`${stack.url}/rest/v1/doctor_instagram?doctor_id=eq.${doctor.id}`, {
        method: "DELETE",
        headers: { apikey: LOCAL_PUBLISHABLE_KEY, authorization: `Bearer ${doctor.token}` },
      });
      assert.equal(
        response.status,
        403,
        "permission denied (42501), as PostgREST answers an authenticated role",
      );
      assert.equal((await response.json()).code, "42501");
      assert.ok(await linkOf(sql, doctor.id), "the link is still there");
    });
  });
});

Deno.test(
  "a read-only database (SQLSTATE 25006): 503 database_unavailable with Retry-After, Meta untouched, nothing written",
  stackTest,
  async () => {
    await withStack({ env: FAST_FAILURES }, async (stack, sql) => {
      const meta = stack.meta;
      const doctor = await newDoctor(stack, sql);
      const { userId, pages } = meta.newUser(1);
      assert.equal((await link(stack, doctor.token, userId)).finished.status, 200);
      const auditBefore = (await auditOf(sql, doctor.id)).length;
      const statesBefore = await sql`select count(*)::int as n from private.oauth_states
                                     where doctor_id = ${doctor.id}`;
      const connect = stack.functions["instagram-connect"];
      const logBefore = connect.output().length;

      await setReadOnly(true);
      try {
        meta.resetCounts();
        const refused = await disconnect(stack, doctor.token);
        assert.equal(refused.status, 503, JSON.stringify(refused.body));
        assert.equal(refused.body.error.code, "database_unavailable");
        assert.equal(refused.headers.get("retry-after"), String(DATABASE_RETRY_AFTER_SECONDS));
        // Refused at its first step (prepare_disconnect locks the link): the Page still sends its
        // webhooks and the grant stands, matching the link the doctor still sees.
        assert.equal(meta.calls.unsubscribe + meta.calls.revoke, 0, "no call to Meta");
        assert.ok(meta.subscriptions.has(pages[0].id));
        assert.ok(await linkOf(sql, doctor.id), "the link is still there");
        assert.equal((await auditOf(sql, doctor.id)).length, auditBefore, "no audit entry");

        // A write that fails in the database itself (create_oauth_state's insert): the same answer.
        const start = await fetch(stack.functionUrl("instagram-connect"), {
          headers: { authorization: `Bearer ${doctor.token}`, accept: "application/json" },
        });
        assert.equal(start.status, 503);
        assert.equal((await start.json()).error.code, "database_unavailable");
        assert.equal(start.headers.get("retry-after"), String(DATABASE_RETRY_AFTER_SECONDS));
        const statesAfter = await sql`select count(*)::int as n from private.oauth_states
                                      where doctor_id = ${doctor.id}`;
        assert.equal(statesAfter[0].n, statesBefore[0].n, "no state was recorded");

        // Both came from the database as 25006, which the gateway answered 405 as PostgREST does.
        const failures = connect.output().slice(logBefore).split("\n")
          .filter((line) => line.includes('"event":"request_failed"'));
        assert.equal(failures.length, 2, failures.join("\n"));
        for (const line of failures) {
          const { error_code, cause } = JSON.parse(line);
          assert.deepEqual([error_code, cause.sqlstate, cause.status], [
            "database_unavailable",
            "25006",
            405,
          ]);
        }
      } finally {
        await setReadOnly(false);
      }

      const done = await disconnect(stack, doctor.token);
      assert.equal(done.status, 200, "once the database writes again, the disconnect goes through");
      assert.equal(await linkOf(sql, doctor.id), undefined);
      assert.equal(meta.subscriptions.has(pages[0].id), false);
    });
  },
);
