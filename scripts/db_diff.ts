// `deno task db:diff <name> [--pglite]`: the next migration, generated from the declarative schema.
//   1. Two throw-away databases: one from supabase/migrations/, one from supabase/schemas/ (on the
//      PostgreSQL server deno task test would use, else on the embedded PGlite).
//   2. `supabase db diff --from <migrations> --to <schemas>` (the CLI's bundled pg-delta, no Docker).
//   3. Its SQL written as supabase/migrations/<UTC timestamp>_<name>.sql, then applied to the
//      migrations' database and compared again: the new migration must leave no drift.
// The CLI calls this output "review SQL": read every generated migration before committing it (a
// renamed column or table comes out as a drop and an add, which loses its data), and test it on a
// database that holds rows.
import { chooseHost, sqlFiles } from "./lib/database.ts";
import { buildBoth, schemaDiff } from "./lib/schema_drift.ts";
import postgres from "postgres";

const ROOT = new URL("../", import.meta.url);
const MIGRATIONS = new URL("supabase/migrations/", ROOT);
const args = Deno.args.filter((arg) => arg !== "--pglite");
const name = args[0] ?? "";

if (args.length !== 1 || !/^[a-z0-9]+(_[a-z0-9]+)*$/.test(name)) {
  console.error(
    "usage: deno task db:diff <name> [--pglite]\n" +
      "  <name>: what the migration does, in snake_case (e.g. add_link_status); it becomes\n" +
      "  supabase/migrations/<UTC timestamp>_<name>.sql",
  );
  Deno.exit(2);
}

const { host, why } = await chooseHost({ pglite: Deno.args.includes("--pglite") }).catch((error) => {
  console.error(`deno task db:diff: ${error.message}`);
  Deno.exit(1);
});
let code = 0;
// Ctrl-C: the throw-away databases go too.
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  Deno.addSignalListener(signal, async () => {
    await host.close().catch(() => {});
    Deno.exit(130);
  });
}
try {
  console.log(`Comparing supabase/migrations/ with supabase/schemas/ on ${host.version} (${why})`);
  const both = await buildBoth(host, `instagram_connect_diff_${Deno.pid}`);
  try {
    const diff = await schemaDiff(both.migrations, both.schemas);
    if (!diff) {
      console.log("No changes: the schema files and the migrations describe the same database.");
    } else {
      // Applied first, written after: a diff that does not apply leaves no file behind to break the next run.
      const sql = postgres(both.migrations, { max: 1, onnotice: () => {} });
      try {
        await sql.begin((tx) => tx.unsafe(diff));
      } catch (error) {
        throw new Error(
          "the generated SQL does not apply to a database built from the migrations, so nothing was " +
            `written: ${(error as Error).message}\n${diff}\nWrite this migration by hand.`,
        );
      } finally {
        await sql.end();
      }
      const file = await nextMigration(name);
      await Deno.writeTextFile(new URL(file, MIGRATIONS), migrationText(name, diff));
      const left = await schemaDiff(both.migrations, both.schemas);
      const statements = diff.match(/^(?:CREATE|ALTER|DROP|GRANT|REVOKE|COMMENT|SET)\b/gm)?.length ?? 0;
      console.log(
        `Wrote supabase/migrations/${file} (${statements} statement${statements === 1 ? "" : "s"}).`,
      );
      const drops = diff.match(/^\s*(?:ALTER TABLE .*\n\s*)?DROP (?:COLUMN|TABLE) [^;\n]*/gim) ?? [];
      if (drops.length) {
        console.log(
          `It drops data:\n${drops.map((drop) => `  ${drop.trim().replace(/\s+/g, " ")}`).join("\n")}\n` +
            "If that is a rename, replace those statements in the file with ALTER ... RENAME, then run " +
            "deno task db:diff <name> again: it should say No changes.",
        );
      }
      if (left) {
        console.error(
          `\nApplied on the migrations' database, it still leaves this to do:\n${left}\n` +
            "pg-delta could not express the whole change: edit the migration by hand until " +
            "`deno task test` reports no drift.",
        );
        code = 1;
      } else {
        console.log(
          "Applied on a database built from the migrations, it leaves no drift.\n" +
            "Read it before you commit it: a rename comes out as a drop and an add (the data goes),\n" +
            "and test it on a database that holds rows (deno task test runs every migration).",
        );
      }
    }
  } finally {
    await both.drop();
  }
} catch (error) {
  console.error(`deno task db:diff: ${(error as Error).message}`);
  code = 1;
} finally {
  await host.close();
}
Deno.exit(code);

/** `<UTC yyyymmddhhmmss>_<name>.sql`, later than every existing migration (as the CLI's versions are). */
async function nextMigration(name: string): Promise<string> {
  const now = new Date().toISOString().replace(/\D/g, "").slice(0, 14);
  const last = (await sqlFiles(MIGRATIONS)).filter((file) => /^\d{14}_/.test(file)).at(-1)?.slice(0, 14) ??
    "0";
  const version = BigInt(now) > BigInt(last) ? now : String(BigInt(last) + 1n);
  return `${version}_${name}.sql`;
}

function migrationText(name: string, diff: string): string {
  return `-- ${name}
-- Generated by \`deno task db:diff ${name}\` from supabase/schemas/ (supabase db diff, pg-delta).
-- The schema files are the source: change them, not this file, once it has landed.
${diff}
`;
}
