// `supabase functions deploy` resolves each function's imports through its own deno.json (see
// config.toml); the tests run with the root deno.json. Both must agree and cover every import.
import assert from "node:assert/strict";

const root = new URL("../../../", import.meta.url);
const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(new URL(path, root)));

/** Bare specifiers imported by the .ts files under `dir`, sub-folders included. */
async function bareImports(dir: string): Promise<Set<string>> {
  const found = new Set<string>();
  for await (const entry of Deno.readDir(new URL(dir, root))) {
    if (entry.isDirectory) {
      for (const specifier of await bareImports(`${dir}/${entry.name}`)) found.add(specifier);
    }
    if (!entry.isFile || !entry.name.endsWith(".ts")) continue;
    const source = await Deno.readTextFile(new URL(`${dir}/${entry.name}`, root));
    for (const [, specifier] of source.matchAll(/from\s+"([^".][^"]*)"/g)) {
      if (!/^(npm|node|jsr|https?):/.test(specifier)) found.add(specifier);
    }
  }
  return found;
}

const resolves = (imports: Record<string, string>, specifier: string) =>
  specifier in imports || Object.keys(imports).some((key) => key.endsWith("/") && specifier.startsWith(key));

for (const fn of ["instagram-connect", "instagram-callback"]) {
  Deno.test(`${fn}/deno.json resolves every import of the function and _shared, as the root does`, async () => {
    const own = (await readJson(`supabase/functions/${fn}/deno.json`)).imports as Record<string, string>;
    const rootImports = (await readJson("deno.json")).imports as Record<string, string>;
    const config = await Deno.readTextFile(new URL("supabase/config.toml", root));
    assert.match(
      config,
      new RegExp(`\\[functions\\.${fn}\\][^\\[]*import_map = "\\./functions/${fn}/deno\\.json"`),
    );
    const used = new Set([
      ...await bareImports(`supabase/functions/${fn}`),
      ...await bareImports("supabase/functions/_shared"),
    ]);
    assert.ok(used.size >= 5);
    for (const specifier of used) assert.ok(resolves(own, specifier), `${fn}/deno.json lacks "${specifier}"`);
    for (const [key, target] of Object.entries(own)) {
      assert.equal(rootImports[key], target, `"${key}" differs from the root`);
    }
  });
}

Deno.test("every import map target comes from npm (the only registry CI and this project rely on)", async () => {
  for (
    const path of [
      "deno.json",
      "supabase/functions/instagram-connect/deno.json",
      "supabase/functions/instagram-callback/deno.json",
    ]
  ) {
    for (const [key, target] of Object.entries((await readJson(path)).imports as Record<string, string>)) {
      assert.match(
        target,
        /^npm:\/?@?[\w./-]+@\^\d+/,
        `${path}: "${key}" -> ${target} is not a pinned-major npm specifier`,
      );
    }
  }
});
