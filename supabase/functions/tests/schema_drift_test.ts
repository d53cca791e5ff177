// The declarative schema workflow, tried as someone changing the database would, in scratch copies of
// this checkout (the checkout itself is `deno task test`'s drift line): the drift check catches a
// schema file edited without a migration and a migration added without the schema edit, and refuses
// what pg-delta cannot compare; `deno task db:diff <name>` turns a schema edit into the migration
// that closes the drift.
import assert from "node:assert/strict";
import { adminUrl, type DatabaseHost, pgliteHost, serverHost } from "../../../scripts/lib/database.ts";
import { checkDrift, describeDrift } from "../../../scripts/lib/schema_drift.ts";
import { databaseEngine, scratchCopy, scriptDatabase } from "./_support.ts";

const LINK_TABLE = "supabase/schemas/01_doctor_instagram.sql";

/** Where the suite runs: its PostgreSQL server, or a PGlite of this process. */
async function withHost(body: (host: DatabaseHost) => Promise<void>) {
  const host = databaseEngine === "pglite" ? await pgliteHost() : await serverHost(adminUrl());
  try {
    await body(host);
  } finally {
    await host.close();
  }
}

async function withCopy(body: (root: URL) => Promise<void>) {
  const root = await scratchCopy();
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function edit(root: URL, path: string, change: (text: string) => string) {
  const file = new URL(path, root);
  const before = await Deno.readTextFile(file);
  const after = change(before);
  assert.notEqual(after, before, `${path} was changed`);
  await Deno.writeTextFile(file, after);
}

/** Adds a nullable column at the end of the link table's definition (as a developer would). */
const addNotesColumn = (text: string) =>
  text.replace(/(create table public\.doctor_instagram \([\s\S]*?)\n\);/, "$1,\n  notes text\n);");

/** `deno task db:diff <args>` in the scratch checkout `root`, on the suite's database engine. */
async function dbDiff(root: URL, args: string[]): Promise<{ code: number; text: string }> {
  const database = scriptDatabase();
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--quiet", "db:diff", ...args, ...database.args],
    cwd: root,
    env: { ...database.env, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: output.code,
    text: new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr),
  };
}

const name = () => `instagram_connect_drift_test_${Date.now()}`;

Deno.test("a schema file edited without a migration is drift: the check names the change", async () => {
  await withCopy(async (root) => {
    await edit(root, LINK_TABLE, addNotesColumn);
    await withHost(async (host) => {
      const drift = await checkDrift(host, name(), { root });
      assert.match(drift.schemaOnly, /ALTER TABLE "public"\."doctor_instagram"\s+ADD COLUMN "notes" text/i);
      assert.match(drift.migrationsOnly, /DROP COLUMN "notes"/i);
      assert.match(
        describeDrift(drift),
        /supabase\/schemas\/ declares what no migration makes \(run `deno task db:diff <name>`\)/,
      );
    });
  });
});

Deno.test("a migration added without the schema edit is drift too", async () => {
  await withCopy(async (root) => {
    await Deno.writeTextFile(
      new URL("supabase/migrations/29991231000000_hand_written.sql", root),
      "create index doctor_instagram_page_name_idx on public.doctor_instagram (page_name);\n",
    );
    await withHost(async (host) => {
      const drift = await checkDrift(host, name(), { root });
      assert.equal(drift.schemaOnly.match(/DROP INDEX/gi)?.length, 1, drift.schemaOnly);
      assert.match(drift.migrationsOnly, /CREATE INDEX doctor_instagram_page_name_idx/i);
      assert.match(
        describeDrift(drift),
        /supabase\/migrations\/ make what supabase\/schemas\/ does not declare/,
      );
    });
  });
});

Deno.test("an object pg-delta cannot compare fails the check instead of passing unseen (--strict-coverage)", async () => {
  await withCopy(async (root) => {
    await Deno.writeTextFile(
      new URL("supabase/schemas/99_operator.sql", root),
      "create operator private.=== (leftarg = int, rightarg = int, function = int4eq);\n",
    );
    await withHost(async (host) => {
      await assert.rejects(checkDrift(host, name(), { root }), /strict coverage/);
    });
  });
});

Deno.test("deno task db:diff <name>: the schema edit becomes a migration that leaves no drift", async () => {
  await withCopy(async (root) => {
    await edit(root, LINK_TABLE, addNotesColumn);
    const bad = await dbDiff(root, ["Add Notes"]);
    assert.equal(bad.code, 2);
    assert.match(bad.text, /^usage: deno task db:diff <name>/m);

    const before = new Set(
      [...Deno.readDirSync(new URL("supabase/migrations/", root))].map((entry) => entry.name),
    );
    const made = await dbDiff(root, ["add_link_notes"]);
    assert.equal(made.code, 0, made.text);
    const added = [...Deno.readDirSync(new URL("supabase/migrations/", root))].map((entry) => entry.name)
      .filter((file) => !before.has(file));
    assert.equal(added.length, 1, made.text);
    assert.match(added[0], /^\d{14}_add_link_notes\.sql$/);
    assert.ok(added[0] > [...before].sort().at(-1)!, "sorts after every landed migration");
    const migration = await Deno.readTextFile(new URL(`supabase/migrations/${added[0]}`, root));
    assert.match(
      migration,
      /^-- add_link_notes\n-- Generated by `deno task db:diff add_link_notes` from supabase\/schemas\//,
    );
    assert.match(migration, /ALTER TABLE "public"\."doctor_instagram"\s+ADD COLUMN "notes" text/i);
    assert.doesNotMatch(migration, /DROP/i, "adding a column drops nothing");
    assert.match(made.text, /Applied on a database built from the migrations, it leaves no drift/);
    assert.match(made.text, /a rename comes out as a drop and an add/);

    await withHost(async (host) => {
      const drift = await checkDrift(host, name(), { root });
      assert.deepEqual(drift, { schemaOnly: "", migrationsOnly: "", catalog: [] }, describeDrift(drift));
    });

    const again = await dbDiff(root, ["add_link_notes_again"]);
    assert.equal(again.code, 0, again.text);
    assert.match(again.text, /No changes: the schema files and the migrations describe the same database/);
  });
});

Deno.test("what pg-delta does not compare is compared from the catalogs: auth.users, grants, column order", async () => {
  await withCopy(async (root) => {
    await Deno.writeTextFile(
      new URL("supabase/schemas/99_outside.sql", root),
      "create trigger touch_users before update on auth.users\n" +
        "  for each row execute function private.touch_updated_at();\n" +
        "grant select on auth.users to anon;\n",
    );
    await edit(root, "supabase/schemas/03_oauth_states.sql", (text) => {
      // Two columns swapped: the same table to pg-delta, another row type to `select *`.
      const created = text.match(/^ {2}created_at timestamptz[^\n]*\n/m)![0];
      const expires = text.match(/^ {2}expires_at timestamptz[^\n]*\n/m)![0];
      return text.replace(created + expires, expires + created);
    });
    await withHost(async (host) => {
      const drift = await checkDrift(host, name(), { root });
      assert.deepEqual([drift.schemaOnly, drift.migrationsOnly], ["", ""], "pg-delta sees none of it");
      const catalog = drift.catalog.join("\n");
      assert.match(
        catalog,
        /only supabase\/schemas\/: trigger CREATE TRIGGER touch_users BEFORE UPDATE ON auth\.users/,
      );
      assert.match(catalog, /only supabase\/schemas\/: relation auth\.users \(r\) grants anon=r\/postgres/);
      assert.match(
        catalog,
        /only supabase\/schemas\/: columns of private\.oauth_states: nonce_hash, doctor_id, expires_at, created_at/,
      );
      assert.match(describeDrift(drift), /what pg-delta does not compare differs/);
    });
  });
});

Deno.test("deno task db:diff: a generated migration that does not apply is not written", async () => {
  await withCopy(async (root) => {
    await edit(
      root,
      "supabase/schemas/03_oauth_states.sql",
      (text) => text.replace(/^ {2}consumed_at timestamptz/m, "  consumed_at integer"),
    );
    const before = [...Deno.readDirSync(new URL("supabase/migrations/", root))].length;
    const { code, text } = await dbDiff(root, ["retype_consumed_at"]);
    assert.equal(code, 1, text);
    assert.match(text, /does not apply to a database built from the migrations, so nothing was written/);
    assert.equal([...Deno.readDirSync(new URL("supabase/migrations/", root))].length, before, "no file left");
  });
});
