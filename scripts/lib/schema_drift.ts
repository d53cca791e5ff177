// The declarative schema (supabase/schemas/) against the migrations (supabase/migrations/): a database
// built from each, compared by the Supabase CLI's bundled pg-delta (`supabase db diff --from <url>
// --to <url>`), which runs without Docker. Used by `deno task db:diff` to write the next migration and
// by `deno task test` to fail on drift.
//
// The diff's exit code is 0 whether or not the databases differ, so what it prints is what counts: no
// statement means no drift. --strict-coverage makes objects pg-delta cannot manage an error instead of
// leaving them out of the comparison unseen.
import { applySchemaFiles, type DatabaseHost, migrate } from "./database.ts";
import { supabaseWith } from "./supabase_cli.ts";

const ROOT = new URL("../../", import.meta.url);

/** The schemas the project owns; `auth`, `extensions` and the rest belong to Supabase. */
export const OWN_SCHEMAS = ["public", "private"];

/**
 * pg-delta's "review SQL" that turns `fromUrl`'s schemas into `toUrl`'s, trimmed; "" when they match.
 * Throws when the CLI fails (strict coverage refusing an object included), with what it said.
 */
export async function schemaDiff(fromUrl: string, toUrl: string): Promise<string> {
  const loopback = [fromUrl, toUrl].every((url) =>
    /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(new URL(url).hostname)
  );
  const result = await supabaseWith(
    // On loopback there is no TLS to try: without this the CLI's TLS warnings land in the output.
    loopback ? { PGSSLMODE: "disable" } : {},
    "db",
    "diff",
    "--from",
    fromUrl,
    "--to",
    toUrl,
    "--schema",
    OWN_SCHEMAS.join(","),
    "--strict-coverage",
  );
  if (!result.success) {
    throw new Error(`supabase db diff failed:\n${(result.stderr || result.stdout).trim()}`);
  }
  return result.stdout.trim();
}

export interface TwoDatabases {
  /** Built from the shim and supabase/migrations/. */
  migrations: string;
  /** Built from the shim and supabase/schemas/. */
  schemas: string;
  drop(): Promise<void>;
}

/**
 * A database from the migrations and one from the schema files of `root`, on `host`. `migrated`: a
 * database already built from those migrations (as `deno task test`'s, by `supabase db push`), used
 * instead of building one, and left alone.
 */
export async function buildBoth(
  host: DatabaseHost,
  name: string,
  { root = ROOT, migrated }: { root?: URL; migrated?: string } = {},
): Promise<TwoDatabases> {
  const names = { ...(migrated ? {} : { migrations: `${name}_migrations` }), schemas: `${name}_schemas` };
  const drop = async () => {
    for (const database of Object.values(names)) await host.dropDatabase(database);
  };
  try {
    const migrations = migrated ?? await host.createDatabase(names.migrations!);
    if (!migrated) await migrate(migrations, root);
    const schemas = await host.createDatabase(names.schemas);
    await applySchemaFiles(schemas, root);
    return { migrations, schemas, drop };
  } catch (error) {
    await drop();
    throw error;
  }
}

export interface Drift {
  /** What the schema files have that the migrations do not make (as SQL for the migrations' database). */
  schemaOnly: string;
  /** What the migrations make that the schema files do not declare (as SQL for the schema files'). */
  migrationsOnly: string;
}

/** Both directions, so that a change shows as what it is from either side; empty strings: no drift. */
export async function checkDrift(
  host: DatabaseHost,
  name: string,
  options: { root?: URL; migrated?: string } = {},
): Promise<Drift> {
  const both = await buildBoth(host, name, options);
  try {
    return {
      schemaOnly: await schemaDiff(both.migrations, both.schemas),
      migrationsOnly: await schemaDiff(both.schemas, both.migrations),
    };
  } finally {
    await both.drop();
  }
}

/** For a failing check: what differs, each direction under its own heading. */
export function describeDrift(drift: Drift): string {
  return [
    drift.schemaOnly &&
    `  supabase/schemas/ declares what no migration makes (run \`deno task db:diff <name>\`):\n${
      indent(drift.schemaOnly)
    }`,
    drift.migrationsOnly &&
    `  supabase/migrations/ make what supabase/schemas/ does not declare (edit the schema files):\n${
      indent(drift.migrationsOnly)
    }`,
  ].filter(Boolean).join("\n");
}

function indent(text: string): string {
  return text.split("\n").map((line) => `    ${line}`).join("\n");
}
