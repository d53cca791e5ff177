// The project's functions, as supabase/config.toml declares them: the one registry. A function is its
// folder (index.ts and its deno.json) plus one [functions.<name>] entry there, which is what
// `supabase functions serve` and `supabase functions deploy` read too. The dev stack, its banner, the
// `check` task, the benchmark and the tests take their list from here, so adding a function edits
// nothing else.
import { parse } from "smol-toml";

const ROOT = new URL("../../", import.meta.url);

export interface EdgeFunction {
  name: string;
  /** The entry point, relative to the repository (`supabase/functions/<name>/index.ts`). */
  entrypoint: string;
  /** Its import map, relative to the repository (`supabase/functions/<name>/deno.json`). */
  importMap: string;
  /** The platform's legacy JWT check; this project's functions verify what they need themselves. */
  verifyJwt: boolean;
}

interface FunctionSection {
  enabled?: boolean;
  verify_jwt?: boolean;
  import_map?: string;
  entrypoint?: string;
}

/**
 * The enabled functions of `root`'s supabase/config.toml, in the order it lists them. Paths in
 * config.toml are relative to supabase/; the CLI's defaults apply where a key is missing.
 */
export function edgeFunctions(root: URL = ROOT): EdgeFunction[] {
  const config = parse(Deno.readTextFileSync(new URL("supabase/config.toml", root))) as {
    functions?: Record<string, FunctionSection>;
  };
  // Inside supabase/functions/ only: dev and the tests run entry points with the functions' secrets.
  const inFunctions = (name: string, key: string, path: string) => {
    const resolved = new URL(path, new URL("supabase/", root));
    if (
      !/^[a-z0-9][a-z0-9_-]*$/.test(name) ||
      !resolved.href.startsWith(new URL("supabase/functions/", root).href)
    ) {
      throw new Error(`supabase/config.toml: [functions.${name}] ${key} must be a file under ./functions/`);
    }
    return resolved.href.slice(root.href.length);
  };
  const functions = Object.entries(config.functions ?? {})
    .filter(([, section]) => section.enabled !== false)
    .map(([name, section]) => ({
      name,
      entrypoint: inFunctions(name, "entrypoint", section.entrypoint ?? `./functions/${name}/index.ts`),
      importMap: inFunctions(name, "import_map", section.import_map ?? `./functions/${name}/deno.json`),
      verifyJwt: section.verify_jwt ?? true,
    }));
  if (functions.length === 0) throw new Error("supabase/config.toml declares no enabled [functions.<name>]");
  return functions;
}

/** One function of the registry, or an error naming the ones there are. */
export function edgeFunction(name: string, root: URL = ROOT): EdgeFunction {
  const all = edgeFunctions(root);
  const found = all.find((fn) => fn.name === name);
  if (!found) {
    throw new Error(
      `no function "${name}" in supabase/config.toml (it has ${all.map((fn) => fn.name).join(", ")})`,
    );
  }
  return found;
}
