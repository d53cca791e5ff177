// Meta's webhook subscription as the database says, whatever interleaves (the protocol in
// _shared/meta/link_webhooks.ts). Each pair is a maintenance run that finds the link's subscription gone
// and restores it, against a disconnect, a reconnect, a move to the other login path, or Meta's
// deauthorize, on both paths. The steps of each request (every Meta call at the fake, every query at
// the gateway) are held open in turn while the other request runs to its end (scripts/lib/step_gate.ts):
// no sleeps decide anything. The end state is then checked at the fake Meta and in the database: each
// subscription in play is there, with the link's fields, if and only if a link holds it.
import assert from "node:assert/strict";
import type postgres from "postgres";
import { LOCAL_SECRET_KEY, type LocalStack } from "../../../scripts/lib/local_stack.ts";
import {
  callback,
  finish,
  fullFlow,
  link,
  linkOf,
  newDoctor,
  post,
  racesRequests,
  signedRequest,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

type Doctor = Awaited<ReturnType<typeof newDoctor>>;
const DAY_MS = 24 * 60 * 60 * 1000;
/** A run's restore: the holder and version read, the write, the read again (link_webhooks.ts). */
const RESTORE_PAGE = ["rpc subscription_target", "meta subscribe", "rpc record_instagram_link_check"];
const RESTORE_IG = ["rpc subscription_target", "meta ig_subscribe", "rpc record_instagram_link_check"];
/** A subscription in play: a Page's (the Facebook app's) or an Instagram account's (the Instagram app's). */
type Key = { kind: "page"; id: string } | { kind: "instagram_user"; id: string; name: string };

/** One of the two racing requests: its name and the HTTP statuses it may answer. */
interface Actor {
  name: string;
  go: () => Promise<number>;
  statuses?: number[];
}

interface Scene {
  /** The two requests of the pair. */
  a: Actor;
  b: Actor;
  keys: Key[];
  /** Meta's deauthorize: the grant died at Meta first, so only "no write of ours landed after" is checked. */
  deauthorized?: boolean;
  /** Steps the first request must take alone (what the scene is about: a restore, a refresh). */
  covers?: string[];
  /** The Facebook user whose grant the disconnect revokes (not shared with another doctor), and whose link. */
  revokes?: { user: string; doctor: Doctor };
}

/** One link checked per run; a held call waits for the other request, so no deadline may end it first. */
const RACE_ENV = {
  INSTAGRAM_MAINTENANCE_BATCH: "1",
  INSTAGRAM_META_MAX_RETRIES: "0",
  INSTAGRAM_CALLBACK_DEADLINE_MS: "120000",
  INSTAGRAM_META_TIMEOUT_MS: "60000",
  INSTAGRAM_DB_TIMEOUT_MS: "60000",
};

/**
 * The stack for a race test. Its scenes link a few hundred doctors: they are deleted at its end (test
 * files run one after another), so the shared database holds what the other tests expect.
 */
async function withRaceStack(body: (stack: LocalStack, sql: postgres.Sql) => Promise<void>) {
  await withStack({ env: RACE_ENV }, async (stack, sql) => {
    const [{ started }] = await sql`select clock_timestamp() as started`;
    try {
      await body(stack, sql);
    } finally {
      await sql`delete from auth.users where created_at >= ${started}`;
    }
  });
}

async function answer(response: Response) {
  return { status: response.status, body: await response.json() };
}

/** One maintenance run, with the local secret key. */
async function runMaintenance(stack: LocalStack) {
  return await answer(
    await fetch(stack.functionUrl("instagram-maintenance"), {
      method: "POST",
      headers: { apikey: LOCAL_SECRET_KEY },
    }),
  );
}

/** DELETE /instagram-connect as the doctor. */
async function disconnectAs(stack: LocalStack, doctor: Doctor) {
  return await answer(
    await fetch(stack.functionUrl("instagram-connect"), {
      method: "DELETE",
      headers: { authorization: `Bearer ${doctor.token}` },
    }),
  );
}

/** Meta lost the subscription of `key`, and the doctor's link is the one the next run checks. */
async function lose(stack: LocalStack, sql: postgres.Sql, doctor: Doctor, key: Key) {
  if (key.kind === "page") stack.meta.dropSubscription(key.id);
  else stack.meta.instagram.dropSubscription(key.name);
  await sql`update public.doctor_instagram set checked_at = now()`;
  await sql`update public.doctor_instagram set checked_at = null where doctor_id = ${doctor.id}`;
}

Deno.test("subscriptions converge whatever interleaves", stackTest, async (t) => {
  racesRequests(t);
  await withRaceStack(async (stack, sql) => {
    const meta = stack.meta;
    const ig = meta.instagram;
    const fields: Record<Key["kind"], string[]> = { page: [], instagram_user: [] };

    const status = async (response: Response) => {
      await response.body?.cancel();
      return response.status;
    };
    const run: Actor = { name: "the run", go: async () => (await runMaintenance(stack)).status };
    const disconnect = (doctor: Doctor, name = "the disconnect"): Actor => ({
      name,
      go: async () => (await disconnectAs(stack, doctor)).status,
    });
    const finishing = (name: string, doctor: Doctor, body: Record<string, unknown>, statuses?: number[]) => ({
      name,
      go: async () => (await finish(stack, doctor.token, body)).status,
      statuses,
    });

    // ---- the links ----
    const viaFacebook = async (doctor: Doctor, { shared = false } = {}) => {
      const user = meta.newUser(shared ? 2 : 1);
      const page = user.pages[0];
      assert.equal((await link(stack, doctor.token, user.userId, page.id)).finished.status, 200);
      if (shared) {
        // A practice manager who linked a Page for another doctor too: the grant is not revoked.
        const other = await newDoctor(stack, sql);
        assert.equal((await link(stack, other.token, user.userId, user.pages[1].id)).finished.status, 200);
      }
      fields.page = [...meta.subscriptions.get(page.id)!].sort();
      return { user, page };
    };
    const pendingInstagram = async (doctor: Doctor, name: string) => {
      const redirect = await ig.approve(
        (await startConnect(stack, doctor.token, "?via=instagram")).url,
        name,
      );
      const pending = await callback(redirect);
      assert.equal(pending.status, 200, JSON.stringify(pending.body));
      return pending.body.pending as string;
    };
    const viaInstagram = async (doctor: Doctor, userId?: string) => {
      const name = `race_${crypto.randomUUID().slice(0, 8)}`;
      const account = ig.addAccount(name, { userId });
      const finished = await finish(stack, doctor.token, { pending: await pendingInstagram(doctor, name) });
      assert.equal(finished.status, 200, JSON.stringify(finished.body));
      fields.instagram_user = [...ig.account(name).subscription!].sort();
      return { name, account };
    };
    const pageKey = (id: string): Key => ({ kind: "page", id });
    const igKey = (id: string, name: string): Key => ({ kind: "instagram_user", id, name });

    const lost = (doctor: Doctor, key: Key) => lose(stack, sql, doctor, key);

    // ---- the scenes: two requests over one or two subscriptions ----
    // Most pair a run that finds the link's subscription gone (and restores it) with another request.
    const scenes: Record<string, () => Promise<Scene>> = {
      "a run and a disconnect, Facebook path (grant shared)": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page } = await viaFacebook(doctor, { shared: true });
        await lost(doctor, pageKey(page.id));
        return { a: run, b: disconnect(doctor), keys: [pageKey(page.id)], covers: RESTORE_PAGE };
      },
      "a run and a disconnect, Facebook path (grant revoked)": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        await lost(doctor, pageKey(page.id));
        return {
          a: run,
          b: disconnect(doctor),
          keys: [pageKey(page.id)],
          covers: RESTORE_PAGE,
          revokes: { user: user.appScopedId, doctor },
        };
      },
      "a run and a disconnect, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        await lost(doctor, igKey(account.userId, name));
        return { a: run, b: disconnect(doctor), keys: [igKey(account.userId, name)], covers: RESTORE_IG };
      },
      "a run refreshing the token and a disconnect, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        // 40 days old with 20 left: the run refreshes it (at least 24 hours old, under 30 days left).
        const token = ig.newestToken(name)!;
        ig.ageToken(token, 40 * DAY_MS);
        await sql`update public.doctor_instagram set token_refreshed_at = now() - interval '40 days',
          token_expires_at = ${new Date(ig.expiresAt(token)!)} where doctor_id = ${doctor.id}`;
        await lost(doctor, igKey(account.userId, name));
        return {
          a: run,
          b: disconnect(doctor),
          keys: [igKey(account.userId, name)],
          covers: ["meta ig_refresh", "rpc record_instagram_token_refresh", ...RESTORE_IG],
        };
      },
      "a run and a reconnect, Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        const flow = await fullFlow(stack, doctor.token, user.userId);
        await lost(doctor, pageKey(page.id));
        const pending = { pending: flow.result.body.pending, page_id: page.id };
        return {
          a: run,
          b: finishing("the reconnect", doctor, pending),
          keys: [pageKey(page.id)],
          covers: RESTORE_PAGE,
        };
      },
      "a run and a reconnect, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        const pending = await pendingInstagram(doctor, name);
        await lost(doctor, igKey(account.userId, name));
        return {
          a: run,
          b: finishing("the reconnect", doctor, { pending }),
          keys: [igKey(account.userId, name)],
          covers: RESTORE_IG,
        };
      },
      "a run and a move from the Facebook path to the Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page } = await viaFacebook(doctor);
        const name = `move_${crypto.randomUUID().slice(0, 8)}`;
        const account = ig.addAccount(name, { userId: page.instagram!.id });
        const pending = await pendingInstagram(doctor, name);
        await lost(doctor, pageKey(page.id));
        return {
          a: run,
          b: finishing("the move", doctor, { pending }),
          keys: [pageKey(page.id), igKey(account.userId, name)],
          covers: RESTORE_PAGE,
        };
      },
      "a run and a move from the Instagram path to the Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        const page = user.pages[0];
        const { name, account } = await viaInstagram(doctor, page.instagram!.id);
        const flow = await fullFlow(stack, doctor.token, user.userId);
        assert.equal(flow.result.status, 200, JSON.stringify(flow.result.body));
        await lost(doctor, igKey(account.userId, name));
        return {
          a: run,
          b: finishing("the move", doctor, { pending: flow.result.body.pending, page_id: page.id }),
          keys: [igKey(account.userId, name), pageKey(page.id)],
          covers: RESTORE_IG,
        };
      },
      "a run and Meta's deauthorize, Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        await lost(doctor, pageKey(page.id));
        const deauthorize = async () => {
          meta.killPageTokens(page.id, 458); // the user removed the app ("Handling Errors": 458)
          const signed = await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
            algorithm: "HMAC-SHA256",
            issued_at: Math.floor(Date.now() / 1000),
            user_id: user.appScopedId,
          });
          return await status(
            await post(stack, "deauthorize", new URLSearchParams({ signed_request: signed })),
          );
        };
        return {
          a: run,
          b: { name: "the deauthorize", go: deauthorize },
          keys: [pageKey(page.id)],
          deauthorized: true,
        };
      },
      "a run and Meta's deauthorize, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        await lost(doctor, igKey(account.userId, name));
        const deauthorize = async () => {
          ig.killToken(ig.newestToken(name)!);
          const signed = await signedRequest(stack.env.INSTAGRAM_LOGIN_APP_SECRET, {
            algorithm: "HMAC-SHA256",
            issued_at: Math.floor(Date.now() / 1000),
            user_id: account.id,
          });
          return await status(
            await post(stack, "instagram/deauthorize", new URLSearchParams({ signed_request: signed })),
          );
        };
        return {
          a: run,
          b: { name: "the deauthorize", go: deauthorize },
          keys: [igKey(account.userId, name)],
          deauthorized: true,
        };
      },
      // A practice gives a Page to another doctor: one disconnects it while the other links it (409
      // while the first still holds it).
      "a disconnect and another doctor linking the same Page": async () => {
        const [first, second] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
        const { page, user } = await viaFacebook(first, { shared: true });
        const flow = await fullFlow(stack, second.token, user.userId);
        const pending = { pending: flow.result.body.pending, page_id: page.id };
        return {
          a: disconnect(first),
          b: finishing("the other doctor's finish", second, pending, [200, 409]),
          keys: [pageKey(page.id)],
        };
      },
      "a disconnect and another doctor linking the same account, Instagram path": async () => {
        const [first, second] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
        const { name, account } = await viaInstagram(first);
        const pending = await pendingInstagram(second, name);
        return {
          a: disconnect(first),
          b: finishing("the other doctor's finish", second, { pending }, [200, 409]),
          keys: [igKey(account.userId, name)],
        };
      },
      // The doctor's other tab finishes a move to another Page while the first tab disconnects.
      "a disconnect and the same doctor's move to another Page": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page } = await viaFacebook(doctor, { shared: true });
        const other = meta.newUser(1);
        const flow = await fullFlow(stack, doctor.token, other.userId);
        return {
          a: disconnect(doctor),
          b: finishing("the other tab's finish", doctor, { pending: flow.result.body.pending }, [
            200,
            409,
          ]),
          keys: [pageKey(page.id), pageKey(other.pages[0].id)],
        };
      },
    };

    // ---- the end state ----
    const atMeta = (key: Key) => {
      const subscribed = key.kind === "page"
        ? meta.subscriptions.get(key.id)
        : ig.account(key.name).subscription;
      return subscribed ? [...subscribed].sort() : undefined;
    };
    const held = async (key: Key) => {
      const [row] = key.kind === "page"
        ? await sql`select 1 from public.doctor_instagram where instagram_page_id = ${key.id}`
        : await sql`select 1 from public.doctor_instagram
            where token_kind = 'instagram_user' and instagram_business_account_id = ${key.id}`;
      return row !== undefined;
    };
    const check = async (scene: Scene, how: string, afterDeauthorize?: Map<Key, string[] | undefined>) => {
      for (const key of scene.keys) {
        if (afterDeauthorize) {
          assert.equal(await held(key), false, `${how}: the deauthorized link is gone`);
          assert.deepEqual(
            atMeta(key),
            afterDeauthorize.get(key),
            `${how}: a write landed after the grant died`,
          );
          continue;
        }
        const expected = (await held(key)) ? fields[key.kind] : undefined;
        assert.deepEqual(atMeta(key), expected, `${how}: ${key.kind} ${key.id} at Meta`);
      }
      if (scene.revokes && !(await linkOf(sql, scene.revokes.doctor.id))) {
        // A revoke left to maintenance (a run held the link) is done by a run once that run's lease has
        // ended (here: made to have ended).
        if (!meta.revocations.includes(scene.revokes.user)) {
          await sql`update private.pending_revokes set not_before = now() where facebook_user_id = ${scene.revokes.user}`;
          await act(run, `${how}, a run after the lease`);
        }
        assert.ok(meta.revocations.includes(scene.revokes.user), `${how}: the grant is revoked`);
      }
    };

    // ---- each step of one request held while the other runs ----
    const act = async (actor: Actor, how: string) => {
      const answer = await actor.go();
      assert.ok((actor.statuses ?? [200]).includes(answer), `${how}: ${actor.name} answered ${answer}`);
    };
    for (const [name, make] of Object.entries(scenes)) {
      await t.step(name, async () => {
        let interleavings = 0;
        for (const swap of [false, true]) {
          // How many steps the first takes alone (then the second, an interleaving of its own).
          let scene = await make();
          let [first, second] = swap ? [scene.b, scene.a] : [scene.a, scene.b];
          const remember = (s: Scene) =>
            s.deauthorized ? new Map(s.keys.map((key) => [key, atMeta(key)])) : undefined;
          // Meta's deauthorize kills the grant as it starts: the state to keep is the one just before.
          let snapshot = first === scene.b ? remember(scene) : undefined;
          stack.gate.reset();
          await act(first, "alone");
          const steps = stack.gate.trace.length;
          if (!swap) {
            for (const step of scene.covers ?? []) {
              assert.ok(stack.gate.trace.includes(step), `${first.name} takes ${step}: ${stack.gate.trace}`);
            }
          }
          snapshot ??= remember(scene);
          await act(second, "after");
          await check(scene, `${first.name} then ${second.name}`, snapshot);
          interleavings++;

          for (let at = 0; at < steps; at++) {
            scene = await make();
            [first, second] = swap ? [scene.b, scene.a] : [scene.a, scene.b];
            stack.gate.reset();
            const hold = stack.gate.holdAt(at);
            snapshot = first === scene.b ? remember(scene) : undefined;
            const how = (label: string) =>
              `${first.name} held at step ${at} (${label}) while ${second.name} ran`;
            const running = act(first, how("held"));
            const label = await Promise.race([hold.reached, running.then(() => "none: it finished")]);
            snapshot ??= remember(scene);
            await act(second, how(label));
            hold.release();
            await running;
            await check(scene, how(label), snapshot);
            interleavings++;
          }
        }
        stack.gate.reset();
        assert.ok(interleavings >= 8, `${interleavings} interleavings`);
      });
    }
  });
});

// Three requests, put in order by holding steps by their label (an attacker's review found each).
Deno.test(
  "subscriptions converge: three requests, and the revokes a disconnect leaves",
  stackTest,
  async (t) => {
    racesRequests(t);
    await withRaceStack(async (stack, sql) => {
      const meta = stack.meta;
      const gate = stack.gate;
      const run = () => runMaintenance(stack);
      const disconnect = (doctor: Doctor) => disconnectAs(stack, doctor);
      const linked = async () => {
        const doctor = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        const page = user.pages[0];
        assert.equal((await link(stack, doctor.token, user.userId, page.id)).finished.status, 200);
        return { doctor, user, page };
      };
      const lost = (doctor: Doctor, pageId: string) => lose(stack, sql, doctor, { kind: "page", id: pageId });
      /** The time a deferred revoke waits for (the run's lease, or the claim's hour) has passed. */
      const later = () => sql`update private.pending_revokes set not_before = now()`;

      await t.step(
        "a second run revokes nothing while the run that held the link still converges; that run revokes at its end",
        async () => {
          gate.reset();
          const { doctor, user, page } = await linked();
          await lost(doctor, page.id);
          const restore = gate.holdNext("meta subscribe");
          const first = run();
          await restore.reached;
          const gone = await disconnect(doctor);
          assert.equal(gone.body.meta.revoked, "deferred", "a run held the link");
          const reread = gate.holdNext("rpc subscription_target");
          restore.release();
          await reread.reached;
          assert.ok(meta.subscriptions.has(page.id), "the run's restore landed after the disconnect");
          assert.equal((await run()).status, 200, "another run meanwhile");
          assert.ok(
            !meta.revocations.includes(user.appScopedId),
            "not while the first run may need the token",
          );
          reread.release();
          const firstRun = await first;
          assert.equal(firstRun.status, 200);
          assert.equal(meta.subscriptions.has(page.id), false, "the first run took its restore back");
          assert.ok(meta.revocations.includes(user.appScopedId), "then revoked the grant at its end");
          assert.ok(firstRun.body.revoked >= 1, JSON.stringify(firstRun.body));
        },
      );

      await t.step("a deferred revoke Meta fails is tried again, once its claim has run out", async () => {
        gate.reset();
        const { doctor, user, page } = await linked();
        await lost(doctor, page.id);
        const restore = gate.holdNext("meta subscribe");
        const first = run();
        await restore.reached;
        assert.equal((await disconnect(doctor)).body.meta.revoked, "deferred");
        // Meta fails every revoke of that run's end (others' left by earlier tests included).
        meta.inject("revoke", ...Array.from({ length: 20 }, () => ({ status: 500 })));
        restore.release();
        assert.equal((await first).status, 200);
        meta.clearFaults();
        assert.ok(!meta.revocations.includes(user.appScopedId), "Meta failed it");
        await run();
        assert.ok(!meta.revocations.includes(user.appScopedId), "claimed for an hour");
        await later();
        await run();
        assert.ok(meta.revocations.includes(user.appScopedId), "tried again, and done");
      });

      await t.step(
        "the other tab's move during a disconnect and a run: refused until the disconnect is done",
        async () => {
          gate.reset();
          const { doctor, user, page } = await linked();
          const other = meta.newUser(1);
          const flow = await fullFlow(stack, doctor.token, other.userId);
          await lost(doctor, page.id);
          const restore = gate.holdNext("meta subscribe");
          const first = run();
          await restore.reached;
          const deleting = gate.holdNext("rpc disconnect_doctor_instagram");
          const disconnecting = disconnect(doctor);
          await deleting.reached;
          const moved = await finish(stack, doctor.token, { pending: flow.result.body.pending });
          assert.equal(moved.status, 409, "the disconnect owns the link until it is done");
          deleting.release();
          const gone = await disconnecting;
          assert.equal(gone.body.meta.revoked, "deferred");
          restore.release();
          assert.equal((await first).status, 200);
          assert.equal(await linkOf(sql, doctor.id), undefined);
          assert.ok(
            meta.revocations.includes(user.appScopedId),
            "the run that held the link revoked at its end",
          );
          for (const left of [page, other.pages[0]]) {
            assert.equal(meta.subscriptions.has(left.id), false, left.id);
          }
        },
      );

      await t.step(
        "the other tab relinks with the same Facebook user before the revoke: refused",
        async () => {
          gate.reset();
          const { doctor, user, page } = await linked();
          const flow = await fullFlow(stack, doctor.token, user.userId);
          const revoke = gate.holdNext("meta revoke");
          const disconnecting = disconnect(doctor);
          await revoke.reached;
          const again = await finish(stack, doctor.token, {
            pending: flow.result.body.pending,
            page_id: page.id,
          });
          revoke.release();
          assert.equal(again.status, 409, "a fresh token for the revoke to kill: refused");
          const gone = await disconnecting;
          assert.deepEqual(gone.body.meta, { unsubscribed: true, revoked: true });
          assert.equal(await linkOf(sql, doctor.id), undefined);
          assert.equal(meta.subscriptions.has(page.id), false, "nobody holds the Page, and Meta says so");
        },
      );

      await t.step("a second click while a run holds the token defers its revoke too", async () => {
        gate.reset();
        const { doctor, user, page } = await linked();
        await lost(doctor, page.id);
        const restore = gate.holdNext("meta subscribe");
        const first = run();
        await restore.reached;
        const delete1 = gate.holdNext("rpc disconnect_doctor_instagram");
        const click1 = disconnect(doctor);
        await delete1.reached;
        const click2 = await disconnect(doctor);
        assert.equal(click2.body.meta.revoked, "deferred", "the run still holds the link");
        restore.release();
        assert.equal((await first).status, 200);
        delete1.release();
        const firstClick = await click1;
        assert.ok([200, 404].includes(firstClick.status), JSON.stringify(firstClick.body));
        assert.equal(await linkOf(sql, doctor.id), undefined);
        assert.equal(
          meta.subscriptions.has(page.id),
          false,
          "the run took its restore back with a live token",
        );
        assert.ok(meta.revocations.includes(user.appScopedId), "and revoked at its end");
      });

      await t.step(
        "a disconnect after one that died: the next run first gives the link its Page back",
        async () => {
          gate.reset();
          const { doctor, page } = await linked();
          // A disconnect died after its mark; the mark ran out.
          await sql`select public.prepare_disconnect(${doctor.id})`;
          await sql`update public.doctor_instagram set disconnecting_until = now() - interval '1 second'
          where doctor_id = ${doctor.id}`;
          await lost(doctor, page.id);
          const restore = gate.holdNext("meta subscribe");
          const first = run();
          await restore.reached; // the run cleared the mark (a holder change), read the link as holder
          const gone = await disconnect(doctor);
          assert.equal(gone.status, 200);
          restore.release();
          assert.equal((await first).status, 200);
          assert.equal(await linkOf(sql, doctor.id), undefined);
          assert.equal(
            meta.subscriptions.has(page.id),
            false,
            "the run saw the disconnect and took its restore back",
          );
        },
      );

      await t.step(
        "another doctor's refused finish lands between a disconnect's unsubscribe and its revoke",
        async () => {
          gate.reset();
          const [first, second] = [await newDoctor(stack, sql), await newDoctor(stack, sql)];
          const user = meta.newUser(1);
          const page = user.pages[0];
          // A colleague who manages the same Page starts a link for the second doctor.
          const colleague = meta.addUser(`colleague${crypto.randomUUID().slice(0, 8)}`, [page]);
          const flow = await fullFlow(stack, second.token, colleague);
          assert.equal(flow.result.status, 200, JSON.stringify(flow.result.body));
          const secondSubscribe = gate.holdNext("meta subscribe");
          const finishing = finish(stack, second.token, {
            pending: flow.result.body.pending,
            page_id: page.id,
          });
          await secondSubscribe.reached;
          assert.equal((await link(stack, first.token, user.userId, page.id)).finished.status, 200);
          const revoke = gate.holdNext("meta revoke");
          const disconnecting = disconnect(first);
          await revoke.reached;
          secondSubscribe.release();
          assert.equal((await finishing).status, 409, "the first doctor still held the Page");
          revoke.release();
          const gone = await disconnecting;
          assert.deepEqual(gone.body.meta, { unsubscribed: true, revoked: true });
          assert.equal(meta.subscriptions.has(page.id), false, "nobody holds the Page, and Meta says so");
        },
      );

      await t.step(
        "a disconnect that died after unsubscribing: the next run after its mark subscribes again",
        async () => {
          gate.reset();
          const { doctor, page } = await linked();
          // Checked last of all until the disconnect, which makes it the next run's first.
          await sql`update public.doctor_instagram set checked_at = now() + interval '1 day'
            where doctor_id = ${doctor.id}`;
          // The function marked the link and unsubscribed the Page, then died before the delete.
          await sql`select public.prepare_disconnect(${doctor.id})`;
          meta.dropSubscription(page.id);
          await sql`update public.doctor_instagram set checked_at = now() where doctor_id <> ${doctor.id}`;
          assert.equal((await run()).status, 200, "a run within the two minutes");
          assert.equal(meta.subscriptions.has(page.id), false, "the mark and the lease keep runs off it");
          await sql`update public.doctor_instagram set disconnecting_until = now() - interval '1 second',
          lease_until = now() - interval '1 second' where doctor_id = ${doctor.id}`;
          const answer = await run();
          assert.ok(answer.body.restored >= 1, JSON.stringify(answer.body));
          assert.ok(meta.subscriptions.has(page.id), "the link holds again, and Meta says so");
          assert.ok(await linkOf(sql, doctor.id), "the doctor is still linked");
        },
      );
      gate.reset();
    });
  },
);
