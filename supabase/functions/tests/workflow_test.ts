// The project as someone extending it meets it. A new function is its folder (index.ts and deno.json)
// plus one [functions.<name>] entry in supabase/config.toml: in a scratch copy of this checkout, a
// dummy function added that way is type-checked by `deno task check`, covered by the tests that read the
// registry, started and listed by `deno task dev`, and boots on the one part of the configuration it
// uses. And `deno test`, as a Deno user types it first, says to use `deno task test`.
import assert from "node:assert/strict";
import { edgeFunctions } from "../../../scripts/lib/edge_functions.ts";
import { startFunction } from "../../../scripts/lib/function_process.ts";
import { LOCAL_SECRET_KEY } from "../../../scripts/lib/local_stack.ts";
import { dropDevDatabase, runDev, scratchCopy, stackTest } from "./_support.ts";

const ROOT = new URL("../../../", import.meta.url);
const DUMMY = "hello-doctor";

/** The dummy function's index.ts, with `extra` source at its end. */
async function writeDummy(root: URL, extra = "") {
  await Deno.writeTextFile(
    new URL(`supabase/functions/${DUMMY}/index.ts`, root),
    `import { Hono } from "hono/quick";
import { serveConfigured } from "../_shared/http/serve_configured.ts";

export default await serveConfigured("${DUMMY}", ["database"], (config) => {
  const app = new Hono().basePath("/${DUMMY}");
  app.get("/", (c) => c.json({ hello: "doctor", database: new URL(config.database.url).host }));
  return app;
});
${extra}`,
  );
}

/** The dummy function: its folder (index.ts, deno.json) and its config.toml entry, nothing else. */
async function addDummyFunction(root: URL) {
  await Deno.mkdir(new URL(`supabase/functions/${DUMMY}/`, root), { recursive: true });
  await writeDummy(root);
  // The same import map as the other functions: _shared's imports must resolve from it too.
  await Deno.copyFile(
    new URL("supabase/functions/instagram-callback/deno.json", root),
    new URL(`supabase/functions/${DUMMY}/deno.json`, root),
  );
  await Deno.writeTextFile(
    new URL("supabase/config.toml", root),
    `
[functions.${DUMMY}]
enabled = true
verify_jwt = false
import_map = "./functions/${DUMMY}/deno.json"
entrypoint = "./functions/${DUMMY}/index.ts"
`,
    { append: true },
  );
}

async function denoIn(root: URL, args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(output.stdout) + new TextDecoder().decode(output.stderr);
  return { code: output.code, text };
}

Deno.test(
  "a function added as its folder and one config.toml entry: check, tests and dev pick it up",
  stackTest,
  async (t) => {
    const root = await scratchCopy();
    try {
      await addDummyFunction(root);

      await t.step("deno task check type-checks it, and fails on a type error in it", async () => {
        const clean = await denoIn(root, ["task", "check"]);
        assert.equal(clean.code, 0, clean.text);
        assert.match(clean.text, new RegExp(`Check supabase/functions/${DUMMY}/index\\.ts`));
        await writeDummy(root, 'export const broken: number = "not a number";\n');
        const broken = await denoIn(root, ["task", "check"]);
        assert.notEqual(broken.code, 0);
        assert.match(broken.text, new RegExp(`TS2322[^]*${DUMMY}/index\\.ts`));
        await writeDummy(root);
      });

      await t.step("the tests that read the registry cover it (import map, config.toml entry)", async () => {
        const run = await denoIn(root, [
          "test",
          "--allow-all",
          "supabase/functions/tests/function_config_test.ts",
        ]);
        assert.equal(run.code, 0, run.text);
        assert.match(run.text, new RegExp(`${DUMMY}/deno\\.json resolves every import .* ok`));
        assert.match(run.text, /config\.toml declares exactly the function folders.* ok/);
      });

      await t.step("it boots on the one part it uses: no INSTAGRAM_* variable needed", async () => {
        const fn = await startFunction(DUMMY, {
          SUPABASE_URL: "http://127.0.0.1:54321",
          SUPABASE_SECRET_KEYS: JSON.stringify({ default: LOCAL_SECRET_KEY }),
        }, { root });
        try {
          const answer = await fetch(`${fn.url}/${DUMMY}`);
          assert.equal(answer.status, 200);
          assert.deepEqual(await answer.json(), { hello: "doctor", database: "127.0.0.1:54321" });
        } finally {
          await fn.stop();
        }
      });

      await t.step("deno task dev starts it beside the others and lists it in the banner", async () => {
        let answered: unknown;
        let gateway = "";
        const { code, output, interrupted } = await runDev(
          "supabase/functions/.env.absent",
          {},
          /instagram-connect\s+info\s+request .*status=401/,
          async (origin, banner) => {
            assert.match(
              banner,
              new RegExp(`\\n  ${DUMMY} +http://127\\.0\\.0\\.1:\\d+/functions/v1/${DUMMY}\\n`),
            );
            assert.match(banner, /\n {2}instagram-connect +http:/);
            gateway = new URL(origin).host;
            const answer = await fetch(`${origin}/functions/v1/${DUMMY}`);
            answered = { status: answer.status, body: await answer.json() };
            // A request whose log line tells runDev it may stop dev.
            await (await fetch(`${origin}/functions/v1/instagram-connect`)).body?.cancel();
          },
          undefined,
          root,
        ).finally(dropDevDatabase);
        assert.ok(interrupted, output);
        assert.equal(code, 0, output);
        assert.deepEqual(answered, { status: 200, body: { hello: "doctor", database: gateway } });
      });
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
);

Deno.test("plain `deno test` says to use `deno task test`, once, and fails", async () => {
  const run = await denoIn(ROOT, ["test", "--allow-all"], { TEST_DATABASE_URL: "" });
  assert.notEqual(run.code, 0);
  assert.equal(run.text.match(/This project's tests run with `deno task test`/g)?.length, 1, run.text);
  assert.doesNotMatch(run.text, /TEST_DATABASE_URL|[1-9]\d* passed/, "no test file of the suite ran");
  assert.match(run.text, /\| 0 passed \| 1 failed/);
});

Deno.test("deno task check formats and lints Markdown too: a misformatted README fails it", async () => {
  const root = await scratchCopy();
  try {
    const readme = new URL("README.md", root);
    await Deno.writeTextFile(
      readme,
      (await Deno.readTextFile(readme)) + "\n\n*   a list item   formatted badly\n",
    );
    const run = await denoIn(root, ["task", "check"]);
    assert.notEqual(run.code, 0);
    assert.match(run.text, /README\.md/);
    assert.match(run.text, /deno task check: `deno fmt --check` found problems/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("the registry takes entry points under supabase/functions/ only, and refuses an empty list", async () => {
  const root = new URL(`file://${await Deno.makeTempDir()}/`);
  try {
    await Deno.mkdir(new URL("supabase/", root));
    const declare = (toml: string) => Deno.writeTextFileSync(new URL("supabase/config.toml", root), toml);
    declare('[functions.escape]\nentrypoint = "../../outside.ts"\n');
    assert.throws(
      () => edgeFunctions(root),
      /\[functions\.escape\] entrypoint must be a file under \.\/functions\//,
    );
    declare("[functions.ok]\nverify_jwt = false\n[functions.off]\nenabled = false\n");
    assert.deepEqual(edgeFunctions(root), [{
      name: "ok",
      entrypoint: "supabase/functions/ok/index.ts",
      importMap: "supabase/functions/ok/deno.json",
      verifyJwt: false,
    }]);
    declare("[api]\nport = 1\n");
    assert.throws(() => edgeFunctions(root), /declares no enabled \[functions\.<name>\]/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
