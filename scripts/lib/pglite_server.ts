// An embedded PostgreSQL for machines without a server: PGlite (PostgreSQL compiled to WebAssembly, run
// in this process, data in memory) behind the wire protocol on a free loopback port, so that everything
// else (the gateway, the tests, psql, the Supabase CLI) connects to it as to any PostgreSQL.
//
// PGlite is one session. Clients share it here one exchange at a time: a client holds the session from
// its first message to the Sync or simple Query that leaves no transaction open, and the others wait.
// So no client sees another's half-done statement or open transaction, and transactions never overlap:
// what races on a server runs one after the other here. A client that leaves with the session held has
// its work rolled back; one that holds it idle while others wait is disconnected after IDLE_HOLD_MS, as
// a server's idle_in_transaction_session_timeout would. Each connection starts from the database's
// settings and the session user, and its prepared statements go when it does. (@electric-sql/pglite-socket
// hands the session over between single messages instead: two postgres.js clients at once then fail
// with `portal "" does not exist`.)
import { PGlite } from "@electric-sql/pglite";
import { pgtap } from "@electric-sql/pglite-pgtap";

export interface EmbeddedPostgres {
  url: string;
  /** As `select version()` begins: "PostgreSQL 18.6 (PGlite 0.5.14)". */
  version: string;
  stop(): Promise<void>;
}

/** How long a client may hold the session idle (in a transaction, or mid-statement) while others wait. */
const IDLE_HOLD_MS = 5_000;

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const NOT_SUPPORTED = new Uint8Array([0x4e]); // "N": no TLS, no GSS encryption: plain, on loopback
// Message types. After Sync, Query, Flush, CopyDone or CopyFail the client waits for the answer.
const SYNC = 0x53, QUERY = 0x51, FLUSH = 0x48, TERMINATE = 0x58, PARSE = 0x50;
const EXCHANGE_ENDS = [SYNC, QUERY, FLUSH, 0x63, 0x66];
// What a new backend starts from: its session user (PGlite's is postgres; `default` does not bring it
// back there), the defaults, then the database's own settings (the Supabase shim puts `extensions` on
// the search_path there). RESET ALL leaves the role alone.
const NEW_SESSION = `
  set session authorization postgres;
  reset role;
  reset all;
  select set_config(split_part(setting, '=', 1), substr(setting, strpos(setting, '=') + 1), false)
  from pg_db_role_setting, unnest(setconfig) as setting
  where setdatabase = (select oid from pg_database where datname = current_database()) and setrole = 0;
`;
// PGlite cannot take COPY's data from a client: it stops for good. Refused before it gets there.
const COPY_FROM_CLIENT = /\bcopy\b[\s\S]*?\bfrom\s+stdin\b/i;

export async function startPglite(options: { idleHoldMs?: number } = {}): Promise<EmbeddedPostgres> {
  const db = await PGlite.create({ extensions: { pgtap } });
  const [{ version }] = (await db.query<{ version: string }>("select version()")).rows;
  const server = new SharedSession(db, options.idleHoldMs ?? IDLE_HOLD_MS);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) server.accept(conn);
  })().catch(() => {});

  return {
    url: `postgres://postgres@127.0.0.1:${listener.addr.port}/postgres`,
    version: version.replace(/ on .*$/, ""),
    async stop() {
      listener.close();
      await accepting;
      await server.close();
    },
  };
}

type IdleTimer = { timer?: ReturnType<typeof setTimeout> };

class SharedSession {
  #lock = new SessionLock();
  #connections = new Set<Deno.TcpConn>();
  #dead: string | undefined;

  constructor(readonly db: PGlite, readonly idleHoldMs: number) {}

  accept(conn: Deno.TcpConn): void {
    if (this.#dead) return closeQuietly(conn);
    conn.setNoDelay(true); // answers are small and awaited: no Nagle delay
    this.#connections.add(conn);
    this.#serve(conn).finally(() => this.#connections.delete(conn));
  }

  async close(): Promise<void> {
    for (const conn of this.#connections) closeQuietly(conn);
    await this.#lock.idle();
    if (!this.#dead) await this.db.close();
  }

  /** One protocol message through PGlite. If PGlite fails, it is gone: said once, and nobody waits on it. */
  async #run(message: Uint8Array): Promise<Uint8Array> {
    if (this.#dead) throw new Error(this.#dead);
    try {
      return await this.db.execProtocolRaw(message);
    } catch (error) {
      this.#dead = `the embedded PGlite stopped (${(error as Error).message}); restart the command`;
      console.error(this.#dead);
      for (const conn of this.#connections) closeQuietly(conn);
      throw error;
    }
  }

  /** One client connection: its messages, exchange by exchange, under the session lock. */
  async #serve(conn: Deno.TcpConn): Promise<void> {
    let release: (() => void) | undefined;
    let started = false;
    let skipUntilSync = false;
    let exchange: Uint8Array[] = [];
    const idle: IdleTimer = {};
    const statements = new Set<string>();
    try {
      for await (const message of messagesOf(conn, () => started)) {
        clearTimeout(idle.timer);
        // The startup message is an exchange of its own: the client waits for the session's parameters.
        let type = SYNC;
        const startup = !started;
        if (startup) {
          const code = readInt(message, 4);
          if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
            await writeAll(conn, NOT_SUPPORTED);
            continue;
          }
          if (code === CANCEL_REQUEST) return; // not supported: the statement runs to its end
          started = true;
        } else {
          type = message[0];
          if (type === TERMINATE) return;
          if (type === PARSE) statements.add(cString(message, 5));
        }
        exchange.push(message);
        if (!EXCHANGE_ENDS.includes(type)) continue;

        release ??= await this.#lock.acquire();
        if (startup) await this.#run(query(NEW_SESSION));
        const answers: Uint8Array[] = [];
        if (skipUntilSync || exchange.some(copiesFromClient)) {
          // As a server does after an error in an extended-protocol exchange: nothing more until Sync.
          if (!skipUntilSync) {
            answers.push(errorResponse("0A000", "COPY FROM STDIN is not supported by PGlite"));
          }
          skipUntilSync = type === FLUSH || (skipUntilSync && !exchange.some((part) => part[0] === SYNC));
          if (!skipUntilSync) answers.push(readyForQuery(this.db.isInTransaction()));
        } else {
          for (const part of exchange) answers.push(await this.#run(part));
        }
        exchange = [];
        await writeAll(conn, concat(...answers));
        // After a Flush the client goes on with the same statement: it keeps the session until its Sync.
        if (type !== FLUSH && !this.db.isInTransaction()) {
          release();
          release = undefined;
        } else {
          this.#watchIdleHolder(conn, idle);
        }
      }
    } catch {
      // A client that went away mid-exchange: what it left open is rolled back below.
    } finally {
      clearTimeout(idle.timer);
      if (started && !this.#dead) {
        release ??= await this.#lock.acquire();
        await this.#leave(statements).catch(() => {});
      }
      release?.();
      closeQuietly(conn);
    }
  }

  /** What a client leaves behind: an open or half-done transaction (rolled back), its prepared statements. */
  async #leave(statements: Set<string>): Promise<void> {
    if (this.db.isInTransaction() || statements.size) {
      await this.#run(query("rollback"));
      await this.#run(new Uint8Array([SYNC, 0, 0, 0, 4]));
      if (this.db.isInTransaction()) await this.#run(query("rollback"));
    }
    for (const name of statements) {
      if (name) await this.#run(query(`deallocate "${name.replaceAll('"', '""')}"`));
    }
  }

  /**
   * A client holding the session idle while others wait is disconnected, its work rolled back. The
   * timer is cleared when the client's next message arrives.
   */
  #watchIdleHolder(conn: Deno.TcpConn, idle: IdleTimer): void {
    idle.timer = setTimeout(async () => {
      if (!this.#lock.waiting) return this.#watchIdleHolder(conn, idle);
      await writeAll(
        conn,
        errorResponse(
          "25P03",
          `terminating connection: it held PGlite's only session idle for ${this.idleHoldMs} ms while others waited`,
          "FATAL",
        ),
      ).catch(() => {});
      closeQuietly(conn);
    }, this.idleHoldMs);
  }
}

function copiesFromClient(message: Uint8Array): boolean {
  if (message[0] === QUERY) return COPY_FROM_CLIENT.test(cString(message, 5));
  if (message[0] === PARSE) {
    const name = cString(message, 5);
    return COPY_FROM_CLIENT.test(cString(message, 5 + new TextEncoder().encode(name).length + 1));
  }
  return false;
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
  waiting = 0;

  async acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const previous = this.#tail;
    this.#tail = previous.then(() => held);
    this.waiting++;
    await previous;
    this.waiting--;
    return release;
  }

  idle(): Promise<void> {
    return this.#tail;
  }
}

function query(sql: string): Uint8Array {
  return message(QUERY, new TextEncoder().encode(`${sql}\0`));
}

function readyForQuery(inTransaction: boolean): Uint8Array {
  return message(0x5a, new TextEncoder().encode(inTransaction ? "T" : "I"));
}

function errorResponse(code: string, text: string, severity = "ERROR"): Uint8Array {
  const fields = `S${severity}\0V${severity}\0C${code}\0M${text}\0\0`;
  return message(0x45, new TextEncoder().encode(fields));
}

function message(type: number, body: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(5 + body.length);
  bytes[0] = type;
  new DataView(bytes.buffer).setInt32(1, 4 + body.length);
  bytes.set(body, 5);
  return bytes;
}

function cString(bytes: Uint8Array, offset: number): string {
  const end = bytes.indexOf(0, offset);
  return new TextDecoder().decode(bytes.subarray(offset, end < 0 ? bytes.length : end));
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
  for (let written = 0; written < bytes.length;) written += await conn.write(bytes.subarray(written));
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}
