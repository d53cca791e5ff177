// The embedded PGlite (scripts/lib/pglite_server.ts) is one PostgreSQL session shared by every client.
// These tests try to make clients see each other through it: interleaved extended-protocol statements,
// another client's open transaction, a transaction left open by a client that vanished, session settings
// left behind. They share a PGlite of their own, whatever database the suite runs on.
import assert from "node:assert/strict";
import postgres from "postgres";
import { type EmbeddedPostgres, startPglite } from "../../../scripts/lib/pglite_server.ts";

const IDLE_HOLD_MS = 1_000;

/** The rows in table t, as a client sees them. */
async function rowsIn(sql: postgres.Sql): Promise<number> {
  return (await sql`select count(*)::int as n from t`)[0].n;
}

/** A transaction left open on one of the client's connections, holding an uncommitted row in t. */
async function uncommittedRow(sql: postgres.Sql): Promise<postgres.ReservedSql> {
  const tx = await sql.reserve();
  await tx`begin`;
  await tx`insert into t values (1)`;
  return tx;
}

/** Each step starts without what an earlier one made. */
async function fresh(pg: EmbeddedPostgres) {
  const sql = connect(pg.url);
  await sql.unsafe("drop table if exists t; drop schema if exists extras; alter database postgres reset all")
    .simple();
  await sql.end();
}

const connect = (url: string, max = 1) => postgres(url, { max, onnotice: () => {} });

Deno.test("PGlite: one session shared by every client; what none of them may see of another", async (t) => {
  const pg = await startPglite({ idleHoldMs: IDLE_HOLD_MS });
  try {
    await t.step(
      "clients in parallel, each with statements and transactions, never see each other's",
      async () => {
        await fresh(pg);
        assert.match(pg.version, /^PostgreSQL \d+\.\d+ \(PGlite [\d.]+\)$/);
        const [a, b] = [connect(pg.url, 4), connect(pg.url, 4)];
        try {
          await a`create table t (id int primary key, v text)`;
          const work = async (sql: postgres.Sql, worker: number) => {
            for (let i = 0; i < 40; i++) {
              const n = worker * 1000 + i;
              const [row] = await sql`select ${n}::int as n, ${`x${n}`}::text as s`;
              assert.deepEqual({ ...row }, { n, s: `x${n}` });
              await sql.begin(async (tx) => {
                await tx`insert into t values (${n}, ${`v${n}`})`;
                assert.equal((await tx`select v from t where id = ${n}`)[0].v, `v${n}`);
              });
            }
          };
          await Promise.all([work(a, 1), work(a, 2), work(b, 3), work(b, 4)]);
          assert.equal(await rowsIn(a), 160);
        } finally {
          await Promise.all([a.end(), b.end()]);
        }
      },
    );

    await t.step(
      "another client's open transaction is invisible; its statements wait for the commit",
      async () => {
        await fresh(pg);
        const [a, b] = [connect(pg.url), connect(pg.url)];
        try {
          await a`create table t (id int)`;
          const tx = await uncommittedRow(a);
          let seen: number | undefined;
          const read = rowsIn(b).then((n) => (seen = n));
          await new Promise((resolve) => setTimeout(resolve, 200));
          assert.equal(seen, undefined, "b ran inside a's open transaction");
          await tx`commit`;
          tx.release();
          await read;
          assert.equal(seen, 1);
        } finally {
          await Promise.all([a.end(), b.end()]);
        }
      },
    );

    await t.step(
      "a client that goes away mid-transaction leaves nothing behind, and nobody waits",
      async () => {
        await fresh(pg);
        const [a, b] = [connect(pg.url), connect(pg.url)];
        try {
          await b`create table t (id int)`;
          await uncommittedRow(a);
          const read = rowsIn(b);
          await a.end({ timeout: 0 }); // the connection closes with its transaction open
          assert.equal(await read, 0);
          assert.equal(await rowsIn(b), 0);
        } finally {
          await b.end();
        }
      },
    );

    await t.step(
      "each new connection starts from the database's settings, not the last client's",
      async () => {
        await fresh(pg);
        const admin = connect(pg.url);
        await admin.unsafe(`create schema extras; alter database postgres set search_path = public, extras`);
        await admin.unsafe(`set search_path = public; set statement_timeout = 1234`);
        await admin.end();
        const next = connect(pg.url);
        try {
          const [row] = await next`select current_setting('search_path') as path,
          current_setting('statement_timeout') as timeout`;
          assert.deepEqual({ ...row }, { path: "public, extras", timeout: "0" });
        } finally {
          await next.end();
        }
      },
    );

    await t.step(
      "session settings a client leaves behind are reset before a connected client's next exchange",
      async () => {
        await fresh(pg);
        const setup = connect(pg.url);
        await setup.unsafe(`create schema extras; alter database postgres set search_path = public, extras;
          create table t (id int); grant all on t to public;
          do $$ begin create role leftover nologin; exception when duplicate_object then null; end $$`);
        await setup.end();
        const settings = (sql: postgres.Sql) =>
          sql`select current_setting('session_replication_role') as replication_role,
                     current_setting('default_transaction_read_only') as read_only,
                     current_setting('statement_timeout') as timeout,
                     current_setting('search_path') as path,
                     current_user as role`.then(([row]) => ({ ...row }));
        const stays = connect(pg.url);
        const leaves = connect(pg.url);
        try {
          const defaults = await settings(stays); // connected before the other one changes anything
          assert.deepEqual(defaults, {
            replication_role: "origin",
            read_only: "off",
            timeout: "0",
            path: "public, extras",
            role: "postgres",
          });
          // Triggers off (replica), read-only, a timeout, another path and role: all session-wide.
          await leaves.unsafe(`set session_replication_role = replica; set default_transaction_read_only = on;
            set statement_timeout = 1234; set search_path = public; set role leftover`).simple();
          assert.equal((await settings(leaves)).replication_role, "replica");
          await leaves.end();
          assert.deepEqual(await settings(stays), defaults);
          await stays`insert into t values (1)`; // it can write: not read-only
          assert.equal(await rowsIn(stays), 1);
        } finally {
          await Promise.all([stays.end(), leaves.end()]);
        }
      },
    );

    await t.step(
      "COPY FROM STDIN is refused (PGlite would stop for good), and the session goes on",
      async () => {
        await fresh(pg);
        const sql = connect(pg.url);
        try {
          await sql`create table t (id int)`;
          for (
            const run of [
              () => sql.unsafe("copy t from stdin").simple(),
              () => sql.unsafe("copy t from stdin"),
              () => sql.unsafe("copy t from/**/stdin").simple(),
              () => sql.unsafe("copy t from -- a comment\nstdin").simple(),
              () => sql.unsafe("select '--'; copy t from stdin").simple(),
              () => sql.unsafe("insert into t values (1); copy t from stdin").simple(),
            ]
          ) {
            await assert.rejects(run, (error: { code?: string }) => error.code === "0A000");
            assert.equal(await rowsIn(sql), 0);
          }
          // Inside a transaction, the refusal aborts it as a server's error would: nothing is kept.
          await sql.begin(async (tx) => {
            await tx`insert into t values (1)`;
            await tx.unsafe("copy t from stdin");
          }).catch(() => {});
          assert.equal(await rowsIn(sql), 0);
          // Only the statement: the words in a string are not a COPY.
          assert.equal(
            (await sql.unsafe("select 'copy x from stdin' as s").simple())[0].s,
            "copy x from stdin",
          );
          // An insert, a COPY after a Flush, then Sync: the insert goes with the refused exchange.
          const raw = await rawClient(pg.url);
          await raw.send(
            message("P", "\0insert into t values (1)\0\0\0"),
            message("B", "\0\0\0\0\0\0\0"),
            message("E", "\0\0\0\0\0"),
            message("H", ""),
          );
          await raw.read();
          await raw.send(message("P", "\0copy t from stdin\0\0\0"), message("S", ""));
          await raw.read();
          assert.equal(await rowsIn(sql), 0);
          raw.close();
        } finally {
          await sql.end();
        }
      },
    );

    await t.step(
      "a client gone after a Flush, its insert unsynced, leaves nothing for the next Sync",
      async () => {
        await fresh(pg);
        const sql = connect(pg.url);
        try {
          await sql`create table t (id int)`;
          const raw = await rawClient(pg.url);
          // Parse, Bind, Execute, then Flush: the insert ran, in an implicit transaction that only Sync ends.
          await raw.send(
            message("P", "s1\0insert into t values (1)\0\0\0"),
            message("B", "\0s1\0\0\0\0\0\0\0"),
            message("E", "\0\0\0\0\0"),
            message("H", ""),
          );
          await raw.read();
          raw.close();
          assert.equal(await rowsIn(sql), 0);
          const [{ n }] = await sql.unsafe(
            "select count(*)::int as n from pg_prepared_statements where name = 's1'",
          )
            .simple();
          assert.equal(n, 0, "its prepared statement went with it");
        } finally {
          await sql.end();
        }
      },
    );

    await t.step("a role or session user set by one client does not reach the next connection", async () => {
      await fresh(pg);
      const admin = connect(pg.url);
      await admin.unsafe("create role visitor nologin; set role visitor");
      await admin.end();
      const other = connect(pg.url);
      await other.unsafe("set session authorization visitor");
      await other.end();
      const next = connect(pg.url);
      try {
        const [row] = await next`select current_user, session_user`;
        assert.deepEqual({ ...row }, { current_user: "postgres", session_user: "postgres" });
      } finally {
        await next.end();
      }
    });

    await t.step(
      "a client idle in a transaction while others wait is cut off, its work rolled back",
      async () => {
        await fresh(pg);
        const [a, b] = [connect(pg.url), connect(pg.url)];
        try {
          await b`create table t (id int)`;
          const tx = await uncommittedRow(a);
          const started = performance.now();
          assert.equal(await rowsIn(b), 0);
          assert.ok(
            performance.now() - started >= IDLE_HOLD_MS - 100,
            "b waited for the holder's time to run out",
          );
          await assert.rejects(() => tx`commit`);
          tx.release();
          assert.equal(await rowsIn(b), 0);
        } finally {
          await Promise.all([a.end({ timeout: 1 }), b.end()]);
        }
      },
    );

    await t.step(
      "a message whose length is not the protocol's closes that connection, not the session",
      async () => {
        await fresh(pg);
        const raw = await rawClient(pg.url);
        await raw.send(new Uint8Array([0x51, 0xff, 0xff, 0xff, 0xff]));
        assert.equal(await raw.read(), undefined, "the connection was closed");
        const sql = connect(pg.url);
        try {
          assert.equal((await sql`select 1 as one`)[0].one, 1);
        } finally {
          await sql.end();
        }
      },
    );

    await t.step("a holder that pauses mid-exchange while others wait is cut off too", async () => {
      await fresh(pg);
      const [a, b] = [await rawClient(pg.url), connect(pg.url)];
      try {
        await b`create table t (id int)`;
        await a.send(message("Q", "begin; insert into t values (1)\0"));
        await a.read();
        await a.send(message("P", "\0select 1\0\0\0")); // no Sync: the exchange is not over
        assert.equal(await rowsIn(b), 0);
      } finally {
        a.close();
        await b.end();
      }
    });

    await t.step(
      "two clients with the same statement name: the one refused does not remove the other's",
      async () => {
        await fresh(pg);
        const [x, y] = [await rawClient(pg.url), await rawClient(pg.url)];
        await x.send(message("P", "fixed\0select 1\0\0\0"), message("S", ""));
        await x.read();
        await y.send(message("P", "fixed\0select 2\0\0\0"), message("S", ""));
        assert.match(new TextDecoder().decode(await y.read()), /42P05/);
        y.close();
        const sql = connect(pg.url);
        try {
          const [{ n }] = await sql.unsafe(
            "select count(*)::int as n from pg_prepared_statements where name = 'fixed'",
          )
            .simple();
          assert.equal(n, 1);
        } finally {
          x.close();
          await sql.end();
        }
      },
    );

    await t.step("the last client to leave takes the session's temporary tables with it", async () => {
      await fresh(pg);
      const first = connect(pg.url);
      await first.unsafe("create temp table scratch (note text); insert into scratch values ('mine')")
        .simple();
      await first.end();
      const next = connect(pg.url);
      try {
        const [{ found }] = await next`select to_regclass('pg_temp.scratch') is not null as found`;
        assert.equal(found, false);
      } finally {
        await next.end();
      }
    });
  } finally {
    await pg.stop();
  }
});

/** A bare wire-protocol client: what postgres.js would never send on its own. */
async function rawClient(url: string) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  const startup = new TextEncoder().encode("\0\0\0\0\0\x03\0\0user\0postgres\0database\0postgres\0\0");
  new DataView(startup.buffer).setInt32(0, startup.length);
  await conn.write(startup);
  const reader = conn.readable.getReader();
  const read = async () => (await reader.read()).value;
  await read();
  return {
    send: async (...parts: Uint8Array[]) => {
      for (const part of parts) await conn.write(part);
    },
    read,
    close: () => conn.close(),
  };
}

function message(type: string, body: string): Uint8Array {
  const bytes = new TextEncoder().encode(`${type}\0\0\0\0${body}`);
  new DataView(bytes.buffer).setInt32(1, bytes.length - 1);
  return bytes;
}
