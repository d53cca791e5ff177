// The pgTAP runner counts what `deno task test` reports for the SQL suite: it must not count a failed,
// skipped or missing assertion as passed, nor a file that errs or misses its plan as fine. Runs on the
// suite's database (a server or PGlite), in transactions that are rolled back.
import assert from "node:assert/strict";
import { describeTapFile, failuresOf, runPgtapFiles } from "../../../scripts/lib/pgtap_runner.ts";
import { databaseUrl } from "./_support.ts";

async function run(sql: string) {
  const file = await Deno.makeTempFile({ suffix: ".test.sql" });
  try {
    await Deno.writeTextFile(file, `begin;\nset local client_min_messages to warning;\n${sql}\nrollback;\n`);
    const [result] = await runPgtapFiles(databaseUrl, [new URL(`file://${file}`)]);
    return result;
  } finally {
    await Deno.remove(file);
  }
}

Deno.test("pgTAP runner: passes, failures, skips, plans and SQL errors are each counted as what they are", async (t) => {
  await t.step("every planned assertion passes: ok", async () => {
    const result = await run(
      `select plan(2); select ok(true, 'one'); select is(1, 1, 'two'); select * from finish();`,
    );
    assert.deepEqual([result.passed, result.failed, result.skipped, result.problem], [2, 0, 0, undefined]);
    assert.match(describeTapFile(result), /ok \(2 passed, 0 failed\)$/);
  });

  await t.step("a failing assertion is a failure, with pgTAP's diagnostics shown", async () => {
    const result = await run(
      `select plan(2); select ok(true, 'one'); select is(1, 2, 'two'); select * from finish();`,
    );
    assert.deepEqual([result.passed, result.failed, failuresOf(result)], [1, 1, 1]);
    assert.match(describeTapFile(result), /FAILED[\s\S]*not ok 2 - two[\s\S]*have: 1[\s\S]*want: 2/);
  });

  await t.step("a skipped assertion is not a pass", async () => {
    const result = await run(
      `select plan(2); select ok(true, 'one'); select skip('not here', 1); select * from finish();`,
    );
    assert.deepEqual([result.passed, result.skipped], [1, 1]);
    assert.match(describeTapFile(result), /FAILED/);
  });

  await t.step("fewer assertions than planned (a file cut short) is a problem", async () => {
    const result = await run(`select plan(3); select ok(true, 'one'); select * from finish();`);
    assert.equal(result.problem, "planned 3 assertions, ran 1");
  });

  await t.step("an SQL error stops the file and says why", async () => {
    const result = await run(`select plan(2); select ok(true, 'one'); select no_such_function();`);
    assert.match(result.problem ?? "", /^SQL error at line 3: .*no_such_function/);
    assert.match(describeTapFile(result), /FAILED/);
  });

  await t.step(
    "a row that only looks like TAP does not fill the plan: pgTAP's complaint fails the file",
    async () => {
      const result = await run(
        `select plan(2); select ok(true, 'one'); select 'ok 2 - not an assertion'::text; select * from finish();`,
      );
      assert.match(result.problem ?? "", /Looks like you planned 2 tests but ran 1/);
      assert.equal(failuresOf(result), 1);
    },
  );

  await t.step("a file that prints no TAP at all is a problem, not an empty pass", async () => {
    const result = await run(`select 'not a test'::text as note;`);
    assert.equal(result.problem, "no plan");
    assert.match(describeTapFile(result), /FAILED/);
  });
});
