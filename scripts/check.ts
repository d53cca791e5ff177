// `deno task check`: formatting, lint and type checks over the whole repository.
//   deno fmt --check   every TypeScript, JSON and Markdown file, README included (SQL is left alone:
//                      deno.json excludes it, since formatting would rewrite the landed migrations)
//   deno lint          every TypeScript file
//   deno check         each function's entry point as supabase/config.toml declares it, the scripts
//                      and the tests
// Adding a function to config.toml adds it here: nothing in this file names one.
import { edgeFunctions } from "./lib/edge_functions.ts";

const ROOT = new URL("../", import.meta.url);

const steps: string[][] = [
  ["fmt", "--check"],
  ["lint"],
  ["check", ...edgeFunctions().map((fn) => fn.entrypoint), "scripts/", "supabase/functions/tests/"],
];

for (const args of steps) {
  const { success } = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT }).spawn().status;
  if (!success) {
    console.error(`\ndeno task check: \`deno ${args.slice(0, 2).join(" ")}\` found problems (above).`);
    Deno.exit(1);
  }
}
console.log("deno task check: formatting, lint and types are clean");
