// The instagram_login migration (issue 18) on a database that holds Facebook links: every migration before
// it, then rows as production has them (Page links with every column set, pending connections, webhook
// events, the audit their inserts wrote), then the migration; each old row must be the same, column by
// column, and the new columns must take their defaults (a Page link: token_kind 'page', no Instagram
// user, no refresh time). Run on the suite's engine (its PostgreSQL server, or a PGlite of this process).
import assert from "node:assert/strict";
import postgres from "postgres";
import {
  adminUrl,
  applyShim,
  type DatabaseHost,
  pgliteHost,
  serverHost,
  sqlFiles,
} from "../../../scripts/lib/database.ts";
import { databaseEngine } from "./_support.ts";

const MIGRATIONS = new URL("../../migrations/", import.meta.url);
const NEW_MIGRATION = /_instagram_login\.sql$/;

/** Each table's rows as JSON objects (every column), in a stable order. */
async function snapshot(sql: postgres.Sql) {
  const rows = async (query: string) => (await sql.unsafe(query)).map((row) => row.value);
  return {
    links: await rows("select to_jsonb(t) as value from public.doctor_instagram as t order by doctor_id"),
    pending: await rows(
      "select to_jsonb(t) as value from private.pending_connections as t order by token_hash",
    ),
    events: await rows("select to_jsonb(t) as value from public.instagram_events as t order by id"),
    audit: await rows("select to_jsonb(t) as value from private.audit_log as t order by id"),
  };
}

/** `row` less the columns the migration added, which must hold these values. */
function withoutNew(row: Record<string, unknown>, added: Record<string, unknown>) {
  const rest = { ...row };
  for (const [column, value] of Object.entries(added)) {
    assert.deepEqual(rest[column], value, `the new column ${column} takes its default`);
    delete rest[column];
  }
  return rest;
}

Deno.test("existing Facebook links, pending connections, events and audit survive the instagram_login migration unchanged", async () => {
  const host: DatabaseHost = databaseEngine === "pglite" ? await pgliteHost() : await serverHost(adminUrl());
  try {
    const url = await host.createDatabase(`instagram_connect_migration_test_${Date.now()}`);
    await applyShim(url);
    const names = await sqlFiles(MIGRATIONS);
    const index = names.findIndex((name) => NEW_MIGRATION.test(name));
    assert.ok(index > 0, "the instagram_login migration is in supabase/migrations/");
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const apply = async (name: string) =>
        await sql.begin((tx) => tx.unsafe(Deno.readTextFileSync(new URL(name, MIGRATIONS))));
      for (const name of names.slice(0, index)) await apply(name);

      // As production holds them: two Page links (one with every column set, one as a fresh link leaves
      // it), a pending connection waiting and a used one, events of both links, the audit of the inserts.
      await sql.unsafe(`
        insert into auth.users (id) values
          ('00000000-0000-4000-8000-000000000a01'), ('00000000-0000-4000-8000-000000000a02');
        insert into public.doctor_instagram (
          doctor_id, instagram_page_id, instagram_access_token, instagram_username, page_name,
          instagram_business_account_id, connected_at, updated_at, facebook_user_id, granted_scopes, token_kind,
          token_expires_at, status, status_reason, checked_at, reconnect_by, lease_id, lease_until
        ) values (
          '00000000-0000-4000-8000-000000000a01', '9101', 'v2.k1.iv.cipher-one', 'clinic_one', 'Clinic One',
          '17849101', '2026-11-20T10:00:00Z', '2026-11-21T10:00:00Z', '6101', array['pages_show_list', 'instagram_basic'],
          'page', '2027-01-01T00:00:00Z', 'needs_reconnect', 'page_role_lost', '2026-12-01T00:00:00Z',
          '2027-02-01T00:00:00Z', '00000000-0000-4000-8000-00000000cafe', '2026-12-01T00:05:00Z'
        );
        insert into public.doctor_instagram (doctor_id, instagram_page_id, instagram_access_token, instagram_business_account_id, facebook_user_id)
        values ('00000000-0000-4000-8000-000000000a02', '9102', 'v1.iv.cipher-two', '17849102', '6102');
        insert into private.pending_connections (token_hash, doctor_id, pages, created_at, expires_at, used_at, facebook_user_id, granted_scopes)
        values
          (repeat('1', 64), '00000000-0000-4000-8000-000000000a01',
           '[{"page_id": "9103", "page_name": "Clinic Three", "instagram_account_id": "17849103", "access_token": "v2.k1.iv.p"}]',
           now(), now() + interval '10 minutes', null, '6101', array['pages_show_list']),
          (repeat('2', 64), '00000000-0000-4000-8000-000000000a02', '[]', now() - interval '5 minutes',
           now() + interval '5 minutes', now(), '6102', null);
        insert into public.instagram_events (
          doctor_id, account_id, facebook_user_id, kind, event_key, message_id, sender_id, recipient_id, direction,
          occurred_at, payload, text_removed_at, claimed_by, claimed_until, processed_at
        ) values
          ('00000000-0000-4000-8000-000000000a01', '17849101', '6101', 'messages', 'message:mid-1', 'mid-1', '555',
           '17849101', 'incoming', '2026-11-30T12:00:00Z', '{"message": {"mid": "mid-1", "text": "hello"}}',
           null, 'worker-1', '2026-11-30T12:05:00Z', '2026-11-30T12:01:00Z'),
          ('00000000-0000-4000-8000-000000000a02', '17849102', '6102', 'messages', 'unsend:mid-2', 'mid-2', '556',
           '17849102', 'incoming', '2026-11-30T13:00:00Z', '{"message": {"mid": "mid-2", "is_deleted": true}}',
           '2026-11-30T13:00:01Z', null, null, null);
      `);
      const before = await snapshot(sql);
      assert.equal(before.links.length, 2);
      assert.ok(before.audit.length >= 2, "the inserts were audited");

      await apply(names[index]);
      const after = await snapshot(sql);

      assert.deepEqual(
        after.links.map((row) => withoutNew(row, { instagram_user_id: null, token_refreshed_at: null })),
        before.links,
        "each Page link is unchanged, column by column",
      );
      assert.ok(after.links.every((row) => row.token_kind === "page"), "and stays a Page link");
      assert.deepEqual(
        after.pending.map((row) => withoutNew(row, { token_kind: "page", instagram_user_id: null })),
        before.pending,
        "each pending connection is unchanged; the new ones are Facebook Login's",
      );
      assert.deepEqual(
        after.events.map((row) => withoutNew(row, { instagram_user_id: null })),
        before.events,
        "each event is unchanged",
      );
      assert.deepEqual(after.audit, before.audit, "the audit is unchanged, and the migration wrote none");

      // The Facebook path still works on them: a page delivery under the Facebook app is stored.
      const [{ stored }] = await sql.unsafe(`
        select public.store_instagram_events('page', '[{"id": "9102", "time": 1764000000, "messaging": [
          {"sender": {"id": "557"}, "recipient": {"id": "17849102"}, "timestamp": 1764000000000,
           "message": {"mid": "mid-3", "text": "hi"}}]}]') as stored
      `);
      assert.equal(stored.stored, 1, "a Page link receives its events after the migration");
    } finally {
      await sql.end();
    }
  } finally {
    await host.close();
  }
});
