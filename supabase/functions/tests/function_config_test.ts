// What `supabase functions deploy` reads: config.toml's [functions.*] entries (a bare deploy deploys
// every one of them) and each function's own deno.json import map. The tests run with the root
// deno.json; both maps must agree and cover every import.
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { edgeFunctions } from "../../../scripts/lib/edge_functions.ts";

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

for (const { name: fn, importMap, entrypoint } of edgeFunctions()) {
  Deno.test(`${fn}/deno.json resolves every import of the function and _shared, as the root does`, async () => {
    assert.equal(
      importMap,
      `supabase/functions/${fn}/deno.json`,
      "config.toml's import_map is its own deno.json",
    );
    assert.equal(entrypoint, `supabase/functions/${fn}/index.ts`);
    const own = (await readJson(importMap)).imports as Record<string, string>;
    const rootImports = (await readJson("deno.json")).imports as Record<string, string>;
    const used = new Set([
      ...await bareImports(`supabase/functions/${fn}`),
      ...await bareImports("supabase/functions/_shared"),
    ]);
    assert.ok(used.size >= 1);
    for (const specifier of used) assert.ok(resolves(own, specifier), `${fn}/deno.json lacks "${specifier}"`);
    for (const [key, target] of Object.entries(own)) {
      assert.equal(rootImports[key], target, `"${key}" differs from the root`);
    }
  });
}

Deno.test("every import map target comes from npm (the only registry CI and this project rely on), pinned", async () => {
  for (const path of ["deno.json", ...edgeFunctions().map((fn) => fn.importMap)]) {
    for (const [key, target] of Object.entries((await readJson(path)).imports as Record<string, string>)) {
      // A major (^N), or an exact version where a package's siblings require exactly that one (PGlite's).
      assert.match(
        target,
        /^npm:\/?@?[\w./-]+@(\^\d+|\d+\.\d+\.\d+)(\/|$)/,
        `${path}: "${key}" -> ${target} is neither a pinned major nor an exact npm version`,
      );
    }
  }
});

/** config.toml's [functions.<name>] sections as written (not the registry's defaults). */
async function configuredFunctions(): Promise<Map<string, Record<string, unknown>>> {
  const config = parse(await Deno.readTextFile(new URL("supabase/config.toml", root)));
  return new Map(Object.entries((config.functions ?? {}) as Record<string, Record<string, unknown>>));
}

Deno.test("config.toml declares exactly the function folders, each with its entrypoint and import map", async () => {
  const configured = await configuredFunctions();
  const folders: string[] = [];
  for await (const entry of Deno.readDir(new URL("supabase/functions/", root))) {
    if (entry.isDirectory && !entry.name.startsWith("_") && entry.name !== "tests") folders.push(entry.name);
  }
  assert.deepEqual(
    [...configured.keys()].sort(),
    folders.sort(),
    "one [functions.*] entry per function folder",
  );
  assert.deepEqual(
    edgeFunctions().map((fn) => fn.name),
    [...configured.keys()],
    "the registry lists them all",
  );
  for (const [name, keys] of configured) {
    for (const key of ["entrypoint", "import_map"]) {
      const path = keys[key];
      assert.ok(typeof path === "string", `[functions.${name}] has ${key}`);
      assert.ok(
        (await Deno.stat(new URL(`supabase/${path}`, root)).catch(() => undefined))?.isFile,
        `[functions.${name}] ${key} ${path} exists`,
      );
    }
    assert.equal(keys.verify_jwt, false, `${name} verifies what it needs itself (see config.toml)`);
  }
});

Deno.test("config.toml names no seed file that does not exist", async () => {
  const config = await Deno.readTextFile(new URL("supabase/config.toml", root));
  const seed = config.match(/^\[db\.seed\]\n([^\[]*)/m)?.[1] ?? "";
  if (/^enabled\s*=\s*false/m.test(seed)) return;
  for (const [, path] of seed.matchAll(/"(\.\/[^"]+)"/g)) {
    assert.ok(await Deno.stat(new URL(`supabase/${path}`, root)).catch(() => undefined), `${path} exists`);
  }
});
