// What `deno task dev` checks before it runs the functions against a real Meta app (scripts/dev.ts):
// whether Meta's redirect after Allow can come back to this dev server, and how to make it. Pure: the
// tests call it directly as well as through dev.ts.
//
// Refusals are mistakes no set-up can make work, so dev stops on them: a path other than
// /functions/v1/instagram-callback (a typo in the function name) is never routed to the callback, and a
// supabase.co redirect on another project than SUPABASE_URL's lands where this project's pending
// connections (and their one-time state) do not exist. An origin other than this dev server's is only a
// warning: a tunnel, a reverse proxy or /etc/hosts may forward it here, and dev cannot see that from
// inside; the warning says so and DEV_TUNNEL_URL declares the tunnel, which silences it.

export const CALLBACK_PATH = "/functions/v1/instagram-callback";

export interface RedirectCheck {
  /** INSTAGRAM_REDIRECT_URI as set (not secret: Meta shows it in every login URL). */
  redirectUri: string;
  supabaseUrl: string;
  /** The dev server's port (DEV_PORT, default 54321). */
  port: number;
  /** DEV_TUNNEL_URL: a public https origin the user has forwarding to this dev server, if any. */
  tunnelUrl?: string;
}

export interface RedirectFindings {
  /** Each a line naming what to fix; dev exits 1 when there is one. */
  refusals: string[];
  /** Each a line; dev runs anyway. */
  warnings: string[];
  /** The URI to set and to register in the app's Valid OAuth Redirect URIs ("https://<tunnel>/…" until one is declared). */
  uriToRegister: string;
}

/** The project ref of a `https://<ref>.supabase.co` URL, else undefined. */
export function projectRefOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.match(/^([a-z0-9]+)\.supabase\.co$/)?.[1];
  } catch {
    return undefined;
  }
}

export function checkRedirectUri(
  { redirectUri, supabaseUrl, port, tunnelUrl }: RedirectCheck,
): RedirectFindings {
  const refusals: string[] = [];
  const warnings: string[] = [];
  const local = [`http://127.0.0.1:${port}`, `http://localhost:${port}`];
  const tunnel = originOf(tunnelUrl);
  let uri: URL;
  try {
    uri = new URL(redirectUri);
  } catch {
    // Not a URL at all: the functions' own configuration check names it (config.ts), one line as always.
    return { refusals, warnings, uriToRegister: `${tunnel ?? `http://127.0.0.1:${port}`}${CALLBACK_PATH}` };
  }
  // Exact when known (a declared tunnel, or this server itself); else the shape, to fill in with the tunnel's.
  const uriToRegister = `${
    tunnel ?? (local.includes(uri.origin) ? uri.origin : "https://<tunnel>")
  }${CALLBACK_PATH}`;

  if (tunnelUrl && !tunnel) {
    refusals.push(`DEV_TUNNEL_URL must be the tunnel's https origin, like https://abc123.ngrok-free.app.`);
  }
  // The dev server, like the platform, routes /functions/v1/<name>: any other path never reaches the callback.
  if (uri.pathname !== CALLBACK_PATH) {
    const name = uri.pathname.match(/^\/functions\/v1\/([^/]+)\/?$/)?.[1];
    refusals.push(
      name
        ? `INSTAGRAM_REDIRECT_URI names the function "${name}": it must be instagram-callback (path ${CALLBACK_PATH}).`
        : `INSTAGRAM_REDIRECT_URI's path is ${uri.pathname}: it must be ${CALLBACK_PATH}, the function that finishes the login.`,
    );
  }
  const redirectRef = projectRefOf(redirectUri);
  const supabaseRef = projectRefOf(supabaseUrl);
  if (redirectRef && supabaseRef && redirectRef !== supabaseRef) {
    refusals.push(
      `INSTAGRAM_REDIRECT_URI is on project ${redirectRef} but SUPABASE_URL on ${supabaseRef}: the callback ` +
        `would look for the connection in the other project's database. Use one project for both.`,
    );
  }
  if (tunnel && uri.origin !== tunnel) {
    warnings.push(
      `INSTAGRAM_REDIRECT_URI's origin ${uri.origin} is not the tunnel's (DEV_TUNNEL_URL ${tunnel}): ` +
        `set it to ${uriToRegister} to come back here.`,
    );
  } else if (!tunnel && !local.includes(uri.origin)) {
    const here = `this dev server (${local[0]})`;
    warnings.push(
      redirectRef
        ? `INSTAGRAM_REDIRECT_URI leads to the deployed instagram-callback of project ${redirectRef}, not to ${here}: ` +
          `after Allow, Meta sends the browser there. To finish logins here, use a tunnel (the steps below).`
        : `INSTAGRAM_REDIRECT_URI's origin ${uri.origin} is not ${here}: after Allow, Meta sends the browser ` +
          `there, not here. If a tunnel forwards it here, set DEV_TUNNEL_URL=${uri.origin} to say so.`,
    );
  }
  return { refusals, warnings, uriToRegister };
}

/**
 * How to run dev against a real Meta app, for the banner. Meta takes http only for localhost, and only
 * while the app is in Development mode ("Requiring HTTPS for Facebook Login", Meta for Developers blog,
 * 2018); past that (Live mode, Meta's webhooks, a phone's browser) it takes a public https URL: a tunnel.
 */
export function realAppSteps(port: number, uriToRegister: string, supabaseUrl: string): string {
  const known = !uriToRegister.includes("<tunnel>");
  const remote = projectRefOf(supabaseUrl) ? " (supabase link, then supabase db push --remote)" : "";
  return `  To log in through a real Meta app here:
    1. In Development mode, Meta takes an http://localhost redirect, no tunnel needed:
       INSTAGRAM_REDIRECT_URI=http://localhost:${port}${CALLBACK_PATH}
    2. Else (Live mode, webhooks, another device): an https tunnel to this port, e.g.
       ngrok http 127.0.0.1:${port}   or   cloudflared tunnel --url http://127.0.0.1:${port}
       then DEV_TUNNEL_URL=<its origin> and INSTAGRAM_REDIRECT_URI=<its origin>${CALLBACK_PATH}
    3. Register INSTAGRAM_REDIRECT_URI, exactly, in the app's Facebook Login settings, Valid OAuth Redirect URIs${
    known ? `:\n       ${uriToRegister}` : "."
  }
    4. The project at SUPABASE_URL needs this checkout's migrations${remote}.`;
}

function originOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" && (parsed.pathname === "/" || parsed.pathname === "")
      ? parsed.origin
      : undefined;
  } catch {
    return undefined;
  }
}
