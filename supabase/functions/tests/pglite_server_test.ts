// The embedded PGlite (scripts/lib/pglite_server.ts) is one PostgreSQL session shared by every client.
// These tests try to make clients see each other through it: interleaved extended-protocol statements,
// another client's open transaction, a transaction left open by a client that vanished, session settings
// left behind. Each runs on a PGlite of its own, whatever database the suite runs on.
import assert from "node:assert/strict";
import postgres from "postgres";
import { type EmbeddedPostgres, startPglite } from "../../../scripts/lib/pglite_server.ts";

async function withPglite(body: (pg: EmbeddedPostgres) => Promise<void>) {
  const pg = await startPglite();
  try {
    await body(pg);
  } finally {
    await pg.stop();
  }
}

const connect = (url: string, max = 1) => postgres(url, { max, onnotice: () => {} });

Deno.test("PGlite: clients in parallel, each with statements and transactions, never see each other's", async () => {
  await withPglite(async (pg) => {
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
      assert.equal((await a`select count(*)::int as n from t`)[0].n, 160);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });
});

Deno.test("PGlite: another client's open transaction is invisible; its statements wait for the commit", async () => {
  await withPglite(async (pg) => {
    const [a, b] = [connect(pg.url), connect(pg.url)];
    try {
      await a`create table t (id int)`;
      const tx = await a.reserve();
      await tx`begin`;
      await tx`insert into t values (1)`;
      let seen: number | undefined;
      const read = b`select count(*)::int as n from t`.then(([row]) => (seen = row.n));
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(seen, undefined, "b ran inside a's open transaction");
      await tx`commit`;
      tx.release();
      await read;
      assert.equal(seen, 1);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });
});

Deno.test("PGlite: a client that goes away mid-transaction leaves nothing behind, and nobody waits", async () => {
  await withPglite(async (pg) => {
    const [a, b] = [connect(pg.url), connect(pg.url)];
    try {
      await b`create table t (id int)`;
      const tx = await a.reserve();
      await tx`begin`;
      await tx`insert into t values (1)`;
      const read = b`select count(*)::int as n from t`;
      await a.end({ timeout: 0 }); // the connection closes with its transaction open
      assert.equal((await read)[0].n, 0);
      assert.equal((await b`select count(*)::int as n from t`)[0].n, 0);
    } finally {
      await b.end();
    }
  });
});

Deno.test("PGlite: each new connection starts from the database's settings, not the last client's", async () => {
  await withPglite(async (pg) => {
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
  });
});
