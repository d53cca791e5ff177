// A PostgREST-compatible gateway for exactly what this project calls, so the functions' real
// supabase-js client runs against the real SQL without Docker:
//   POST   /rest/v1/rpc/<function>      named arguments as a JSON object
//   GET    /rest/v1/<table>?select=a,b&col=eq.value
//   DELETE /rest/v1/<table>?col=eq.value
// Like the platform, it resolves the role from the apikey (secret key -> service_role, publishable
// key -> anon) or from a verified user JWT (its `role` claim), runs each request in one transaction
// under that role with `request.jwt.claims` set, and maps errors as PostgREST documents.
import type { StepGate } from "./step_gate.ts";
import postgres from "postgres";
import { createLocalJWKSet, type JWK, jwtVerify } from "jose";

export interface GatewayOptions {
  databaseUrl: string;
  secretKey: string;
  publishableKey: string;
  jwks: { keys: JWK[] };
  /** Counts database round trips, for the benchmark. */
  /** Each query: its kind (rpc, select, delete) and the function or table it names. */
  onQuery?: (kind: string, target: string) => void;
  /** Race tests: every query passes it before it runs, and may be held there (step_gate.ts). */
  gate?: StepGate;
}

export interface RestGateway {
  handle(request: Request, path: string): Promise<Response>;
  close(): Promise<void>;
}

type Claims = Record<string, unknown>;
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export function createRestGateway(options: GatewayOptions): RestGateway {
  const sql = postgres(options.databaseUrl, { max: 8, onnotice: () => {}, idle_timeout: 30 });
  const jwks = createLocalJWKSet(options.jwks);
  const signatures = new Map<
    string,
    Promise<{ names: string[]; types: string[]; returnsVoid: boolean; returnsSet: boolean } | null>
  >();

  async function authenticate(request: Request): Promise<{ role: string; claims: Claims } | Response> {
    const apikey = request.headers.get("apikey");
    const bearer = request.headers.get("authorization")?.replace(/^Bearer\s+/i, "");
    const keyRole = apikey === options.secretKey
      ? "service_role"
      : apikey === options.publishableKey
      ? "anon"
      : null;
    if (!keyRole) {
      return pgrstError(
        401,
        "PGRST301",
        "Invalid API key",
        "Double check your Supabase `anon` or `service_role` API key.",
      );
    }
    if (bearer && bearer !== apikey && bearer.split(".").length === 3) {
      try {
        const { payload } = await jwtVerify(bearer, jwks);
        return { role: String(payload.role ?? "anon"), claims: payload as Claims };
      } catch (error) {
        return pgrstError(401, "PGRST301", (error as Error).message, null);
      }
    }
    return { role: keyRole, claims: { role: keyRole } };
  }

  function signature(name: string) {
    if (!signatures.has(name)) {
      signatures.set(
        name,
        sql`
          select p.proargnames as names,
                 array(select format_type(t, null) from unnest(p.proargtypes) as t) as types,
                 p.prorettype = 'void'::regtype as returns_void,
                 p.proretset as returns_set
          from pg_proc p join pg_namespace n on n.oid = p.pronamespace
          where n.nspname = 'public' and p.proname = ${name}
        `.then((rows) =>
          rows.length === 1
            ? {
              names: rows[0].names ?? [],
              types: rows[0].types,
              returnsVoid: rows[0].returns_void,
              returnsSet: rows[0].returns_set,
            }
            : null
        ),
      );
    }
    return signatures.get(name)!;
  }

  // One round trip per request: begin, the role and claims, the query and commit are pipelined on one
  // connection. When a statement fails, the rest run in an aborted transaction and commit rolls it back.
  // PostgREST begins with an explicit access mode (READ WRITE for a volatile function: hasql-transaction's
  // "BEGIN ... READ WRITE"), which a standby refuses with 25006; this plain begin follows the database's
  // default_transaction_read_only instead, which is how a test makes one database refuse writes (25006).
  // The SQLSTATE, and the HTTP status below, are the same either way.
  async function run(
    role: string,
    claims: Claims,
    kind: string,
    target: string,
    query: (db: postgres.ReservedSql) => postgres.PendingQuery<postgres.Row[]>,
  ) {
    options.onQuery?.(kind, target);
    await options.gate?.pass(`${kind} ${target}`);
    const db = await sql.reserve();
    try {
      const settled = await Promise.allSettled([
        db`begin`,
        db`select set_config('role', ${role}, true), set_config('request.jwt.claims', ${
          JSON.stringify(claims)
        }, true)`,
        query(db),
        db`commit`,
      ]);
      const failed = settled.find((result) => result.status === "rejected");
      if (failed) throw failed.reason;
      return (settled[2] as PromiseFulfilledResult<postgres.RowList<postgres.Row[]>>).value;
    } finally {
      db.release();
    }
  }

  async function rpc(name: string, request: Request, role: string, claims: Claims): Promise<Response> {
    const fn = IDENTIFIER.test(name) ? await signature(name) : null;
    const args = await request.json().catch(() => null) as Record<string, unknown> | null;
    if (!fn || !args || typeof args !== "object") {
      return pgrstError(
        404,
        "PGRST202",
        `Could not find the function public.${name} in the schema cache`,
        null,
      );
    }
    const unknown = Object.keys(args).filter((arg) => !fn.names.includes(arg));
    if (unknown.length) {
      return pgrstError(
        404,
        "PGRST202",
        `Could not find the function public.${name}(${Object.keys(args).join(", ")}) in the schema cache`,
        null,
      );
    }
    const names = Object.keys(args);
    const call = `public.${name}(${
      names.map((arg, i) => `${arg} => $${i + 1}::${fn.types[fn.names.indexOf(arg)]}`).join(", ")
    })`;
    // As PostgREST does: JSON values for json/jsonb and array parameters (postgres.js serialises them),
    // text for everything else.
    const values = names.map((arg) => {
      const value = args[arg];
      if (value === null) return null;
      return /^jsonb?$|\[\]$/.test(fn.types[fn.names.indexOf(arg)]) ? value : String(value);
    });
    const rows = await run(
      role,
      claims,
      "rpc",
      name,
      (tx) =>
        tx.unsafe(
          fn.returnsVoid
            ? `select ${call}`
            // A set-returning function answers a JSON array of its rows, in their order, as PostgREST does.
            : fn.returnsSet
            ? `select coalesce(jsonb_agg(to_jsonb(r)), '[]') as result from ${call} as r`
            : `select to_jsonb(${call}) as result`,
          values as postgres.ParameterOrJSON<never>[],
        ),
    ) as { result?: unknown }[];
    return fn.returnsVoid ? new Response(null, { status: 204 }) : Response.json(rows[0]?.result ?? null);
  }

  async function table(name: string, request: Request, role: string, claims: Claims): Promise<Response> {
    const params = new URL(request.url).searchParams;
    const filters: string[] = [];
    const values: string[] = [];
    for (const [column, filter] of params) {
      if (column === "select") continue;
      if (!IDENTIFIER.test(column) || !filter.startsWith("eq.")) {
        return pgrstError(400, "PGRST100", `unsupported filter on "${column}"`, null);
      }
      values.push(filter.slice(3));
      filters.push(`"${column}" = $${values.length}`);
    }
    const where = filters.length ? ` where ${filters.join(" and ")}` : "";
    if (request.method === "GET") {
      const columns = (params.get("select") ?? "*").split(",").map((column) => column.trim());
      if (!columns.every((column) => column === "*" || IDENTIFIER.test(column))) {
        return pgrstError(400, "PGRST100", "unsupported select", null);
      }
      const list = columns.map((column) => column === "*" ? "*" : `"${column}"`).join(", ");
      const rows = await run(
        role,
        claims,
        "select",
        name,
        (tx) => tx.unsafe(`select ${list} from public."${name}"${where}`, values),
      );
      return Response.json(rows);
    }
    await run(
      role,
      claims,
      "delete",
      name,
      (tx) => tx.unsafe(`delete from public."${name}"${where}`, values),
    );
    return new Response(null, { status: 204 });
  }

  return {
    async handle(request, path) {
      const auth = await authenticate(request);
      if (auth instanceof Response) return auth;
      const [, resource, name] = path.match(/^\/(rpc\/)?([^/]+)$/) ?? [];
      try {
        if (resource && request.method === "POST") return await rpc(name, request, auth.role, auth.claims);
        if (
          !resource && name && IDENTIFIER.test(name) &&
          (request.method === "GET" || request.method === "DELETE")
        ) {
          return await table(name, request, auth.role, auth.claims);
        }
        return pgrstError(404, "PGRST125", `Invalid path ${path}`, null);
      } catch (error) {
        return fromPostgresError(error, auth.role);
      }
    },
    close: () => sql.end({ timeout: 2 }),
  };
}

/**
 * PostgREST's SQLSTATE -> HTTP status table, as its docs give it (References > "Errors", HTTP Status
 * Codes; Supabase's "Error Codes" page repeats it). Kept exact, odd entries included: a read-only
 * database's 25006 is 405, class 57 (a server shutting down, 57P01-57P03) 500, 53 (disk full, out of
 * memory, too many connections) and 08 503. The functions must not read "unavailable" from these
 * statuses: _shared/database.ts maps such errors by their SQLSTATE.
 */
export function httpStatusFor(sqlstate: string, role: string): number {
  if (/^PT\d{3}$/.test(sqlstate)) return Number(sqlstate.slice(2));
  const exact: Record<string, number> = {
    "23503": 409,
    "23505": 409,
    "25006": 405,
    "P0001": 400,
    "42883": 404,
    "42P01": 404,
    "42P17": 500,
    "53400": 500,
  };
  if (sqlstate === "42501") return role === "anon" ? 401 : 403;
  if (exact[sqlstate]) return exact[sqlstate];
  const byClass: Record<string, number> = {
    "08": 503,
    "09": 500,
    "0L": 403,
    "0P": 403,
    "25": 500,
    "28": 403,
    "2D": 500,
    "38": 500,
    "39": 500,
    "3B": 500,
    "40": 500,
    "53": 503,
    "54": 500,
    "55": 500,
    "57": 500,
    "58": 500,
    "F0": 500,
    "HV": 500,
    "P0": 500,
    "XX": 500,
  };
  return byClass[sqlstate.slice(0, 2)] ?? 400;
}

function fromPostgresError(error: unknown, role: string): Response {
  const pg = error as { code?: string; message?: string; detail?: string; hint?: string };
  if (!pg.code || !/^[0-9A-Z]{5}$/.test(pg.code)) {
    // The database could not be reached at all: PostgREST answers 503 (PGRST000/001).
    return pgrstError(
      503,
      "PGRST001",
      "Database client error. Retrying the connection.",
      String(pg.message ?? error),
    );
  }
  return Response.json(
    { code: pg.code, message: pg.message ?? "", details: pg.detail ?? null, hint: pg.hint ?? null },
    { status: httpStatusFor(pg.code, role) },
  );
}

function pgrstError(status: number, code: string, message: string, details: string | null): Response {
  return Response.json({ code, message, details, hint: null }, { status });
}
