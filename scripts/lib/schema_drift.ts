// The declarative schema (supabase/schemas/) against the migrations (supabase/migrations/): a database
// built from each, compared by the Supabase CLI's bundled pg-delta (`supabase db diff --from <url>
// --to <url>`), which runs without Docker. Used by `deno task db:diff` to write the next migration and
// by `deno task test` to fail on drift.
//
// The diff's exit code is 0 whether or not the databases differ, so what it prints is what counts: no
// statement means no drift. --strict-coverage makes objects pg-delta cannot manage an error instead of
// leaving them out of the comparison unseen.
import postgres from "postgres";
import { applySchemaFiles, type DatabaseHost, migrate } from "./database.ts";
import { supabaseWith } from "./supabase_cli.ts";
import { LOOPBACK } from "../../supabase/functions/_shared/config.ts";

const ROOT = new URL("../../", import.meta.url);

/** The schemas the project owns; `auth`, `extensions` and the rest belong to Supabase. */
export const OWN_SCHEMAS = ["public", "private"];

/**
 * pg-delta's "review SQL" that turns `fromUrl`'s schemas into `toUrl`'s, trimmed; "" when they match.
 * Throws when the CLI fails (strict coverage refusing an object included), with what it said.
 */
export async function schemaDiff(fromUrl: string, toUrl: string): Promise<string> {
  const [from, to] = [new URL(fromUrl), new URL(toUrl)];
  const loopback = [from, to].every((url) => LOOPBACK.test(url.hostname));
  // The password goes in the environment, not on a command line that `ps` shows (both are one server's).
  const password = decodeURIComponent(from.password || to.password);
  from.password = to.password = "";
  const result = await supabaseWith(
    {
      // On loopback there is no TLS to try: without this the CLI's TLS warnings land in the output.
      ...(loopback ? { PGSSLMODE: "disable" } : {}),
      ...(password ? { PGPASSWORD: password } : {}),
    },
    "db",
    "diff",
    "--from",
    from.toString(),
    "--to",
    to.toString(),
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
  /**
   * What pg-delta does not compare, from the catalogs: objects outside `public` and `private` (schemas,
   * extensions, triggers on auth.users, grants on Supabase's objects, ...) and the order of our tables'
   * columns. Each line names the side that has it.
   */
  catalog: string[];
}

// pg-delta compares OWN_SCHEMAS only, and not the order of columns. A schema file or a migration can
// still reach further (a trigger on auth.users, a grant to anon on auth.users, an extension, a schema
// of its own), so these facts are read from both databases and must be equal too. Roles are
// cluster-wide: a role created by one side exists for both, and is not compared. Grants are sorted,
// since their order in an ACL follows the order they were given in.
const CATALOG_FACTS = `
  with own(nspname) as (select unnest($1::text[])),
  supabase(nspname) as (values ('pg_catalog'), ('information_schema'), ('pg_toast'), ('supabase_migrations')),
  theirs as (
    select oid, nspname, nspacl from pg_namespace
    where nspname not like 'pg\\_%' and nspname not in (select nspname from own union all select nspname from supabase)
  )
  select 'schema ' || n.nspname || coalesce(' grants ' || (select string_agg(i::text, ',' order by i::text) from unnest(n.nspacl) i), '')
    from theirs n
  union all select 'extension ' || extname || ' in schema ' || extnamespace::regnamespace from pg_extension
  union all select 'database grants ' || coalesce((select string_agg(i::text, ',' order by i::text) from unnest(datacl) i), 'default')
    from pg_database where datname = current_database()
  union all select 'relation ' || c.oid::regclass || ' (' || c.relkind::text || ')'
      || coalesce(' grants ' || (select string_agg(i::text, ',' order by i::text) from unnest(c.relacl) i), '')
    from pg_class c join theirs n on n.oid = c.relnamespace
  union all select 'column ' || c.oid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
      || coalesce(' grants ' || (select string_agg(i::text, ',' order by i::text) from unnest(a.attacl) i), '')
    from pg_attribute a join pg_class c on c.oid = a.attrelid join theirs n on n.oid = c.relnamespace
    where a.attnum > 0 and not a.attisdropped
  union all select 'function ' || p.oid::regprocedure || ' ' || md5(coalesce(p.prosrc, ''))
      || coalesce(' grants ' || (select string_agg(i::text, ',' order by i::text) from unnest(p.proacl) i), '')
    from pg_proc p join theirs n on n.oid = p.pronamespace
  union all select 'trigger ' || pg_get_triggerdef(t.oid)
    from pg_trigger t join pg_class c on c.oid = t.tgrelid join theirs n on n.oid = c.relnamespace
    where not t.tgisinternal
  union all select 'columns of ' || c.oid::regclass || ': ' || string_agg(a.attname, ', ' order by a.attnum)
    from pg_attribute a join pg_class c on c.oid = a.attrelid join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in (select nspname from own) and a.attnum > 0 and not a.attisdropped
      and c.relkind in ('r', 'p', 'v', 'm', 'f')
    group by c.oid`;

async function catalogFacts(url: string): Promise<Set<string>> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    // An empty search_path, so that every name comes out schema-qualified, whatever the database's path.
    const rows = await sql.begin(async (tx) => {
      await tx.unsafe("set local search_path = ''");
      return await tx.unsafe(CATALOG_FACTS, [OWN_SCHEMAS]);
    });
    return new Set(rows.map((row) => String(Object.values(row)[0])));
  } finally {
    await sql.end();
  }
}

/** The catalog facts only one of the two databases has, each with the side that has it. */
async function catalogDrift(migrations: string, schemas: string): Promise<string[]> {
  const [m, s] = await Promise.all([catalogFacts(migrations), catalogFacts(schemas)]);
  return [
    ...[...s].filter((fact) => !m.has(fact)).map((fact) => `only supabase/schemas/: ${fact}`),
    ...[...m].filter((fact) => !s.has(fact)).map((fact) => `only supabase/migrations/: ${fact}`),
  ].sort();
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
      catalog: await catalogDrift(both.migrations, both.schemas),
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
    drift.catalog.length > 0 &&
    `  what pg-delta does not compare differs (outside ${OWN_SCHEMAS.join(" and ")}, or column order; ` +
      `write the migration by hand):\n${indent(drift.catalog.join("\n"))}`,
  ].filter(Boolean).join("\n");
}

function indent(text: string): string {
  return text.split("\n").map((line) => `    ${line}`).join("\n");
}
