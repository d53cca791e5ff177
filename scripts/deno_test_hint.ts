// What plain `deno test` runs (deno.json's test.include): this project's suite needs databases that
// `deno task test` makes, so a bare `deno test` says so once and fails, rather than running
// scripts/test.ts as a test file and failing every end-to-end file for lack of TEST_DATABASE_URL.
// `deno task test` names its test files explicitly, which Deno runs instead of test.include.
console.error(
  "\nThis project's tests run with `deno task test`: it makes the throw-away databases, applies the " +
    "migrations and runs the Supabase checks, pgTAP and these Deno tests on them. Plain `deno test` " +
    "cannot. To run some test files: deno task test supabase/functions/tests/<file>_test.ts\n",
);
Deno.exit(1);
