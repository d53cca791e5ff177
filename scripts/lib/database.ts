// Throw-away PostgreSQL databases with the Supabase shim and the migrations, on a PostgreSQL server or,
// where there is none, on an embedded PGlite. The test command applies the migrations with the
// Supabase CLI (`supabase db push`); the local stack and the benchmark apply them here, in the CLI's
// order (by file name, i.e. by version prefix), without needing Node.js.
import postgres from "postgres";
import { type EmbeddedPostgres, startPglite } from "./pglite_server.ts";

const ROOT = new URL("../../", import.meta.url);
export const DEFAULT_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres";

export function adminUrl(): string {
  return Deno.env.get("DATABASE_URL") || DEFAULT_ADMIN_URL;
}

async function createDatabase(name: string): Promise<string> {
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

async function dropDatabase(name: string): Promise<void> {
  const admin = postgres(adminUrl(), { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`drop database if exists "${name}" with (force)`);
  } finally {
    await admin.end();
  }
}

/** Where throw-away databases are made: a PostgreSQL server, or PGlite in this process. */
export interface DatabaseHost {
  /** For summaries: "PostgreSQL 15" or "PostgreSQL 18 (PGlite)". */
  label: string;
  /** "PostgreSQL 15.20" or "PostgreSQL 18.6 (PGlite 0.5.14)". */
  version: string;
  /** PGlite: one session that every connection shares, so transactions run one after another. */
  oneSession: boolean;
  createDatabase(name: string): Promise<string>;
  dropDatabase(name: string): Promise<void>;
  /** Drops what is left and, for PGlite, stops it. */
  close(): Promise<void>;
}

/**
 * The PostgreSQL server to use, and why: DATABASE_URL (which then must answer: it was asked for), else
 * the local server if it answers or its cluster can be started; `host` is undefined when there is none.
 */
export async function findServer(): Promise<{ host?: DatabaseHost; why: string }> {
  const url = adminUrl();
  if (Deno.env.get("DATABASE_URL")) {
    const failure = await connectFailure(url);
    if (failure) {
      throw new Error(
        `PostgreSQL at DATABASE_URL (${redactPassword(url)}) cannot be used: ${failure}.\n` +
          "  Start it, set DATABASE_URL to a server where this user may create databases, or unset it\n" +
          "  (the local server, else the embedded PGlite, is then used; --pglite forces PGlite).",
      );
    }
    return { host: await serverHost(url), why: `DATABASE_URL is set (${redactPassword(url)})` };
  }
  if (!(await connectFailure(url))) {
    return { host: await serverHost(url), why: `a PostgreSQL server answers at ${url}` };
  }
  if (await startLocalCluster() && !(await connectFailure(url, 20))) {
    return { host: await serverHost(url), why: `the local PostgreSQL at ${url} was down and is started` };
  }
  return { why: `no PostgreSQL server answers at ${url} (set DATABASE_URL for another one)` };
}

/** A server as a host; what it created and did not drop is dropped at close. */
export async function serverHost(url: string): Promise<DatabaseHost> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const [{ server_version }] = await sql`show server_version`;
  await sql.end();
  const version = `PostgreSQL ${String(server_version).split(" ")[0]}`;
  const created = new Set<string>();
  return {
    label: version.replace(/\.\d+$/, ""),
    version,
    oneSession: false,
    async createDatabase(name) {
      created.add(name);
      return await createDatabase(name);
    },
    async dropDatabase(name) {
      await dropDatabase(name);
      created.delete(name);
    },
    async close() {
      for (const name of created) await dropDatabase(name);
      created.clear();
    },
  };
}

/** PGlite in this process: each database is a fresh in-memory instance on its own loopback port. */
export async function pgliteHost(): Promise<DatabaseHost> {
  const instances = new Map<string, EmbeddedPostgres>();
  const first = await startPglite();
  const version = first.version;
  let spare: EmbeddedPostgres | undefined = first;
  return {
    label: `${version.replace(/^(PostgreSQL \d+).*$/, "$1")} (PGlite)`,
    version,
    oneSession: true,
    async createDatabase(name) {
      const instance = spare ?? await startPglite();
      spare = undefined;
      instances.set(name, instance);
      return instance.url;
    },
    async dropDatabase(name) {
      await instances.get(name)?.stop();
      instances.delete(name);
    },
    async close() {
      await Promise.all(
        [...instances.values(), ...(spare ? [spare] : [])].map((instance) => instance.stop()),
      );
      instances.clear();
    },
  };
}

/**
 * The database `deno task dev` and `deno task bench` run on, and why: PGlite when asked (`--pglite`),
 * else the server findServer finds, else PGlite.
 */
export async function chooseHost(options: { pglite: boolean }): Promise<{ host: DatabaseHost; why: string }> {
  if (options.pglite) return { host: await pgliteHost(), why: "--pglite was given" };
  const server = await findServer();
  return server.host ? { host: server.host, why: server.why } : { host: await pgliteHost(), why: server.why };
}

/**
 * What a Supabase database has and plain PostgreSQL lacks (scripts/sql/supabase_shim.sql). It puts
 * `extensions` on the database's search_path, which every new connection then starts with (on PGlite
 * too: pglite_server.ts gives each connection the database's settings).
 */
export async function applyShim(databaseUrl: string): Promise<void> {
  await runSqlFile(databaseUrl, "scripts/sql/supabase_shim.sql");
}

/** The API roles' default grants of Supabase projects made before #45329 (the test command's second engine). */
export async function applyLegacyGrants(databaseUrl: string): Promise<void> {
  await runSqlFile(databaseUrl, "scripts/sql/supabase_legacy_grants.sql");
}

/** One SQL file of this checkout, run as it is on one connection. */
async function runSqlFile(databaseUrl: string, path: string): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await sql.unsafe(await Deno.readTextFile(new URL(path, ROOT)));
  } finally {
    await sql.end();
  }
}

/** Applies the shim and every migration of `root` (this checkout by default). */
export async function migrate(databaseUrl: string, root: URL = ROOT): Promise<string[]> {
  return await applySqlFiles(databaseUrl, new URL("supabase/migrations/", root), "migration");
}

/**
 * Applies the shim and the declarative schema, supabase/schemas/*.sql, in file-name order (the order
 * `supabase db diff` uses, and config.toml's schema_paths names).
 */
export async function applySchemaFiles(databaseUrl: string, root: URL = ROOT): Promise<string[]> {
  return await applySqlFiles(databaseUrl, new URL("supabase/schemas/", root), "schema file");
}

/** The shim, then each .sql file of `dir` in file-name order, each in a transaction of its own. */
async function applySqlFiles(databaseUrl: string, dir: URL, what: string): Promise<string[]> {
  await applyShim(databaseUrl);
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const applied: string[] = [];
  try {
    for (const name of await sqlFiles(dir)) {
      try {
        await sql.begin((tx) => tx.unsafe(Deno.readTextFileSync(new URL(name, dir))));
      } catch (error) {
        throw new Error(`${what} ${name} failed: ${(error as Error).message}`);
      }
      applied.push(name);
    }
  } finally {
    await sql.end();
  }
  return applied;
}

/** The .sql files of `dir`, sorted by name (for migrations, by version prefix). */
export async function sqlFiles(dir: URL): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && entry.name.endsWith(".sql")) names.push(entry.name);
  }
  return names.sort();
}

/** Why the server does not answer a query (in a few seconds at most per attempt); undefined when it does. */
async function connectFailure(url: string, attempts = 1): Promise<string | undefined> {
  let failure: string | undefined;
  for (let attempt = 0; attempt < attempts; attempt++) {
    const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
    let timer: ReturnType<typeof setTimeout> | undefined;
    // postgres.js keeps retrying a host that never answers: the deadline is ours.
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no answer within 4 s")), 4_000);
    });
    try {
      await Promise.race([sql`select 1`, deadline]);
      return undefined;
    } catch (error) {
      failure = (error as Error).message;
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      clearTimeout(timer);
      await sql.end({ timeout: 0 }).catch(() => {});
    }
  }
  return failure;
}

async function startLocalCluster(): Promise<boolean> {
  try {
    const list = await new Deno.Command("pg_lsclusters", { args: ["--no-header"], stderr: "null" }).output();
    const first = new TextDecoder().decode(list.stdout).trim().split(/\s+/);
    if (first.length < 2) return false;
    console.error(`PostgreSQL is down; starting cluster ${first[0]}/${first[1]}`);
    const start = await new Deno.Command("pg_ctlcluster", {
      args: ["--skip-systemctl-redirect", first[0], first[1], "start"],
    }).output();
    return start.success;
  } catch {
    return false;
  }
}

export function redactPassword(url: string): string {
  return url.replace(/\/\/([^:/@]+):[^@]*@/, "//$1:***@");
}
