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
// settings and the session user; when it goes, so do its prepared statements and the session settings it
// leaves behind (a role, session_replication_role, default_transaction_read_only: anything SET without
// LOCAL), before any other client's next exchange. (@electric-sql/pglite-socket
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
const SYNC = 0x53, QUERY = 0x51, FLUSH = 0x48, TERMINATE = 0x58, PARSE = 0x50, CLOSE = 0x43;
const STATEMENT = 0x53, PARSE_COMPLETE = 0x31, CLOSE_COMPLETE = 0x33;
// Longer messages than this are not the protocol as our clients speak it: the connection is closed.
const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;
const EXCHANGE_ENDS = [SYNC, QUERY, FLUSH, 0x63, 0x66];
// What a new backend starts from: its session user (PGlite's is postgres; `default` does not bring it
// back there), the defaults, then the database's own settings (the Supabase shim puts `extensions` on
// the search_path there). RESET ALL leaves the role alone. Run when a client starts and when one leaves:
// DISCARD ALL would do it too, but also drop the prepared statements, temporary tables and locks of the
// clients still connected, and it cannot run inside their transactions.
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
    let exchange: Uint8Array[] = [];
    const idle: IdleTimer = {};
    const statements = new Set<string>();
    // While it holds the session, the client's every pause counts against it, even mid-exchange.
    const watchWhileHolding = () => release && this.#watchIdleHolder(conn, idle);
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
        }
        exchange.push(refuseCopyFromClient(message));
        if (!EXCHANGE_ENDS.includes(type)) {
          watchWhileHolding();
          continue;
        }

        release ??= await this.#lock.acquire();
        if (startup) await this.#run(query(NEW_SESSION));
        const answers: Uint8Array[] = [];
        for (const part of exchange) {
          const answer = await this.#run(part);
          noteStatement(statements, part, answer);
          answers.push(answer);
        }
        exchange = [];
        await writeAll(conn, concat(...answers));
        // After a Flush the client goes on with the same statement: it keeps the session until its Sync.
        if (type !== FLUSH && !this.db.isInTransaction()) {
          release();
          release = undefined;
        }
        watchWhileHolding();
      }
    } catch {
      // A client that went away mid-exchange, or sent what is not the protocol: cleaned up below.
    } finally {
      clearTimeout(idle.timer);
      if (started && !this.#dead) {
        const holding = release !== undefined;
        release ??= await this.#lock.acquire();
        await this.#leave(statements, holding).catch(() => {});
      }
      release?.();
      closeQuietly(conn);
    }
  }

  /**
   * What a client leaves behind: a transaction, open or implicit (after a Flush), rolled back; its
   * prepared statements; its session settings, back to the database's (those of the clients still
   * connected go too: one session holds one value of each); and, when it was the last client, the
   * session's temporary tables, cursors, listeners and advisory locks, which cannot be told apart by
   * client while others are connected. Done under the session lock, before anyone's next exchange.
   */
  async #leave(statements: Set<string>, holding: boolean): Promise<void> {
    if (holding || this.db.isInTransaction()) {
      await this.#run(query("rollback"));
      await this.#run(message(SYNC, new Uint8Array()));
      if (this.db.isInTransaction()) await this.#run(query("rollback"));
    }
    for (const name of statements) await this.#run(query(`deallocate "${name.replaceAll('"', '""')}"`));
    await this.#run(query(NEW_SESSION));
    if (this.#connections.size === 1) {
      await this.#run(query("discard temp; close all; unlisten *; select pg_advisory_unlock_all()"));
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

/**
 * A COPY FROM STDIN would stop PGlite for good: its text is replaced with a statement that fails as a
 * server refuses what it does not support, so PGlite itself answers the error and skips to the Sync,
 * and the rest of the exchange behaves as on a server.
 */
function refuseCopyFromClient(sent: Uint8Array): Uint8Array {
  const type = sent[0];
  if (type !== QUERY && type !== PARSE) return sent;
  const name = type === PARSE ? cString(sent, 5) : undefined;
  const textAt = name === undefined ? 5 : 5 + new TextEncoder().encode(name).length + 1;
  if (!COPY_FROM_CLIENT.test(withoutCommentsAndStrings(cString(sent, textAt)))) return sent;
  const refusal = "do $$begin raise exception using errcode = '0A000', " +
    "message = 'COPY FROM STDIN is not supported by PGlite'; end$$";
  if (type === QUERY) return query(refusal);
  // Parse: the statement name, the refusal, and no parameter types.
  return message(PARSE, new TextEncoder().encode(`${name}\0${refusal}\0\0\0`));
}

/** SQL with its comments (nested block comments too), strings and quoted names blanked out, for matching. */
function withoutCommentsAndStrings(sql: string): string {
  let out = "";
  for (let i = 0; i < sql.length;) {
    const rest = sql.slice(i);
    const skip = rest.startsWith("--")
      ? rest.indexOf("\n") + 1 || rest.length
      : rest.startsWith("/*")
      ? blockCommentLength(rest)
      : rest[0] === "'" || rest[0] === '"'
      ? quotedLength(rest, rest[0])
      : rest[0] === "$"
      ? dollarQuotedLength(rest)
      : 0;
    out += skip ? " " : rest[0];
    i += skip || 1;
  }
  return out;
}

function blockCommentLength(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length - 1; i++) {
    if (text.startsWith("/*", i)) {
      depth++;
      i++;
    } else if (text.startsWith("*/", i)) {
      depth--;
      i++;
      if (depth === 0) return i + 1;
    }
  }
  return text.length;
}

function quotedLength(text: string, quote: string): number {
  for (let i = 1; i < text.length; i++) {
    if (text[i] === quote && text[i + 1] === quote) i++;
    else if (text[i] === quote) return i + 1;
  }
  return text.length;
}

function dollarQuotedLength(text: string): number {
  const tag = text.match(/^\$(?:[A-Za-z_]\w*)?\$/)?.[0];
  if (!tag) return 0;
  const end = text.indexOf(tag, tag.length);
  return end < 0 ? text.length : end + tag.length;
}

/** Named statements the client made (ParseComplete) or closed (CloseComplete), to deallocate when it goes. */
function noteStatement(statements: Set<string>, part: Uint8Array, answer: Uint8Array): void {
  if (part[0] === PARSE && answer[0] === PARSE_COMPLETE) {
    const name = cString(part, 5);
    if (name) statements.add(name);
  } else if (part[0] === CLOSE && part[5] === STATEMENT && answer[0] === CLOSE_COMPLETE) {
    statements.delete(cString(part, 6));
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
      const length = readInt(buffer, header);
      if (length < 4 || length > MAX_MESSAGE_BYTES) throw new Error(`a message of ${length} bytes`);
      const size = header + length;
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
