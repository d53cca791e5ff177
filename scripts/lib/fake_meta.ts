// A stand-in for Meta on loopback, faithful to the documented endpoints the flow uses:
//   GET  /{v}/dialog/oauth              the login dialog (a clearly marked sandbox consent page)
//   POST /{v}/dialog/oauth/decision     Allow / Cancel -> redirect_uri?code&state or ?error=access_denied
//   GET  /{v}/oauth/access_token        code -> short-lived token; grant_type=fb_exchange_token -> long-lived
//   GET  /{v}/me/accounts               the user's Pages with the requested fields, paged with paging.next
// Codes are single-use and bound to the redirect_uri and, when the dialog had a PKCE code_challenge, to
// its code_verifier (as Meta enforces it: "Invalid code verifier", code 1, HTTP 400, even with the app
// secret); /me/accounts enforces appsecret_proof. Errors
// use Graph's body ({"error":{message,type,code,error_subcode,fbtrace_id}}). Every Graph call waits
// `latencyMs`; faults can be queued per step; calls are counted.

export type Step = "dialog" | "code_exchange" | "token_exchange" | "list_pages";

export interface FakePage {
  id: string;
  name: string;
  instagram?: { id: string; username: string };
}

export interface Fault {
  /** HTTP status to answer with (default 500 when `error` is set). */
  status?: number;
  error?: { code: number; message?: string; type?: string; error_subcode?: number; is_transient?: boolean };
  /** Wait this long first (answers after the wait unless the client gave up). */
  delayMs?: number;
}

export interface FakeMetaOptions {
  appId: string;
  appSecret: string;
  graphVersion: string;
  latencyMs?: number;
  accountsPageSize?: number;
  port?: number;
}

interface CodeGrant {
  userId: string;
  redirectUri: string;
  expiresAt: number;
  used: boolean;
  pkce?: { challenge: string; method: "S256" | "plain" };
}

// RFC 7636 4.1, as Meta's message words it.
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const INVALID_CODE_VERIFIER =
  "Invalid code verifier. Code verifier should be a cryptographically random string using the characters A-Z, a-z, 0-9, and the punctuation characters -._~ (hyphen, period, underscore, and tilde), between 43 and 128 characters long.";

export class FakeMeta {
  readonly calls: Record<Step, number> = { dialog: 0, code_exchange: 0, token_exchange: 0, list_pages: 0 };
  /** Every Page token handed out, newest last, by Page id: what the callback should end up storing. */
  readonly pageTokens = new Map<string, string[]>();
  /** Every secret this fake issued or was given (codes, tokens), for leak checks. */
  readonly secrets = new Set<string>();
  latencyMs: number;
  /** Pages per /me/accounts answer (Meta's default is 25); small values exercise paging.next. */
  accountsPageSize: number;

  #server: Deno.HttpServer<Deno.NetAddr>;
  #users = new Map<string, FakePage[]>();
  /** The named sandbox accounts offered on the consent page; throwaway test users are not listed. */
  #listed = new Set<string>();
  #codes = new Map<string, CodeGrant>();
  #tokens = new Map<string, { userId: string; kind: "short" | "long" }>();
  #faults = new Map<Step, Fault[]>();
  #nextId = 1;

  constructor(private options: FakeMetaOptions) {
    this.latencyMs = options.latencyMs ?? 0;
    this.accountsPageSize = options.accountsPageSize ?? 25;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
      (request) => this.#handle(request),
    );
    this.addUser("demo", []);
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** A named sandbox account who manages these Pages, offered on the consent page. */
  addUser(userId: string, pages: FakePage[]): string {
    this.#listed.add(userId);
    this.#users.set(userId, pages);
    return userId;
  }

  /** A throwaway Meta user (approved by id, not listed on the consent page) with `count` Pages (each with an Instagram account unless `withInstagram` is false). */
  newUser(count = 1, withInstagram = true): { userId: string; pages: FakePage[] } {
    const userId = `user${this.#nextId++}`;
    const pages = Array.from({ length: count }, () => this.newPage(withInstagram));
    this.#users.set(userId, pages);
    return { userId, pages };
  }

  newPage(withInstagram = true): FakePage {
    const n = this.#nextId++;
    const id = String(100_000_000_000 + Math.floor(Math.random() * 1e9) * 100 + n);
    return {
      id,
      name: `Clinic ${n}`,
      instagram: withInstagram
        ? { id: String(17_841_400_000_000_000n + BigInt(id)), username: `clinic_${n}` }
        : undefined,
    };
  }

  /** Queues faults for the next calls of a step, in order. */
  inject(step: Step, ...faults: Fault[]): void {
    this.#faults.set(step, [...(this.#faults.get(step) ?? []), ...faults]);
  }

  resetCounts(): void {
    for (const step of Object.keys(this.calls) as Step[]) this.calls[step] = 0;
  }

  /** What the browser does when the doctor presses Allow (as `userId`): returns Meta's redirect. */
  async approve(dialogUrl: string, userId: string): Promise<string> {
    return await decideDialog(dialogUrl, { decision: "allow", user: userId });
  }

  async cancel(dialogUrl: string): Promise<string> {
    return await decideDialog(dialogUrl, { decision: "cancel" });
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(`/${this.options.graphVersion}`, "");
    if (path === "/dialog/oauth" && request.method === "GET") return this.#dialog(url);
    if (path === "/dialog/oauth/decision" && request.method === "POST") {
      return this.#decision(new URLSearchParams(await request.text()));
    }
    const step: Step | undefined = path === "/oauth/access_token"
      ? (url.searchParams.get("grant_type") === "fb_exchange_token" ? "token_exchange" : "code_exchange")
      : path === "/me/accounts"
      ? "list_pages"
      : undefined;
    if (!step || request.method !== "GET") {
      return graphError(400, 2500, "Unknown path components", "OAuthException");
    }

    this.calls[step]++;
    for (const value of url.searchParams.values()) if (value.length > 20) this.secrets.add(value);
    const fault = this.#faults.get(step)?.shift();
    const wait = (fault?.delayMs ?? 0) + this.latencyMs;
    if (wait > 0 && !(await sleep(wait, request.signal))) return new Response(null, { status: 499 });
    if (fault?.error || fault?.status) {
      const error = fault.error ??
        { code: 2, message: "Service temporarily unavailable", is_transient: true };
      return graphError(
        fault.status ?? 500,
        error.code,
        error.message ?? "An unexpected error has occurred.",
        error.type ?? "OAuthException",
        error.error_subcode,
        error.is_transient,
      );
    }
    if (step === "code_exchange") return await this.#exchangeCode(url.searchParams);
    if (step === "token_exchange") return this.#exchangeToken(url.searchParams);
    return await this.#accounts(url);
  }

  #dialog(url: URL): Response {
    this.calls.dialog++;
    const q = url.searchParams;
    if (q.get("client_id") !== this.options.appId) {
      return new Response("Invalid App ID: the client_id is not a Meta app.", { status: 400 });
    }
    if (!q.get("redirect_uri") || !q.get("state") || q.get("response_type") !== "code") {
      return new Response("Missing redirect_uri, state or response_type=code.", { status: 400 });
    }
    if (q.has("code_challenge") && !["S256", "plain", null].includes(q.get("code_challenge_method"))) {
      return new Response("Invalid code_challenge_method.", { status: 400 });
    }
    return new Response(consentPage(url, [...this.#listed].map((id) => [id, this.#users.get(id)!])), {
      headers: { "content-type": "text/html; charset=utf-8" },
    });
  }

  #decision(form: URLSearchParams): Response {
    const redirect = new URL(form.get("redirect_uri") ?? "");
    redirect.searchParams.set("state", form.get("state") ?? "");
    if (form.get("decision") !== "allow") {
      redirect.searchParams.delete("state");
      redirect.searchParams.set("error", "access_denied");
      redirect.searchParams.set("error_code", "200");
      redirect.searchParams.set("error_description", "Permissions error");
      redirect.searchParams.set("error_reason", "user_denied");
      redirect.searchParams.set("state", form.get("state") ?? "");
    } else {
      const user = form.get("user") ?? "demo";
      if (!this.#users.has(user)) return new Response("Unknown sandbox user", { status: 400 });
      const code = `AQ${randomToken(120)}`;
      this.secrets.add(code);
      const challenge = form.get("code_challenge");
      this.#codes.set(code, {
        userId: user,
        redirectUri: form.get("redirect_uri")!,
        expiresAt: Date.now() + 600_000,
        used: false,
        pkce: challenge
          ? { challenge, method: form.get("code_challenge_method") === "plain" ? "plain" : "S256" }
          : undefined,
      });
      redirect.searchParams.set("code", code);
    }
    return new Response(null, { status: 302, headers: { location: `${redirect}#_=_` } });
  }

  #checkApp(q: URLSearchParams): Response | undefined {
    if (q.get("client_id") !== this.options.appId) {
      return graphError(400, 101, "Error validating application. Invalid application ID.", "OAuthException");
    }
    if (q.get("client_secret") !== this.options.appSecret) {
      return graphError(400, 1, "Error validating client secret.", "OAuthException");
    }
  }

  async #exchangeCode(q: URLSearchParams): Promise<Response> {
    const bad = this.#checkApp(q);
    if (bad) return bad;
    const grant = this.#codes.get(q.get("code") ?? "");
    if (!grant) return graphError(400, 100, "Invalid verification code format.", "OAuthException", 36008);
    if (grant.used) {
      return graphError(400, 100, "This authorization code has been used.", "OAuthException", 36009);
    }
    if (grant.expiresAt < Date.now()) {
      return graphError(400, 100, "This authorization code has expired.", "OAuthException", 36007);
    }
    if (grant.redirectUri !== q.get("redirect_uri")) {
      return graphError(
        400,
        100,
        "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
        "OAuthException",
        36008,
      );
    }
    if (grant.pkce && !(await verifierMatches(grant.pkce, q.get("code_verifier")))) {
      return graphError(400, 1, INVALID_CODE_VERIFIER, "OAuthException");
    }
    grant.used = true;
    return Response.json({
      access_token: this.#issueToken(grant.userId, "short"),
      token_type: "bearer",
      expires_in: 5_183_944,
    });
  }

  #exchangeToken(q: URLSearchParams): Response {
    const bad = this.#checkApp(q);
    if (bad) return bad;
    const token = this.#tokens.get(q.get("fb_exchange_token") ?? "");
    if (!token) {
      return graphError(400, 190, "Invalid OAuth access token - Cannot parse access token", "OAuthException");
    }
    return Response.json({
      access_token: this.#issueToken(token.userId, "long"),
      token_type: "bearer",
      expires_in: 5_184_000,
    });
  }

  async #accounts(url: URL): Promise<Response> {
    const q = url.searchParams;
    const accessToken = q.get("access_token") ?? "";
    const token = this.#tokens.get(accessToken);
    if (!token) {
      return graphError(400, 190, "Invalid OAuth access token - Cannot parse access token", "OAuthException");
    }
    if (q.get("appsecret_proof") !== await hmacHex(this.options.appSecret, accessToken)) {
      return graphError(
        400,
        100,
        "Invalid appsecret_proof provided in the API argument",
        "GraphMethodException",
      );
    }
    const fields = q.get("fields") ?? "id,name";
    const limit = Math.min(Number(q.get("limit") ?? 25), this.accountsPageSize);
    const offset = Number(q.get("after") ? atob(q.get("after")!) : 0);
    const pages = this.#users.get(token.userId) ?? [];
    const data = pages.slice(offset, offset + limit).map((page) => {
      const item: Record<string, unknown> = { id: page.id };
      if (fields.includes("name")) item.name = page.name;
      if (fields.includes("access_token")) {
        const pageToken = `EAAGpage${randomToken(160)}`;
        this.secrets.add(pageToken);
        this.pageTokens.set(page.id, [...(this.pageTokens.get(page.id) ?? []), pageToken]);
        item.access_token = pageToken;
      }
      if (fields.includes("instagram_business_account") && page.instagram) {
        item.instagram_business_account = { id: page.instagram.id, username: page.instagram.username };
      }
      return item;
    });
    const body: Record<string, unknown> = { data };
    if (offset + limit < pages.length) {
      const next = new URL(url);
      next.searchParams.set("after", btoa(String(offset + limit)));
      body.paging = { cursors: { after: btoa(String(offset + limit)) }, next: next.toString() };
    }
    return Response.json(body);
  }

  #issueToken(userId: string, kind: "short" | "long"): string {
    const token = `EAAG${kind}${randomToken(180)}`;
    this.#tokens.set(token, { userId, kind });
    this.secrets.add(token);
    return token;
  }
}

function graphError(
  status: number,
  code: number,
  message: string,
  type: string,
  subcode?: number,
  transient?: boolean,
) {
  return Response.json({
    error: {
      message,
      type,
      code,
      error_subcode: subcode,
      is_transient: transient,
      fbtrace_id: `A${randomToken(20)}`,
    },
  }, { status, headers: { "www-authenticate": `OAuth "Facebook Platform" "${type}" "${message}"` } });
}

function randomToken(length: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(
    crypto.getRandomValues(new Uint8Array(length)),
    (byte) => alphabet[byte % alphabet.length],
  ).join("");
}

async function verifierMatches(
  pkce: NonNullable<CodeGrant["pkce"]>,
  verifier: string | null,
): Promise<boolean> {
  if (!verifier || !CODE_VERIFIER.test(verifier)) return false;
  if (pkce.method === "plain") return verifier === pkce.challenge;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const challenge = btoa(String.fromCharCode(...digest)).replace(/\+/g, "-").replace(/\//g, "_").replace(
    /=+$/,
    "",
  );
  return challenge === pkce.challenge;
}

async function hmacHex(secret: string, message: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message)));
  return Array.from(mac, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * What a browser does on the sandbox's consent page: loads the dialog, submits the decision, and
 * returns where Meta redirects to. Needs only the dialog URL, so a load generator in a Worker can use it.
 */
export async function decideDialog(dialogUrl: string, form: Record<string, string>): Promise<string> {
  const dialog = new URL(dialogUrl);
  const page = await fetch(dialog);
  if (!page.ok) throw new Error(`dialog refused: ${page.status} ${await page.text()}`);
  await page.body?.cancel();
  const response = await fetch(`${dialog.origin}${dialog.pathname}/decision`, {
    method: "POST",
    body: new URLSearchParams({ ...Object.fromEntries(dialog.searchParams), ...form }),
    redirect: "manual",
  });
  await response.body?.cancel();
  const location = response.headers.get("location");
  if (response.status !== 302 || !location) throw new Error(`dialog decision failed: ${response.status}`);
  return location;
}

// Deno's timers fire about 1 ms late (setTimeout(25) measured 26.3 ms here, setTimeout(24) 25.3 ms), so
// the wait is asked 1 ms early: the added latency is then the stated one, not a millisecond more per call.
const TIMER_LATENESS_MS = 1;

/** Resolves true after `ms`, or false as soon as the client gives up. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve(true);
    }, Math.max(0, ms - TIMER_LATENESS_MS));
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function consentPage(url: URL, users: [string, FakePage[]][]): string {
  const hidden = [...url.searchParams].map(([name, value]) =>
    `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`
  ).join("");
  const options = users.filter(([, pages]) => pages.length).map(([id, pages]) =>
    `<label><input type="radio" name="user" value="${escapeHtml(id)}" ${id === "demo" ? "checked" : ""}> ${
      escapeHtml(id)
    }: ${
      pages.map((page) => escapeHtml(`${page.name}${page.instagram ? ` (@${page.instagram.username})` : ""}`))
        .join(", ")
    }</label>`
  ).join("<br>");
  return `<!doctype html><html><head><meta charset="utf-8"><title>Meta sandbox – not Facebook</title>
<style>body{font-family:system-ui;max-width:40rem;margin:3rem auto}.banner{background:#fde68a;padding:.75rem;border-radius:.5rem}
button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}</style></head><body>
<p class="banner"><strong>LOCAL META SANDBOX</strong> – a fake of Facebook Login for development. No data leaves this machine.</p>
<h1>Connect your Pages?</h1>
<p>App <code>${escapeHtml(url.searchParams.get("client_id") ?? "")}</code> asks for: ${
    escapeHtml(url.searchParams.get("scope") ?? "(Login for Business configuration)")
  }</p>
<form method="post" action="${escapeHtml(url.pathname)}/decision">${hidden}
<fieldset><legend>Sign in to the sandbox as</legend>${options}</fieldset><p>
<button name="decision" value="allow" id="allow">Allow</button>
<button name="decision" value="cancel" id="cancel">Cancel</button></p></form></body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
