// The benchmark's floor: the whole link flow's I/O with none of our logic. The same Meta calls in the
// same order against the same fake Meta, the same database functions through the same gateway, served
// by `deno serve` behind the same router as the real functions, in two processes as they are (this
// file runs as bench-floor and as bench-floor-callback). What it leaves out is what the real functions
// add: JWT verification, signed state, input validation, token encryption, audit context and log
// lines. So `real flow p50 / floor p50` is the cost of that, on this machine, in this run.
//   GET  /bench-floor            connect: records a state, answers Meta's dialog URL
//   GET  /bench-floor-callback   Meta's redirect: claims it, 3 Graph calls, records a pending connection
//   POST /bench-floor/finish     opens it, subscribes the Page, links it, converges (2 Graph calls)
const env = (name: string) => Deno.env.get(name) ?? "";
const SUPABASE_URL = env("SUPABASE_URL");
const SECRET_KEY = JSON.parse(env("SUPABASE_SECRET_KEYS")).default;
const APP_ID = env("INSTAGRAM_APP_ID");
const APP_SECRET = env("INSTAGRAM_APP_SECRET");
const GRAPH = `${env("INSTAGRAM_GRAPH_BASE_URL")}/${env("INSTAGRAM_GRAPH_VERSION")}`;
const DIALOG = `${env("INSTAGRAM_DIALOG_BASE_URL")}/${env("INSTAGRAM_GRAPH_VERSION")}/dialog/oauth`;
const REDIRECT_URI = `${SUPABASE_URL}/functions/v1/bench-floor-callback`;
const SCOPES =
  "pages_show_list,instagram_basic,instagram_manage_messages,pages_manage_metadata,business_management";
// The functions' default INSTAGRAM_WEBHOOK_FIELDS (Page fields: _shared/meta/page_fields.ts).
const WEBHOOK_FIELDS = "messages,messaging_postbacks,message_reactions,message_reads";
const PAGE_FIELDS = "id,name,access_token,tasks,instagram_business_account{id,username}";
// One fixed PKCE pair: Meta (and the fake) redeem a code only with the verifier of its challenge.
const CODE_VERIFIER = "floor-floor-floor-floor-floor-floor-floor-floor";
const CODE_CHALLENGE = base64url(
  await crypto.subtle.digest("SHA-256", new TextEncoder().encode(CODE_VERIFIER)),
);
const PROOF_KEY = await crypto.subtle.importKey(
  "raw",
  new TextEncoder().encode(APP_SECRET),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["sign"],
);

export default {
  async fetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (url.pathname === "/bench-floor") return await connect(request);
    if (url.pathname === "/bench-floor-callback") return await callback(url.searchParams);
    return await finish(request);
  },
};

async function connect(request: Request): Promise<Response> {
  const doctorId = subject(request);
  const nonceHash = randomHex();
  await rpc("create_oauth_state", {
    p_doctor_id: doctorId,
    p_nonce_hash: nonceHash,
    p_expires_at: new Date(Date.now() + 600_000).toISOString(),
  });
  const dialog = new URL(DIALOG);
  dialog.search = new URLSearchParams({
    client_id: APP_ID,
    redirect_uri: REDIRECT_URI,
    state: `${doctorId}.${nonceHash}`,
    response_type: "code",
    scope: SCOPES,
    code_challenge: CODE_CHALLENGE,
    code_challenge_method: "S256",
  }).toString();
  return Response.json({ url: dialog.toString() });
}

async function callback(query: URLSearchParams): Promise<Response> {
  const [doctorId, nonceHash] = query.get("state")!.split(".");
  await rpc("claim_oauth_state", { p_doctor_id: doctorId, p_nonce_hash: nonceHash });
  const short = await graph("GET", "/oauth/access_token", {
    client_id: APP_ID,
    client_secret: APP_SECRET,
    redirect_uri: REDIRECT_URI,
    code: query.get("code")!,
    code_verifier: CODE_VERIFIER,
  });
  const long = await graph("GET", "/oauth/access_token", {
    grant_type: "fb_exchange_token",
    client_id: APP_ID,
    client_secret: APP_SECRET,
    fb_exchange_token: short.access_token,
  });
  const user = await graph("GET", "/me", {
    fields: `id,permissions,accounts.limit(100){${PAGE_FIELDS}}`,
    ...(await tokenParams(long.access_token)),
  });
  const pending = randomHex();
  await rpc("create_pending_connection", {
    p_token_hash: pending,
    p_doctor_id: doctorId,
    // Stored as Meta gave it, behind the prefix the column's check asks of an encrypted token.
    p_pages: user.accounts.data.map((page: any) => ({
      page_id: page.id,
      page_name: page.name,
      instagram_account_id: page.instagram_business_account.id,
      instagram_username: page.instagram_business_account.username,
      access_token: `v0.${page.access_token}`,
    })),
    p_facebook_user_id: user.id,
    p_granted_scopes: user.permissions.data.map((permission: any) => permission.permission),
  });
  return Response.json({ pending });
}

async function finish(request: Request): Promise<Response> {
  const { pending } = await request.json();
  const ref = {
    p_doctor_id: subject(request),
    p_token_hash: pending,
    p_page_id: null,
    p_correlation_id: crypto.randomUUID(),
  };
  const { page } = await rpc("open_pending_connection", ref);
  const subscribe = async () =>
    await graph("POST", `/${page.page_id}/subscribed_apps`, {
      subscribed_fields: WEBHOOK_FIELDS,
      ...(await tokenParams(page.access_token.slice("v0.".length))),
    });
  await subscribe();
  await rpc("link_pending_connection", { ...ref, p_page_id: page.page_id });
  // Converging, as finish does (_shared/meta/link_webhooks.ts): read, write, read.
  const target = { p_token_kind: "page", p_object_id: page.page_id };
  await rpc("subscription_target", target);
  await subscribe();
  await rpc("subscription_target", target);
  return Response.json({ connected: true });
}

/** The JWT's `sub`, unverified: verifying it is the real functions' work, not I/O. */
function subject(request: Request): string {
  const payload = request.headers.get("authorization")!.split(".")[1];
  return JSON.parse(atob(payload.replaceAll("-", "+").replaceAll("_", "/"))).sub;
}

async function rpc(name: string, args: Record<string, unknown>) {
  const response = await fetch(`${SUPABASE_URL}/rest/v1/rpc/${name}`, {
    method: "POST",
    headers: { apikey: SECRET_KEY, "content-type": "application/json" },
    body: JSON.stringify(args),
  });
  const body = await response.text();
  if (!response.ok) throw new Error(`${name}: ${response.status} ${body}`);
  return body ? JSON.parse(body) : undefined; // void functions answer 204
}

async function graph(method: string, path: string, params: Record<string, string>) {
  const response = await fetch(`${GRAPH}${path}?${new URLSearchParams(params)}`, {
    method,
    headers: { accept: "application/json" },
  });
  if (!response.ok) throw new Error(`${path}: ${response.status} ${await response.text()}`);
  return await response.json();
}

async function tokenParams(token: string) {
  const proof = await crypto.subtle.sign("HMAC", PROOF_KEY, new TextEncoder().encode(token));
  return { access_token: token, appsecret_proof: hex(proof) };
}

function randomHex(): string {
  return hex(crypto.getRandomValues(new Uint8Array(32)).buffer);
}

function hex(bytes: ArrayBuffer): string {
  return Array.from(new Uint8Array(bytes), (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function base64url(bytes: ArrayBuffer): string {
  return btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_")
    .replace(/=+$/, "");
}
