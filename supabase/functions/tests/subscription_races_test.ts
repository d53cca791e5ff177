// Meta's webhook subscription as the database says, whatever interleaves (the protocol in
// _shared/meta/link_webhooks.ts). Each pair is a maintenance run that finds the link's subscription gone
// and restores it, against a disconnect, a reconnect, a move to the other login path, or Meta's
// deauthorize, on both paths. The steps of each request (every Meta call at the fake, every query at
// the gateway) are held open in turn while the other request runs to its end (scripts/lib/step_gate.ts):
// no sleeps decide anything. The end state is then checked at the fake Meta and in the database: each
// subscription in play is there, with the link's fields, if and only if a link holds it.
import assert from "node:assert/strict";
import { LOCAL_SECRET_KEY } from "../../../scripts/lib/local_stack.ts";
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
/** A subscription in play: a Page's (the Facebook app's) or an Instagram account's (the Instagram app's). */
type Key = { kind: "page"; id: string } | { kind: "instagram_user"; id: string; name: string };

interface Scene {
  doctor: Doctor;
  keys: Key[];
  /** The request that races the maintenance run; answers its HTTP status. */
  request: () => Promise<number>;
  /** Meta's deauthorize: the grant died at Meta first, so only "no write of ours landed after" is checked. */
  deauthorized?: boolean;
  /** The Facebook user whose grant the disconnect revokes (not shared with another doctor). */
  revokes?: string;
}

Deno.test("subscriptions converge whatever interleaves", stackTest, async (t) => {
  racesRequests(t);
  const env = {
    INSTAGRAM_MAINTENANCE_BATCH: "1",
    INSTAGRAM_META_MAX_RETRIES: "0",
    // A held call waits for the other request: no deadline may end it first.
    INSTAGRAM_CALLBACK_DEADLINE_MS: "120000",
    INSTAGRAM_META_TIMEOUT_MS: "60000",
    INSTAGRAM_DB_TIMEOUT_MS: "60000",
  };
  await withStack({ env }, async (stack, sql) => {
    const meta = stack.meta;
    const ig = meta.instagram;
    const fields: Record<Key["kind"], string[]> = { page: [], instagram_user: [] };

    const run = async () => {
      const response = await fetch(stack.functionUrl("instagram-maintenance"), {
        method: "POST",
        headers: { apikey: LOCAL_SECRET_KEY },
      });
      await response.body?.cancel();
      return response.status;
    };
    const disconnect = (doctor: Doctor) => async () => {
      const response = await fetch(stack.functionUrl("instagram-connect"), {
        method: "DELETE",
        headers: { authorization: `Bearer ${doctor.token}` },
      });
      await response.body?.cancel();
      return response.status;
    };
    const finishing = (doctor: Doctor, body: Record<string, unknown>) => async () =>
      (await finish(stack, doctor.token, body)).status;

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

    /** Meta lost the link's subscription, and the doctor's link is the one the next run checks. */
    const lost = async (doctor: Doctor, key: Key) => {
      if (key.kind === "page") meta.dropSubscription(key.id);
      else ig.dropSubscription(key.name);
      await sql`update public.doctor_instagram set checked_at = now()`;
      await sql`update public.doctor_instagram set checked_at = null where doctor_id = ${doctor.id}`;
    };

    // ---- the scenes: a link whose subscription is gone, and the request racing the run ----
    const scenes: Record<string, () => Promise<Scene>> = {
      "disconnect, Facebook path (grant shared)": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page } = await viaFacebook(doctor, { shared: true });
        await lost(doctor, pageKey(page.id));
        return { doctor, keys: [pageKey(page.id)], request: disconnect(doctor) };
      },
      "disconnect, Facebook path (grant revoked)": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        await lost(doctor, pageKey(page.id));
        return { doctor, keys: [pageKey(page.id)], request: disconnect(doctor), revokes: user.appScopedId };
      },
      "disconnect, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        await lost(doctor, igKey(account.userId, name));
        return { doctor, keys: [igKey(account.userId, name)], request: disconnect(doctor) };
      },
      "reconnect, Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        const flow = await fullFlow(stack, doctor.token, user.userId);
        await lost(doctor, pageKey(page.id));
        return {
          doctor,
          keys: [pageKey(page.id)],
          request: finishing(doctor, { pending: flow.result.body.pending, page_id: page.id }),
        };
      },
      "reconnect, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        const pending = await pendingInstagram(doctor, name);
        await lost(doctor, igKey(account.userId, name));
        return { doctor, keys: [igKey(account.userId, name)], request: finishing(doctor, { pending }) };
      },
      "move from the Facebook path to the Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page } = await viaFacebook(doctor);
        const name = `move_${crypto.randomUUID().slice(0, 8)}`;
        const account = ig.addAccount(name, { userId: page.instagram!.id });
        const pending = await pendingInstagram(doctor, name);
        await lost(doctor, pageKey(page.id));
        return {
          doctor,
          keys: [pageKey(page.id), igKey(account.userId, name)],
          request: finishing(doctor, { pending }),
        };
      },
      "move from the Instagram path to the Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        const page = user.pages[0];
        const { name, account } = await viaInstagram(doctor, page.instagram!.id);
        const flow = await fullFlow(stack, doctor.token, user.userId);
        assert.equal(flow.result.status, 200, JSON.stringify(flow.result.body));
        await lost(doctor, igKey(account.userId, name));
        return {
          doctor,
          keys: [igKey(account.userId, name), pageKey(page.id)],
          request: finishing(doctor, { pending: flow.result.body.pending, page_id: page.id }),
        };
      },
      "Meta's deauthorize, Facebook path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { page, user } = await viaFacebook(doctor);
        await lost(doctor, pageKey(page.id));
        const request = async () => {
          meta.killPageTokens(page.id, 458); // the user removed the app ("Access Token Errors": 458)
          const issued = Math.floor(Date.now() / 1000);
          const signed = await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
            algorithm: "HMAC-SHA256",
            issued_at: issued,
            user_id: user.appScopedId,
          });
          const response = await post(stack, "deauthorize", new URLSearchParams({ signed_request: signed }));
          await response.body?.cancel();
          return response.status;
        };
        return { doctor, keys: [pageKey(page.id)], request, deauthorized: true };
      },
      "Meta's deauthorize, Instagram path": async () => {
        const doctor = await newDoctor(stack, sql);
        const { name, account } = await viaInstagram(doctor);
        await lost(doctor, igKey(account.userId, name));
        const request = async () => {
          ig.killToken(ig.newestToken(name)!);
          const signed = await signedRequest(stack.env.INSTAGRAM_LOGIN_APP_SECRET, {
            algorithm: "HMAC-SHA256",
            issued_at: Math.floor(Date.now() / 1000),
            user_id: account.id,
          });
          const response = await post(
            stack,
            "instagram/deauthorize",
            new URLSearchParams({ signed_request: signed }),
          );
          await response.body?.cancel();
          return response.status;
        };
        return { doctor, keys: [igKey(account.userId, name)], request, deauthorized: true };
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
      if (scene.revokes && !(await linkOf(sql, scene.doctor.id))) {
        // A revoke left to maintenance (a run held the link) is done by the next run at the latest.
        if (!meta.revocations.includes(scene.revokes)) assert.equal(await run(), 200);
        assert.ok(meta.revocations.includes(scene.revokes), `${how}: the grant is revoked`);
      }
    };

    // ---- each step of one request held while the other runs ----
    for (const [name, make] of Object.entries(scenes)) {
      await t.step(name, async () => {
        for (const order of [["run", "request"], ["request", "run"]] as const) {
          // How many steps the first takes alone (then the second, as an interleaving of its own).
          let scene = await make();
          const act = (who: "run" | "request", s: Scene) => who === "run" ? run() : s.request();
          let snapshot: Map<Key, string[] | undefined> | undefined;
          const remember = (s: Scene) =>
            s.deauthorized ? new Map(s.keys.map((key) => [key, atMeta(key)])) : undefined;
          stack.gate.reset();
          if (order[0] === "request") snapshot = remember(scene);
          assert.equal(await act(order[0], scene), 200);
          const steps = stack.gate.trace.length;
          assert.ok(steps > 0, "the steps are traced");
          snapshot ??= remember(scene);
          assert.equal(await act(order[1], scene), 200);
          await check(scene, `${order[0]} then ${order[1]}`, snapshot);

          for (let at = 0; at < steps; at++) {
            scene = await make();
            stack.gate.reset();
            const hold = stack.gate.holdAt(at);
            snapshot = order[0] === "request" ? remember(scene) : undefined;
            const first = act(order[0], scene);
            const label = await Promise.race([hold.reached, first.then(() => "(finished first)")]);
            snapshot ??= remember(scene);
            const second = await act(order[1], scene);
            hold.release();
            const how = `${order[0]} held at step ${at} (${label}) while ${order[1]} ran`;
            assert.equal(await first, 200, how);
            assert.equal(second, 200, how);
            await check(scene, how, snapshot);
          }
        }
        stack.gate.reset();
      });
    }
  });
});
