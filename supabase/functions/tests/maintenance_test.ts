// instagram-maintenance: only the project's secret key runs it; one run checks links at the fake Meta
// (debug_token, the Page's subscribed apps), restores lost subscriptions, flags what needs the doctor with
// a reason, stops early at Meta's usage threshold, re-encrypts under the primary key a batch at a time,
// and sweeps; two runs at once never check a link twice; a reconnect makes a flagged link active again.
import assert from "node:assert/strict";
import {
  LOCAL_PUBLISHABLE_KEY,
  LOCAL_SECRET_KEY,
  type LocalStack,
  tokenKeyringOf,
} from "../../../scripts/lib/local_stack.ts";
import { auditOf, link, linkOf, newDoctor, racesRequests, stackTest, withStack } from "./_support.ts";
import type postgres from "postgres";
import { LINK_STATUS_REASONS } from "../_shared/meta/link_health.ts";

const LEGACY_KEY = "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=";
const NEW_KEY = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(32))));

async function run(stack: LocalStack, headers: Record<string, string> = { apikey: LOCAL_SECRET_KEY }) {
  const response = await fetch(stack.functionUrl("instagram-maintenance"), { method: "POST", headers });
  return { status: response.status, body: await response.json() };
}

/** A doctor linked to a new fake Meta user's one Page. */
async function linked(stack: LocalStack, sql: postgres.Sql) {
  const doctor = await newDoctor(stack, sql);
  const user = stack.meta.newUser(1);
  const { finished } = await link(stack, doctor.token, user.userId);
  assert.equal(finished.status, 200, JSON.stringify(finished.body));
  return { doctor, user, pageId: user.pages[0].id };
}

Deno.test("instagram-maintenance", stackTest, async (t) => {
  await withStack(
    { env: { INSTAGRAM_META_TIMEOUT_MS: "1000", INSTAGRAM_META_MAX_RETRIES: "0" } },
    async (stack, sql) => {
      const meta = stack.meta;

      await t.step(
        "only the secret key: none, a doctor's JWT, the publishable key, a wrong key: 401",
        async () => {
          const doctor = await newDoctor(stack, sql);
          const refused: Record<string, string>[] = [
            {},
            { authorization: `Bearer ${doctor.token}` },
            { authorization: `Bearer ${doctor.token}`, apikey: LOCAL_PUBLISHABLE_KEY },
            { apikey: LOCAL_PUBLISHABLE_KEY },
            { apikey: "sb_secret_wrong-wrong-wrong-wrong-wrong" },
            { authorization: `Bearer ${LOCAL_SECRET_KEY}` },
          ];
          meta.resetCounts();
          for (const headers of refused) {
            const answer = await run(stack, headers);
            assert.equal(answer.status, 401, JSON.stringify(headers));
            assert.equal(answer.body.error.code, "secret_key_required");
          }
          assert.equal(meta.calls.debug_token, 0, "a refused run asks Meta nothing");
          const get = await fetch(stack.functionUrl("instagram-maintenance"), {
            headers: { apikey: LOCAL_SECRET_KEY },
          });
          assert.equal(get.status, 405);
          await get.body?.cancel();
          const ok = await run(stack);
          assert.equal(ok.status, 200, JSON.stringify(ok.body));
          assert.deepEqual(Object.keys(ok.body).sort(), [
            "checked",
            "deferred",
            "failed",
            "flagged",
            "purged",
            "recovered",
            "reencrypted",
            "refreshed",
            "restored",
            "revoked",
            "unreadable",
          ]);
        },
      );

      await t.step("a healthy link: checked, active, reconnect_by from Meta, nothing audited", async () => {
        const { doctor } = await linked(stack, sql);
        const before = (await auditOf(sql, doctor.id)).length;
        const answer = await run(stack);
        assert.equal(answer.status, 200);
        assert.ok(answer.body.checked >= 1);
        const row = await linkOf(sql, doctor.id);
        assert.equal(row.status, "active");
        assert.ok(row.checked_at, "checked_at is set");
        assert.ok(row.reconnect_by > new Date(), "reconnect_by is Meta's data_access_expires_at");
        assert.equal(row.lease_id, null, "the lease ended");
        assert.equal((await auditOf(sql, doctor.id)).length, before, "a check is not audited");
      });

      await t.step("each 190 subcode from the fake Meta reaches its reason, audited", async () => {
        const cases: [number | undefined, string][] = [
          [460, "password_changed"],
          [458, "app_removed"],
          [463, "token_expired"],
          [459, "account_checkpointed"],
          [492, "page_role_lost"],
          [467, "token_invalid"],
          [undefined, "token_invalid"],
        ];
        const links = [];
        for (const [subcode] of cases) {
          const one = await linked(stack, sql);
          assert.ok(meta.killPageTokens(one.pageId, subcode) > 0);
          links.push(one);
        }
        const answer = await run(stack);
        assert.equal(answer.status, 200);
        assert.ok(answer.body.flagged >= cases.length, JSON.stringify(answer.body));
        for (const [i, [subcode, reason]] of cases.entries()) {
          const row = await linkOf(sql, links[i].doctor.id);
          assert.equal(
            `${subcode}: ${row.status}/${row.status_reason}`,
            `${subcode}: needs_reconnect/${reason}`,
          );
          const entry: Record<string, any> = (await auditOf(sql, links[i].doctor.id)).at(-1)!;
          assert.equal(entry.action, "instagram.status_changed");
          assert.equal(entry.metadata.changed.status_reason.to, reason);
        }
        const codes = await sql`select code from public.instagram_link_status_reasons order by code`;
        assert.deepEqual(
          codes.map(({ code }) => code),
          [...LINK_STATUS_REASONS].sort(),
          "the database has a sentence for every reason the functions give, and no other",
        );
      });

      await t.step(
        "data access over, a permission taken back, another app's token: their reasons",
        async () => {
          const expired = await linked(stack, sql);
          meta.setDataAccessExpiry(expired.user.userId, new Date(Date.now() - 60_000));
          const permission = await linked(stack, sql);
          meta.removePermission(permission.user.userId, "instagram_manage_messages");
          const mismatch = await linked(stack, sql);
          const foreign = meta.otherAppPageToken(mismatch.user.userId, mismatch.pageId);
          await sql`update public.doctor_instagram set instagram_access_token = ${await encryptedFor(
            stack,
            mismatch.doctor.id,
            mismatch.pageId,
            foreign,
          )} where doctor_id = ${mismatch.doctor.id}`;
          const soon = await linked(stack, sql);
          const ends = new Date(Date.now() + 5 * 86_400_000);
          meta.setDataAccessExpiry(soon.user.userId, ends);

          assert.equal((await run(stack)).status, 200);
          assert.equal((await linkOf(sql, expired.doctor.id)).status_reason, "data_access_expired");
          assert.equal((await linkOf(sql, permission.doctor.id)).status_reason, "permissions_missing");
          assert.equal((await linkOf(sql, mismatch.doctor.id)).status_reason, "page_token_mismatch");
          const warned = await linkOf(sql, soon.doctor.id);
          assert.equal(warned.status, "active");
          // Meta reports whole seconds (a Unix time).
          assert.equal(warned.reconnect_by.getTime() / 1000, Math.floor(ends.getTime() / 1000));
        },
      );

      await t.step(
        "a lost subscription is restored; one Meta refuses to restore flags the link",
        async () => {
          const lost = await linked(stack, sql);
          meta.dropSubscription(lost.pageId);
          const answer = await run(stack);
          assert.ok(answer.body.restored >= 1, JSON.stringify(answer.body));
          assert.ok(meta.subscriptions.has(lost.pageId), "subscribed again");
          assert.equal((await linkOf(sql, lost.doctor.id)).status, "active");

          const refused = await linked(stack, sql);
          meta.dropSubscription(refused.pageId);
          await sql`update public.doctor_instagram set checked_at = null where doctor_id = ${refused.doctor.id}`;
          meta.inject("subscribe", { status: 400, error: { code: 100, message: "(#100) guess: a refusal" } });
          await run(stack);
          meta.clearFaults();
          assert.equal((await linkOf(sql, refused.doctor.id)).status_reason, "subscription_lost");
        },
      );

      await t.step(
        "a late unsubscribe from another doctor's disconnect is repaired by the next run",
        async () => {
          const holder = await linked(stack, sql);
          // What a disconnect's unsubscribe that Meta carried out late does to the Page's new holder.
          meta.dropSubscription(holder.pageId);
          await run(stack);
          assert.ok(meta.subscriptions.has(holder.pageId));
          assert.equal((await linkOf(sql, holder.doctor.id)).status, "active");
        },
      );

      await t.step("reconnect: the doctor connects the same Page again and the link is active", async () => {
        const { doctor, user, pageId } = await linked(stack, sql);
        meta.killPageTokens(pageId, 460);
        await run(stack);
        assert.equal((await linkOf(sql, doctor.id)).status, "needs_reconnect");
        const { finished } = await link(stack, doctor.token, user.userId);
        assert.equal(finished.status, 200, JSON.stringify(finished.body));
        const row = await linkOf(sql, doctor.id);
        assert.deepEqual([row.status, row.status_reason], ["active", null]);
        assert.equal((await auditOf(sql, doctor.id)).at(-1)!.action, "instagram.reconnected");
        await run(stack);
        assert.equal((await linkOf(sql, doctor.id)).status, "active", "the new token passes the next check");
      });

      await t.step(
        "Meta's usage past 75%: the run stops and defers the rest; the next run takes them",
        async () => {
          for (let i = 0; i < 6; i++) await linked(stack, sql);
          await sql`update public.doctor_instagram set checked_at = null`;
          const [{ total }] = await sql`select count(*)::int as total from public.doctor_instagram`;
          meta.setUsage(80);
          const stopped = await run(stack);
          meta.setUsage();
          assert.equal(stopped.status, 200);
          // One batch (50) at most; at most 4 checks were under way when the usage came back.
          assert.ok(stopped.body.deferred >= Math.min(total, 50) - 4, JSON.stringify(stopped.body));
          assert.equal(
            stopped.body.checked + stopped.body.deferred + stopped.body.failed,
            Math.min(total, 50),
          );
          const [{ leased }] =
            await sql`select count(*)::int as leased from public.doctor_instagram where lease_id is not null`;
          assert.equal(leased, 0, "deferred links are released");
          const next = await run(stack);
          assert.equal(next.body.deferred, 0);
          assert.ok(next.body.checked >= stopped.body.deferred);
        },
      );

      await t.step("two runs at once: every link checked once, none twice", async (t) => {
        racesRequests(t);
        await sql`update public.doctor_instagram set checked_at = null`;
        const [{ total, pages }] = await sql`select count(*)::int as total,
          (count(*) filter (where token_kind = 'page'))::int as pages from public.doctor_instagram`;
        meta.resetCounts();
        const [first, second] = await Promise.all([run(stack), run(stack)]);
        assert.equal(first.status, 200);
        assert.equal(second.status, 200);
        // Each run leases at most its batch (50): the database is shared, other tests' links may be more.
        assert.equal(
          first.body.checked + second.body.checked + first.body.failed + second.body.failed,
          Math.min(total, 100),
        );
        // Instagram Login links (other tests' too: the database is shared) are checked at graph.instagram.com.
        if (total <= 100) assert.equal(meta.calls.debug_token, pages, "one debug_token per Page link");
      });

      await t.step("events past their retention are purged by the run", async () => {
        await sql`insert into public.instagram_events
          (doctor_id, account_id, kind, event_key, direction, occurred_at, received_at, payload)
        select doctor_id, instagram_business_account_id, 'message', 'old-event-' || doctor_id, 'incoming',
          now() - interval '400 days', now() - interval '400 days', '{}'::jsonb
        from public.doctor_instagram limit 1`;
        const answer = await run(stack);
        assert.equal(answer.body.purged, 1);
      });

      await t.step(
        "the README's pg_cron job, on stand-ins for pg_cron, pg_net and Vault, runs the function",
        async () => {
          const schedule = await Deno.readTextFile(
            new URL("../../../scripts/sql/schedule_maintenance.sql", import.meta.url),
          );
          const readme = await Deno.readTextFile(new URL("../../../README.md", import.meta.url));
          assert.ok(
            readme.includes(schedule.slice(schedule.indexOf("select cron.schedule")).trim()),
            "the README shows the job's SQL as it is tested",
          );
          const request = await sql.begin(async (tx) => {
            await tx.unsafe(STAND_INS);
            // As the README says to store them (the demo's URL and key stand in for the project's).
            await tx`select vault.create_secret(${stack.url}, 'project_url')`;
            await tx`select vault.create_secret(${LOCAL_SECRET_KEY}, 'instagram_maintenance_key')`;
            await tx.unsafe(schedule);
            const [job] = await tx`select jobname, schedule, command from cron.job`;
            assert.equal(job.jobname, "instagram-maintenance");
            await tx.unsafe(job.command); // what pg_cron does at each tick
            const [posted] = await tx`select url, headers, body, timeout_milliseconds from net.requests`;
            // Thrown, so the transaction rolls back and takes the stand-ins with it.
            throw Object.assign(new Error("roll back the stand-ins"), { request: posted });
          }).catch((error) => error.request ?? Promise.reject(error));
          assert.equal(request.url, stack.functionUrl("instagram-maintenance"));
          assert.equal(request.headers.apikey, LOCAL_SECRET_KEY);
          assert.equal(request.headers.authorization, undefined, "no JWT: the secret key only");
          // What pg_net then sends.
          const answer = await fetch(request.url, {
            method: "POST",
            headers: request.headers,
            body: JSON.stringify(request.body),
            signal: AbortSignal.timeout(request.timeout_milliseconds),
          });
          assert.equal(answer.status, 200);
          assert.equal(typeof (await answer.json()).checked, "number");
          const [{ schemas }] =
            await sql`select count(*)::int as schemas from pg_namespace where nspname in ('cron', 'net', 'vault')`;
          assert.equal(schemas, 0, "the stand-ins were thrown away");
        },
      );

      await t.step(
        "rotation: re-encrypted under the new primary, a batch per run; a dropped key still in use: 500",
        async () => {
          await stack.restart("instagram-maintenance", {
            INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
            INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `k2:${NEW_KEY},legacy:${LEGACY_KEY}`,
            INSTAGRAM_MAINTENANCE_BATCH: "5",
          });
          const [{ total }] = await sql`select count(*)::int as total from public.doctor_instagram`;
          let left = total;
          for (let runs = 0; left > 0; runs++) {
            assert.ok(runs < Math.ceil(total / 5), "at most ceil(rows / batch) runs");
            const answer = await run(stack);
            assert.equal(answer.body.reencrypted, Math.min(5, left), JSON.stringify(answer.body));
            left -= answer.body.reencrypted;
          }
          const [{ stale }] = await sql`select count(*)::int as stale from public.doctor_instagram
        where instagram_access_token not like 'v2.k2.%'`;
          assert.equal(stale, 0);
          assert.equal((await run(stack)).body.reencrypted, 0);

          const doctor = await newDoctor(stack, sql);
          await sql`insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
        values (${doctor.id}, '98765', 'v2.gone.iv.ciphertext', '1789876')`;
          const refused = await run(stack);
          assert.equal(refused.status, 500);
          assert.equal(refused.body.error.code, "token_key_missing");
          assert.match(refused.body.error.message, /key "gone" \(1 stored token\)/);
          await sql`delete from public.doctor_instagram where doctor_id = ${doctor.id}`;

          // A token its key id names but that key does not open (a key replaced under the same id): counted
          // and logged, left as it is, and the other rows are still re-encrypted.
          const broken = await newDoctor(stack, sql);
          await sql`insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id)
          values (${broken.id}, '98766', 'v2.legacy.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '1789877')`;
          const unreadable = await run(stack);
          assert.equal(unreadable.status, 200);
          assert.ok(unreadable.body.unreadable >= 1, JSON.stringify(unreadable.body));
          assert.equal((await linkOf(sql, broken.id)).status, "active", "not the doctor's doing: no flag");
          assert.match(
            stack.functions["instagram-maintenance"].output(),
            /"token_unreadable".*"key_id":"legacy"/,
          );
          await sql`delete from auth.users where id = ${broken.id}`;

          // And back under legacy, the key the other tests' stacks hold (they share this database).
          await stack.restart("instagram-maintenance", {
            INSTAGRAM_TOKEN_ENCRYPTION_KEY: "",
            INSTAGRAM_TOKEN_ENCRYPTION_KEYS: `legacy:${LEGACY_KEY},k2:${NEW_KEY}`,
            INSTAGRAM_MAINTENANCE_BATCH: "50",
          });
          while ((await run(stack)).body.reencrypted > 0) { /* a batch per run */ }
          const [{ k2 }] = await sql`select count(*)::int as k2 from public.doctor_instagram
          where instagram_access_token like 'v2.k2.%'`;
          assert.equal(k2, 0);
        },
      );
    },
  );
});

/** A token encrypted as the functions store it, for a test that plants one. */
async function encryptedFor(stack: LocalStack, doctorId: string, pageId: string, token: string) {
  return await (await tokenKeyringOf(stack.env)).encrypt(token, { doctorId, pageId });
}

// The parts of pg_cron, pg_net and Vault the job uses, with their documented signatures (pg_cron's
// README: cron.schedule(job_name, schedule, command) returns bigint; Supabase's "pg_net: Async
// Networking": net.http_post(url, body, params, headers, timeout_milliseconds) returns bigint; "Vault":
// vault.create_secret(secret, name, ...) and the view vault.decrypted_secrets), recording instead of acting.
const STAND_INS = `
  create schema cron;
  create table cron.job (jobid bigint generated always as identity, jobname text, schedule text, command text);
  create function cron.schedule(job_name text, schedule text, command text) returns bigint
    language sql as $$ insert into cron.job (jobname, schedule, command) values (job_name, schedule, command) returning jobid $$;
  create schema net;
  create table net.requests (id bigint generated always as identity, url text, body jsonb, params jsonb, headers jsonb, timeout_milliseconds int);
  create function net.http_post(url text, body jsonb default '{}', params jsonb default '{}',
      headers jsonb default '{"Content-Type": "application/json"}', timeout_milliseconds int default 5000) returns bigint
    language sql as $$ insert into net.requests (url, body, params, headers, timeout_milliseconds)
      values (url, body, params, headers, timeout_milliseconds) returning id $$;
  create schema vault;
  create table vault.secrets (id uuid primary key default gen_random_uuid(), name text unique, secret text);
  create view vault.decrypted_secrets as select id, name, secret as decrypted_secret from vault.secrets;
  create function vault.create_secret(new_secret text, new_name text default null) returns uuid
    language sql as $$ insert into vault.secrets (name, secret) values (new_name, new_secret) returning id $$;
`;
