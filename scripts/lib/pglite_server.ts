// An embedded PostgreSQL for machines without a server: PGlite (PostgreSQL compiled to WebAssembly, run
// in this process, data in memory) behind the wire protocol on a free loopback port, so that everything
// else (the gateway, the tests, psql, the Supabase CLI) connects to it as to any PostgreSQL.
//
// PGlite is one session. Clients share it here one exchange at a time: a client holds the session from
// its first message to the Sync or simple Query that leaves no transaction open, and the others wait.
// So no client ever sees another's half-done statement or open transaction, and transactions never
// overlap: what races on a server runs one after the other here. Session settings are shared too: each
// new connection starts from the database's defaults (RESET ALL, then ALTER DATABASE ... SET), as a new
// backend would, but what a client SETs for its whole session is seen by the others until then. (@electric-sql/pglite-socket's
// multiplexer passes the session on between single messages, so two clients' extended-protocol
// messages interleave and fail with `portal "" does not exist`: pglite_server_test.ts shows both.)
import { PGlite } from "@electric-sql/pglite";
import { pgtap } from "@electric-sql/pglite-pgtap";

export interface EmbeddedPostgres {
  url: string;
  /** As `select version()` begins: "PostgreSQL 18.6 (PGlite 0.5.14)". */
  version: string;
  stop(): Promise<void>;
}

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const NOT_SUPPORTED = new Uint8Array([0x4e]); // "N": no TLS, no GSS encryption: plain, on loopback
// Messages after which the client waits for the answer: the end of an exchange.
const SYNC = 0x53, QUERY = 0x51, FLUSH = 0x48, TERMINATE = 0x58, COPY_DONE = 0x63, COPY_FAIL = 0x66;
// What a new backend starts from: the defaults, then the database's own settings (the Supabase shim
// puts `extensions` on the search_path there; the Supabase CLI's connections set it to `public`).
const NEW_SESSION = `
  reset all;
  select set_config(split_part(setting, '=', 1), substr(setting, strpos(setting, '=') + 1), false)
  from pg_db_role_setting, unnest(setconfig) as setting
  where setdatabase = (select oid from pg_database where datname = current_database()) and setrole = 0;
`;

export async function startPglite(): Promise<EmbeddedPostgres> {
  const db = await PGlite.create({ extensions: { pgtap } });
  const [{ version }] = (await db.query<{ version: string }>("select version()")).rows;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const session = new SessionLock();
  const connections = new Set<Deno.Conn>();
  const served = (async () => {
    for await (const conn of listener) {
      conn.setNoDelay(true); // answers are small and awaited: no Nagle delay
      connections.add(conn);
      serve(db, session, conn).finally(() => connections.delete(conn));
    }
  })().catch(() => {});

  return {
    url: `postgres://postgres@127.0.0.1:${listener.addr.port}/postgres`,
    version: version.replace(/ on .*$/, ""),
    async stop() {
      listener.close();
      for (const conn of connections) closeQuietly(conn);
      await served;
      await session.idle();
      await db.close();
    },
  };
}

/** One client connection: its messages, exchange by exchange, under the session lock. */
async function serve(db: PGlite, session: SessionLock, conn: Deno.Conn): Promise<void> {
  let release: (() => void) | undefined;
  let started = false;
  let exchange: Uint8Array[] = [];
  try {
    for await (const message of messagesOf(conn, () => started)) {
      // The startup message is an exchange of its own: the client waits for the session's parameters.
      let type = SYNC;
      const startup = !started;
      if (startup) {
        const code = readInt(message, 4);
        if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
          await writeAll(conn, NOT_SUPPORTED);
          continue;
        }
        if (code === CANCEL_REQUEST) return; // not supported: the query runs to its end
        started = true;
      } else {
        type = message[0];
        if (type === TERMINATE) return;
      }
      exchange.push(message);
      if (![SYNC, QUERY, FLUSH, COPY_DONE, COPY_FAIL].includes(type)) continue;

      release ??= await session.acquire();
      if (startup) await db.exec(NEW_SESSION);
      const answers: Uint8Array[] = [];
      for (const part of exchange) answers.push(await db.execProtocolRaw(part));
      exchange = [];
      await writeAll(conn, concat(...answers));
      // After a Flush the client goes on with the same statement: keep the session until its Sync.
      if (type !== FLUSH && !db.isInTransaction()) {
        release();
        release = undefined;
      }
    }
  } catch {
    // A client that goes away mid-exchange: what it left open is rolled back below.
  } finally {
    if (release) {
      if (db.isInTransaction()) await db.exec("rollback").catch(() => {});
      release();
    }
    closeQuietly(conn);
  }
}

/** Whole protocol messages from the connection: `length` first until the startup, `type, length` after. */
async function* messagesOf(conn: Deno.Conn, typed: () => boolean): AsyncGenerator<Uint8Array> {
  let buffer: Uint8Array = new Uint8Array(0);
  for await (const chunk of conn.readable) {
    buffer = concat(buffer, chunk);
    for (;;) {
      const header = typed() ? 1 : 0;
      if (buffer.length < header + 4) break;
      const size = header + readInt(buffer, header);
      if (buffer.length < size) break;
      yield buffer.slice(0, size);
      buffer = buffer.slice(size);
    }
  }
}

/** A FIFO mutex: whoever holds it is the session's only client. */
class SessionLock {
  #tail: Promise<void> = Promise.resolve();

  acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const ready = this.#tail.then(() => release);
    this.#tail = this.#tail.then(() => held);
    return ready;
  }

  idle(): Promise<void> {
    return this.#tail;
  }
}

function readInt(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getInt32(offset);
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const joined = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.length;
  }
  return joined;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  if (!bytes.length) return;
  for (let written = 0; written < bytes.length;) written += await conn.write(bytes.subarray(written));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
