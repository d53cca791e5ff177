// The function secrets file, as the Supabase CLI reads it (`functions serve --env-file`, `secrets set
// --env-file`): `NAME=value` lines, `export` allowed, quotes, ` #` comments after a value.

/** The file's variables, or `found: false` when there is no such file. */
export async function readDotEnv(
  path: string | URL,
): Promise<{ found: boolean; values: Record<string, string> }> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch {
    return { found: false, values: {} };
  }
  const values: Record<string, string> = {};
  for (const line of text.split("\n")) {
    const match = line.match(/^\s*(?:export\s+)?([A-Z0-9_]+)\s*=\s*(.*?)\s*$/);
    if (!match) continue;
    const quoted = match[2].match(/^(['"])(.*)\1$/);
    values[match[1]] = quoted ? quoted[2] : match[2].replace(/\s+#.*$/, "");
  }
  return { found: true, values };
}
