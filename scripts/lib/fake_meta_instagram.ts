// Business Login for Instagram, as the fake Meta serves it under three path prefixes of its own loopback
// server (the tests point INSTAGRAM_LOGIN_{DIALOG,API,GRAPH}_BASE_URL at them):
//   GET    /ig-www/oauth/authorize             the authorize window (a clearly marked sandbox consent page)
//   POST   /ig-www/oauth/authorize/decision    Allow / Cancel -> redirect_uri?code&state#_ or ?error=access_denied
//   POST   /ig-api/oauth/access_token          the code exchange (a form)
//   GET    /ig-graph/access_token              ig_exchange_token: short-lived -> long-lived
//   GET    /ig-graph/refresh_access_token      ig_refresh_token: long-lived -> a new long-lived one
//   GET    /ig-graph[/{v}]/me                  id, user_id, username, account_type, name
//   GET|POST|DELETE /ig-graph[/{v}]/me/subscribed_apps   the account's webhook subscription for this app
// Where each accepted or refused value comes from: a Meta doc by its title, a real answer quoted in a
// public thread, or "guess" (Meta's pages are silent and no real answer was found):
//   authorize: client_id (the Instagram app id), redirect_uri, response_type=code, scope (comma- or
//     space-separated), state returned as given ("Business Login for Instagram"). Cancel:
//     error=access_denied&error_reason=user_denied&error_description=The+user+denied+your+request (same
//     page). The redirect carries "#_" after the code ("we append #_ ... strip it out": "Oauth Authorize").
//     The refusal of a wrong client_id or missing parameter on the window: plain text (guess).
//   code: "valid for 1 hour and can only be used once" ("Business Login for Instagram"). Refusals on
//     api.instagram.com use its flat body {"error_type":"OAuthException","code":400,"error_message":…}
//     ("Business Login for Instagram", Sample Rejected Response: "Matching code was not found or was
//     already used", also quoted in jInstagram#191); an expired code gets the same text (guess); a
//     redirect_uri that differs ("This must be the same URI or we will reject the request", same page):
//     "Error validating verification code. Please make sure your redirect_uri is identical to the one you
//     used in the OAuth dialog request" (guess: Graph's wording); a wrong client_id or client_secret:
//     "Invalid platform app" / "Error validating client secret." (guess); grant_type other than
//     authorization_code: "Invalid grant_type" (guess).
//   code answer: flat {"access_token":"IGAA…","user_id":<bare integer>,"permissions":[…]}, as a real answer
//     quoted in a public Go test (TestTokenResponse_NumericUserID: "user_id": 27640875392278831); Meta's
//     page shows it wrapped in {"data":[…]} with permissions as a string: the client reads both. Its
//     user_id is the "Instagram-scoped user ID" (the page's words): here the app-scoped id /me answers as
//     `id` (inference: no page says they are equal).
//   long-lived: {"access_token","token_type":"bearer","expires_in":5183944} ("Access Token" reference;
//     60 days); needs client_secret (the Instagram app's) and a valid short-lived token (same page).
//   refresh: "Refresh a long-lived access token that is at least 24 hours old but has not expired.
//     Refreshed tokens are valid for 60 days from the date at which they are refreshed" ("Refresh Access
//     Token"); same answer shape. Refused too early, or with a short-lived token: HTTP 400
//     {"error":{"message":"Unsupported request - method type: get","type":"IGApiException","code":100}}
//     (the text a real refresh got in in2code-de/instagram#41; that Meta answers it for these cases is a
//     guess). Expired: code 190, subcode 463, "Error validating access token: Session has expired …"
//     (guess: Graph's convention; no Instagram host sample). The old token after a refresh: Meta's pages
//     do not say; here it stays valid until its own expiry (guess).
//   /me: id ("The app user's app-scoped ID") and user_id ("The Instagram professional account ID … the
//     value of the id field received in webhook notifications"), username, account_type ("Business" or
//     "Media_Creator"), name ("Get Started"); ids as strings, flat (the page shows {"data":[…]}; peers
//     read it flat: chatwoot, postiz). Needs instagram_business_basic ("Get Started"); refused (#10)
//     otherwise (guess on the text).
//   subscribed_apps POST: subscribed_fields one comma-separated value, answer {"success":true} ("Setup
//     Webhooks Subscriptions"); fields from "Instagram webhook fields and permissions" (Oct 2026); the
//     messaging fields need instagram_business_manage_messages (same page); the refusal texts: guess.
//     GET {"data":[{"subscribed_fields":[…]}]} or {"data":[]} (what peers read; not on Meta's page: guess).
//     DELETE {"success":true} (not documented for Instagram Login; chatwoot calls it: guess).
//   An unknown token: 190 "Invalid OAuth access token - Cannot parse access token" (quoted in
//     TiagoGrosso/instagram-graph-api-lib#240). A killed token: 190 with the subcode given (default 460,
//     guess). Usage headers: not sent on these hosts (guess).
// Tokens: short-lived 1 hour, long-lived and refreshed 60 days ("Access Token", "Refresh Access Token").

/** The Instagram fields of "Instagram webhook fields and permissions" (Instagram Login column). */
export const INSTAGRAM_LOGIN_FIELDS = [
  "comments",
  "live_comments",
  "mentions",
  "messages",
  "messaging_postbacks",
  "messaging_seen",
  "message_reactions",
  "messaging_referral",
];
const MESSAGING_FIELDS = new Set([
  "messages",
  "messaging_postbacks",
  "messaging_seen",
  "message_reactions",
  "messaging_referral",
]);

export const IG_SHORT_LIVED_MS = 3_600_000;
export const IG_LONG_LIVED_SECONDS = 5_183_944;
const DAY_MS = 86_400_000;
const CODE_LIFETIME_MS = 3_600_000;

export type InstagramStep =
  | "ig_dialog"
  | "ig_code_exchange"
  | "ig_token_exchange"
  | "ig_refresh"
  | "ig_me"
  | "ig_subscribe"
  | "ig_unsubscribe"
  | "ig_read_subscriptions";

export interface InstagramFault {
  status?: number;
  error?: { code: number; message?: string; type?: string; error_subcode?: number; is_transient?: boolean };
  delayMs?: number;
}

/** What the fake Meta lends this part: its clock, fault queue, counters and latency. */
export interface InstagramHost {
  appId: string;
  appSecret: string;
  now(): number;
  take(step: InstagramStep): InstagramFault | undefined;
  /** Before a step runs: a race test may hold it there (step_gate.ts). */
  pass(step: InstagramStep): Promise<void>;
  count(step: InstagramStep): void;
  wait(ms: number, signal: AbortSignal): Promise<boolean>;
  latencyMs(): number;
  secrets: Set<string>;
}

export interface FakeInstagramAccount {
  /** The sandbox name the consent page offers. */
  name: string;
  /** /me's user_id: the professional account id (webhooks' entry.id), > 2^53. */
  userId: string;
  /** /me's id (app-scoped), another number, > 2^53; the code exchange's user_id. */
  id: string;
  username: string;
  accountType: "BUSINESS" | "MEDIA_CREATOR";
  granted: Set<string>;
  /** This app's subscription's fields; undefined: not subscribed. */
  subscription?: string[];
}

interface IgCode {
  account: string;
  redirectUri: string;
  expiresAt: number;
  used: boolean;
}

interface IgToken {
  account: string;
  kind: "short" | "long";
  issuedAt: number;
  expiresAt: number;
  dead?: { subcode: number };
}

export class FakeInstagram {
  readonly accounts = new Map<string, FakeInstagramAccount>();
  /** Every token handed out for an account (by user_id), newest last. */
  readonly tokens = new Map<string, string[]>();
  #codes = new Map<string, IgCode>();
  #tokens = new Map<string, IgToken>();

  constructor(private host: InstagramHost) {
    // The sandbox's Instagram-only doctor: a professional account with no Facebook Page.
    this.addAccount("ig_demo", { username: "dr.solo.practice" });
  }

  /** A sandbox Instagram professional account (no Page), offered on the consent page. */
  addAccount(
    name: string,
    options: { username?: string; accountType?: "BUSINESS" | "MEDIA_CREATOR"; userId?: string } = {},
  ) {
    const account: FakeInstagramAccount = {
      name,
      // userId given: the professional account a Page of the fake's Facebook side is connected to.
      userId: options.userId ?? bigId("17841"),
      id: bigId("2"),
      username: options.username ?? name,
      accountType: options.accountType ?? "BUSINESS",
      granted: new Set(),
    };
    this.accounts.set(name, account);
    return account;
  }

  account(name: string): FakeInstagramAccount {
    const account = this.accounts.get(name);
    if (!account) throw new Error(`no fake Instagram account ${name}`);
    return account;
  }

  /** The newest token of an account (by sandbox name). */
  newestToken(name: string): string | undefined {
    return this.tokens.get(this.account(name).userId)?.at(-1);
  }

  /**
   * A long-lived token for `name` as if the doctor had connected earlier with every Instagram Login
   * scope granted and the app subscribed to `fields`: for tests of links seeded straight into the table.
   */
  longLivedToken(
    name: string,
    scopes: readonly string[],
    fields: readonly string[] = [],
  ): string {
    const account = this.account(name);
    account.granted = new Set(scopes);
    if (fields.length > 0) account.subscription = [...fields];
    return this.#issue(account, "long");
  }

  /** Makes a token `ms` older (its expiry moves with it): the 24-hour rule and expiry without waiting. */
  ageToken(token: string, ms: number): void {
    const life = this.#life(token);
    life.issuedAt -= ms;
    life.expiresAt -= ms;
  }

  expireToken(token: string): void {
    this.#life(token).expiresAt = this.host.now() - 1;
  }

  /** The token fails every call with 190 (subcode 460: the password changed, as Graph says it; guess). */
  killToken(token: string, subcode = 460): void {
    this.#life(token).dead = { subcode };
  }

  /** When a token expires (ms), or undefined for an unknown token. */
  expiresAt(token: string): number | undefined {
    return this.#tokens.get(token)?.expiresAt;
  }

  dropSubscription(name: string): void {
    this.account(name).subscription = undefined;
  }

  /** The URL the browser lands on after Allow (as `name`, unticking `declined`), or after Cancel. */
  async approve(authorizeUrl: string, name = "ig_demo", declined: string[] = []): Promise<string> {
    const url = new URL(authorizeUrl);
    const scopes = (url.searchParams.get("scope") ?? "").split(/[\s,]+/).filter(Boolean);
    const form = new URLSearchParams(url.searchParams);
    form.set("decision", "allow");
    form.set("account", name);
    for (const scope of scopes) if (!declined.includes(scope)) form.append("grant", scope);
    return await this.#decide(url, form);
  }

  async cancel(authorizeUrl: string): Promise<string> {
    const url = new URL(authorizeUrl);
    const form = new URLSearchParams(url.searchParams);
    form.set("decision", "cancel");
    return await this.#decide(url, form);
  }

  async #decide(url: URL, form: URLSearchParams): Promise<string> {
    const response = await fetch(`${url.origin}${url.pathname}/decision`, {
      method: "POST",
      body: form,
      redirect: "manual",
    });
    await response.body?.cancel();
    const location = response.headers.get("location");
    if (!location) throw new Error(`the Instagram consent answered ${response.status} without a redirect`);
    return location;
  }

  /** The fake Meta's router hands every path under /ig-www, /ig-api, /ig-graph here. */
  async handle(request: Request, url: URL): Promise<Response | undefined> {
    const path = url.pathname;
    if (path === "/ig-www/oauth/authorize" && request.method === "GET") {
      this.host.count("ig_dialog");
      return this.#dialog(url.searchParams);
    }
    if (path === "/ig-www/oauth/authorize/decision" && request.method === "POST") {
      return this.#decision(new URLSearchParams(await request.text()));
    }
    if (path === "/ig-api/oauth/access_token") {
      if (request.method !== "POST") return flatError("Invalid request: this endpoint takes a POST (guess)");
      const form = new URLSearchParams(await request.text());
      return await this.#step("ig_code_exchange", request, form, () => this.#exchangeCode(form), true);
    }
    if (!path.startsWith("/ig-graph/")) return undefined;
    const q = url.searchParams;
    // /me and subscribed_apps with or without a version segment, as Graph hosts accept both.
    const rest = path.slice("/ig-graph".length).replace(/^\/v\d{1,3}\.\d/, "");
    if (rest === "/access_token" && request.method === "GET") {
      return await this.#step("ig_token_exchange", request, q, () => this.#exchangeToken(q));
    }
    if (rest === "/refresh_access_token" && request.method === "GET") {
      return await this.#step("ig_refresh", request, q, () => this.#refresh(q));
    }
    if (rest === "/me" && request.method === "GET") {
      return await this.#step("ig_me", request, q, () => this.#me(q));
    }
    if (rest === "/me/subscribed_apps") {
      const step =
        ({ GET: "ig_read_subscriptions", POST: "ig_subscribe", DELETE: "ig_unsubscribe" } as const)[
          request.method as "GET" | "POST" | "DELETE"
        ];
      if (step) return await this.#step(step, request, q, () => this.#subscribedApps(request.method, q));
    }
    return graphError(
      400,
      100,
      `Unsupported request - method type: ${request.method.toLowerCase()}`,
      "IGApiException",
    );
  }

  async #step(
    step: InstagramStep,
    request: Request,
    q: URLSearchParams,
    handle: () => Response,
    flat = false,
  ): Promise<Response> {
    this.host.count(step);
    await this.host.pass(step);
    for (const value of q.values()) if (value.length > 20) this.host.secrets.add(value);
    const fault = this.host.take(step);
    const wait = (fault?.delayMs ?? 0) + this.host.latencyMs();
    if (wait > 0 && !(await this.host.wait(wait, request.signal))) return new Response(null, { status: 499 });
    if (fault?.error || fault?.status) {
      const error = fault.error ??
        { code: 2, message: "Service temporarily unavailable", is_transient: true };
      const status = fault.status ?? 500;
      if (flat && status < 500) {
        return Response.json({
          error_type: error.type ?? "OAuthException",
          code: status,
          error_message: error.message,
        }, {
          status,
        });
      }
      return graphError(
        status,
        error.code,
        error.message ?? "An unexpected error has occurred.",
        error.type,
        error.error_subcode,
        error.is_transient,
      );
    }
    return handle();
  }

  #dialog(q: URLSearchParams): Response {
    if (q.get("client_id") !== this.host.appId) {
      return new Response("Invalid app ID: the client_id is not this Instagram app (guess).", {
        status: 400,
      });
    }
    if (!q.get("redirect_uri") || q.get("response_type") !== "code" || !q.get("scope")) {
      return new Response("Missing redirect_uri, scope or response_type=code (guess).", { status: 400 });
    }
    const scopes = q.get("scope")!.split(/[\s,]+/).filter(Boolean);
    const hidden = [...q.entries()].map(([name, value]) =>
      `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`
    ).join("");
    const accounts = [...this.accounts.values()].map((account, index) =>
      `<label><input type="radio" name="account" value="${escape(account.name)}"${
        index === 0 ? " checked" : ""
      }> @${escape(account.username)} (Instagram professional account, no Facebook Page)</label><br>`
    ).join("");
    const grants = scopes.map((scope) =>
      `<label><input type="checkbox" name="grant" value="${escape(scope)}" checked> ${
        escape(scope)
      }</label><br>`
    ).join("");
    const html = `<!doctype html><meta charset="utf-8"><title>Instagram sandbox (not Meta)</title>
<h1>Local Instagram sandbox: not Instagram</h1>
<form method="post" action="/ig-www/oauth/authorize/decision">${hidden}
<p>Log in as:</p>${accounts}<p>Allow this app to:</p>${grants}
<button name="decision" value="allow">Allow</button> <button name="decision" value="cancel">Cancel</button></form>`;
    return new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } });
  }

  #decision(form: URLSearchParams): Response {
    const redirect = new URL(form.get("redirect_uri") ?? "");
    const state = form.get("state");
    if (form.get("decision") !== "allow") {
      redirect.searchParams.set("error", "access_denied");
      redirect.searchParams.set("error_reason", "user_denied");
      redirect.searchParams.set("error_description", "The user denied your request");
      if (state !== null) redirect.searchParams.set("state", state);
      return new Response(null, { status: 302, headers: { location: redirect.toString() } });
    }
    const account = this.accounts.get(form.get("account") ?? "");
    if (!account) return new Response("Unknown sandbox account", { status: 400 });
    const requested = (form.get("scope") ?? "").split(/[\s,]+/).filter(Boolean);
    const ticked = form.getAll("grant");
    account.granted = new Set(requested.filter((scope) => ticked.includes(scope)));
    const code = `AQ${randomToken(140)}`;
    this.host.secrets.add(code);
    this.#codes.set(code, {
      account: account.name,
      redirectUri: form.get("redirect_uri")!,
      expiresAt: this.host.now() + CODE_LIFETIME_MS,
      used: false,
    });
    redirect.searchParams.set("code", code);
    if (state !== null) redirect.searchParams.set("state", state);
    return new Response(null, { status: 302, headers: { location: `${redirect}#_` } });
  }

  #exchangeCode(form: URLSearchParams): Response {
    if (form.get("client_id") !== this.host.appId) return flatError("Invalid platform app");
    if (form.get("client_secret") !== this.host.appSecret) {
      return flatError("Error validating client secret.");
    }
    if (form.get("grant_type") !== "authorization_code") return flatError("Invalid grant_type");
    const grant = this.#codes.get(form.get("code") ?? "");
    if (!grant || grant.used || grant.expiresAt <= this.host.now()) {
      return flatError("Matching code was not found or was already used");
    }
    if (grant.redirectUri !== form.get("redirect_uri")) {
      return flatError(
        "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
      );
    }
    grant.used = true;
    const account = this.account(grant.account);
    const token = this.#issue(account, "short");
    // The user_id as Meta writes it: a bare integer, above 2^53 (JSON.stringify of a number cannot).
    const body = `{"access_token":${JSON.stringify(token)},"user_id":${account.id},"permissions":${
      JSON.stringify([...account.granted])
    }}`;
    return new Response(body, { headers: { "content-type": "application/json" } });
  }

  #exchangeToken(q: URLSearchParams): Response {
    if (q.get("grant_type") !== "ig_exchange_token") {
      return graphError(400, 100, "Unsupported request - method type: get", "IGApiException");
    }
    if (q.get("client_secret") !== this.host.appSecret) {
      return graphError(400, 1, "Error validating client secret.", "OAuthException");
    }
    const found = this.#valid(q.get("access_token"));
    if (found instanceof Response) return found;
    if (found.life.kind !== "short") {
      return graphError(400, 100, "Unsupported request - method type: get", "IGApiException");
    }
    return this.#tokenAnswer(this.#issue(this.#accountOf(found.life), "long"));
  }

  #refresh(q: URLSearchParams): Response {
    if (q.get("grant_type") !== "ig_refresh_token") {
      return graphError(400, 100, "Unsupported request - method type: get", "IGApiException");
    }
    const found = this.#valid(q.get("access_token"));
    if (found instanceof Response) return found;
    if (found.life.kind !== "long" || this.host.now() - found.life.issuedAt < DAY_MS) {
      return graphError(400, 100, "Unsupported request - method type: get", "IGApiException");
    }
    return this.#tokenAnswer(this.#issue(this.#accountOf(found.life), "long"));
  }

  #me(q: URLSearchParams): Response {
    const found = this.#valid(q.get("access_token"));
    if (found instanceof Response) return found;
    const account = this.#accountOf(found.life);
    if (!account.granted.has("instagram_business_basic")) {
      return graphError(
        400,
        10,
        "(#10) Application does not have permission for this action",
        "OAuthException",
      );
    }
    const all: Record<string, string> = {
      id: account.id,
      user_id: account.userId,
      username: account.username,
      account_type: account.accountType,
      name: account.username,
    };
    const fields = (q.get("fields") ?? "id").split(",").map((field) => field.trim()).filter(Boolean);
    const unknown = fields.find((field) => !(field in all));
    if (unknown) {
      return graphError(400, 100, `(#100) Tried accessing nonexisting field (${unknown})`, "IGApiException");
    }
    return Response.json(Object.fromEntries(fields.map((field) => [field, all[field]])));
  }

  #subscribedApps(method: string, q: URLSearchParams): Response {
    const found = this.#valid(q.get("access_token"));
    if (found instanceof Response) return found;
    const account = this.#accountOf(found.life);
    if (method === "GET") {
      return Response.json({
        data: account.subscription ? [{ subscribed_fields: account.subscription }] : [],
      });
    }
    if (method === "DELETE") {
      account.subscription = undefined;
      return Response.json({ success: true });
    }
    const fields = (q.get("subscribed_fields") ?? "").split(",").map((field) => field.trim()).filter(Boolean);
    if (fields.length === 0) {
      return graphError(400, 100, "(#100) The parameter subscribed_fields is required", "IGApiException");
    }
    const bad = fields.findIndex((field) => !INSTAGRAM_LOGIN_FIELDS.includes(field));
    if (bad >= 0) {
      return graphError(
        400,
        100,
        `(#100) Param subscribed_fields[${bad}] must be one of {${
          INSTAGRAM_LOGIN_FIELDS.join(", ")
        }} - got "${fields[bad]}"`,
        "IGApiException",
      );
    }
    if (
      fields.some((field) => MESSAGING_FIELDS.has(field)) &&
      !account.granted.has("instagram_business_manage_messages")
    ) {
      return graphError(400, 200, "(#200) Permissions error", "IGApiException");
    }
    account.subscription = fields;
    return Response.json({ success: true });
  }

  #valid(token: string | null): { token: string; life: IgToken } | Response {
    const life = this.#tokens.get(token ?? "");
    if (!token || !life) {
      return graphError(400, 190, "Invalid OAuth access token - Cannot parse access token", "OAuthException");
    }
    if (life.dead) {
      return graphError(
        400,
        190,
        "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
        "OAuthException",
        life.dead.subcode,
      );
    }
    if (life.expiresAt <= this.host.now()) {
      return graphError(
        400,
        190,
        `Error validating access token: Session has expired on ${new Date(life.expiresAt).toUTCString()}.`,
        "OAuthException",
        463,
      );
    }
    return { token, life };
  }

  #life(token: string): IgToken {
    const life = this.#tokens.get(token);
    if (!life) throw new Error("not a token of the fake Instagram");
    return life;
  }

  #accountOf(life: IgToken): FakeInstagramAccount {
    return this.account(life.account);
  }

  #issue(account: FakeInstagramAccount, kind: "short" | "long"): string {
    // Instagram Login user tokens start IGAA (real tokens quoted in peers' tests).
    const token = `IGAA${kind}${randomToken(160)}`;
    const now = this.host.now();
    this.#tokens.set(token, {
      account: account.name,
      kind,
      issuedAt: now,
      expiresAt: now + (kind === "short" ? IG_SHORT_LIVED_MS : IG_LONG_LIVED_SECONDS * 1000),
    });
    this.tokens.set(account.userId, [...(this.tokens.get(account.userId) ?? []), token]);
    this.host.secrets.add(token);
    return token;
  }

  #tokenAnswer(token: string): Response {
    const expiresIn = Math.round((this.#tokens.get(token)!.expiresAt - this.host.now()) / 1000);
    return Response.json({ access_token: token, token_type: "bearer", expires_in: expiresIn });
  }
}

/**
 * A digit string above 2^53 (17 digits), unique enough for test stacks sharing one database, and odd:
 * between 2^53 and 2^57 a double holds only even integers, so JSON.parse would always change it.
 */
function bigId(prefix: string): string {
  const digits = Array.from(crypto.getRandomValues(new Uint8Array(16 - prefix.length)), (byte) => byte % 10);
  return `${prefix}${digits.join("")}${[1, 3, 5, 7, 9][crypto.getRandomValues(new Uint8Array(1))[0] % 5]}`;
}

function flatError(message: string, status = 400): Response {
  return Response.json({ error_type: "OAuthException", code: status, error_message: message }, { status });
}

function graphError(
  status: number,
  code: number,
  message: string,
  type = "OAuthException",
  subcode?: number,
  transient?: boolean,
): Response {
  return Response.json({
    error: {
      message,
      type,
      code,
      error_subcode: subcode,
      is_transient: transient,
      fbtrace_id: `A${randomToken(20)}`,
    },
  }, { status });
}

function escape(value: string): string {
  return value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

function randomToken(length: number): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(
    crypto.getRandomValues(new Uint8Array(length)),
    (byte) => alphabet[byte % alphabet.length],
  )
    .join("");
}
