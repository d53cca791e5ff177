// A stand-in for Meta on loopback, faithful to the documented endpoints the link's life uses, including
// what is inconvenient:
//   GET    /{v}/dialog/oauth            the login dialog (a clearly marked sandbox consent page)
//   POST   /{v}/dialog/oauth/decision   Allow / Cancel -> redirect_uri?code&state or ?error=access_denied
//   GET    /{v}/oauth/access_token      code (+ PKCE verifier) -> short-lived; fb_exchange_token -> long-lived
//   GET    /{v}/me?fields=...           field expansion: id, permissions, accounts.limit(n){... tasks ...}
//   GET    /{v}/{user-id}/accounts      the next pages of Pages (Meta's paging.next links point here)
//   GET    /{v}/{page-id}/subscribed_apps   the apps subscribed to the Page's webhooks (Page token)
//   POST   /{v}/{page-id}/subscribed_apps   subscribe a Page to the app's webhooks (Page token)
//   DELETE /{v}/{page-id}/subscribed_apps   unsubscribe it
//   DELETE /{v}/{user-id}/permissions       revoke the app (app token or the user's own token)
//   GET    /{v}/debug_token                 what a token is and whether it still works (app token)
//   /ig-www, /ig-api, /ig-graph             Business Login for Instagram (fake_meta_instagram.ts)
// Codes are single-use and bound to the redirect_uri and, when the dialog had a PKCE code_challenge, to
// its code_verifier (Meta: "Invalid code verifier", code 1, HTTP 400, even with the app secret). With
// "Require App Secret" (on by default here) every call with an access_token needs its appsecret_proof,
// and paging.next links come without it, as Meta sends them. A permission the user declined is not
// asked again without auth_type=rerequest. Revoking invalidates all of that user's tokens. Errors use
// Graph's body ({"error":{message,type,code,error_subcode,fbtrace_id}}); every Graph call waits
// `latencyMs`; faults can be queued per step; calls are counted. A link's life after it is made can be
// played from here (fake_meta_health.ts has the answers and their sources): kill a Page's tokens with a
// 190 subcode, drop its subscription, end a user's data access, take back a permission (for every Page
// or one), hand out another app's token, and set the usage headers' figures.
import type { StepGate } from "./step_gate.ts";
import { encodeBase64Url } from "../../supabase/functions/_shared/crypto/base64url.ts";
import { consentPage, decideDialog } from "./fake_meta_consent.ts";
import {
  isPageWebhookField,
  PAGE_WEBHOOK_FIELDS,
} from "../../supabase/functions/_shared/meta/page_fields.ts";
import { type FieldSelection, formatFields, parseFields } from "./fake_meta_fields.ts";
import { FakeInstagram, type InstagramStep } from "./fake_meta_instagram.ts";
import {
  APP_NAME,
  DATA_ACCESS_DAYS,
  type DeadToken,
  deadTokenError,
  type Usage,
  usageHeaders,
  usageOf,
  type UsageSetting,
} from "./fake_meta_health.ts";

export { decideDialog };

/**
 * A signed_request as Meta builds it for the Deauthorize and Data Deletion callbacks:
 * base64url(HMAC-SHA256(payload part, app secret)) "." payload part.
 */
export async function signedRequest(secret: string, payload: Record<string, unknown>): Promise<string> {
  const body = encodeBase64Url(new TextEncoder().encode(JSON.stringify(payload)));
  return `${encodeBase64Url(await hmac(secret, body))}.${body}`;
}

export type Step =
  | "dialog"
  | "code_exchange"
  | "token_exchange"
  | "list_pages"
  | "subscribe"
  | "unsubscribe"
  | "revoke"
  | "debug_token"
  | "read_subscriptions"
  | InstagramStep;

/**
 * An admin's tasks on a Page, as Graph lists them. The task names: MANAGE, CREATE_CONTENT and MODERATE
 * in "Page Subscribed Apps", ADVERTISE and ANALYZE in Business Manager "Pages" (permitted_tasks),
 * MESSAGING in "Webhooks for Pages"; that an admin holds all six is a guess.
 */
export const ADMIN_TASKS = ["ADVERTISE", "ANALYZE", "CREATE_CONTENT", "MESSAGING", "MODERATE", "MANAGE"];

export interface FakePage {
  id: string;
  name: string;
  instagram?: { id: string; username: string };
  /** The user's tasks on the Page (default: an admin's). */
  tasks?: string[];
}

export interface Fault {
  /** HTTP status to answer with (default 500 when `error` is set). */
  status?: number;
  error?: { code: number; message?: string; type?: string; error_subcode?: number; is_transient?: boolean };
  /** Extra response headers (e.g. X-Business-Use-Case-Usage). */
  headers?: Record<string, string>;
  /** Wait this long first (answers after the wait unless the client gave up). */
  delayMs?: number;
}

export interface FakeMetaOptions {
  appId: string;
  appSecret: string;
  graphVersion: string;
  latencyMs?: number;
  accountsPageSize?: number;
  /** The app setting "Require App Secret": every call with an access_token needs appsecret_proof. */
  requireAppSecretProof?: boolean;
  port?: number;
  /** The Instagram Login app (its own id and secret: "Instagram Platform App Review"); defaults for tests. */
  instagramAppId?: string;
  instagramAppSecret?: string;
}

/** The Instagram Login app of a FakeMeta built without one. */
export const DEFAULT_INSTAGRAM_APP = { id: "9876543210123", secret: "fedcba9876543210fedcba9876543210" };

interface FakeUser {
  /** The app-scoped id Graph answers as `id` and signed requests carry as `user_id`. */
  appScopedId: string;
  pages: FakePage[];
  granted: Set<string>;
  declined: Set<string>;
  /** When the app's access to this user's data ends (ms); renewed by each Allow. */
  dataAccessExpiresAt: number;
  /** Pages a granted permission no longer covers (the user unticked them in the app's settings). */
  excludedPages: Map<string, Set<string>>;
}

interface CodeGrant {
  userId: string;
  redirectUri: string;
  expiresAt: number;
  used: boolean;
  pkce?: { challenge: string; method: "S256" | "plain" };
}

interface TokenLife {
  issuedAt: number;
  /** Killed with this 190 error: every Graph call with it fails so, and debug_token says so. */
  dead?: DeadToken;
  /** Issued to another app than this fake's (debug_token refuses to inspect it). */
  otherApp?: boolean;
}
type TokenKind =
  | { userId: string; kind: "short" | "long" }
  | { userId: string; kind: "page"; pageId: string; from: "short" | "long" };
type Token = TokenKind & TokenLife;

// Where each answer of this fake comes from (an issue thread quoting Meta's real answer, a Meta doc by
// its title, or a guess):
//   grant types: authorization code, and fb_exchange_token for the long-lived token ("Long-Lived Access
//     Tokens"); answer shape {access_token, token_type: "bearer", expires_in} (same doc); the exact
//     expires_in values are a guess.
//   /me fields id, name, permissions {permission, status: granted|declined} ("User", "User Permissions");
//     accounts {data, paging: {cursors, next}} with id, name, access_token, tasks,
//     instagram_business_account ("User Accounts", "Page"; paging.next without appsecret_proof: observed
//     behaviour, our own note, no source here); default page size 25: guess from Graph's paging guide.
//   "This authorization code has been used." code 100, OAuthException: quoted from a real Meta answer in
//     public threads (subcode 36009 as other clients record it). "has expired" (36007) and "Invalid
//     verification code format." (36008): same family, not re-checked: guess.
//   "API calls from the server require an appsecret_proof argument" and "Invalid appsecret_proof provided
//     in the API argument", GraphMethodException, code 100: quoted from real answers in public code
//     comments ("Securing Graph API Requests" names the setting).
//   "Error validating client secret." (code 1), "Error validating application. Invalid application ID."
//     (101), "Invalid OAuth access token - Cannot parse access token" (190), "A page access token is
//     required to request this resource." (210), "Unsupported get request." (100/33), "Unknown path
//     components" (2500), "(#200) Permissions error", "(#100) The parameter subscribed_fields is required"
//     (quoted in jgorset/facebook-messenger#231's title): Graph's usual texts, not each re-checked here.
//   Page fields of subscribed_apps and their refusal: PAGE_WEBHOOK_FIELDS below (restfb/restfb#1210).
//   GET subscribed_apps: {"data":[{category, link, name, id, subscribed_fields}]}, an empty list when no
//     app is subscribed ("Webhooks for Instagram Messaging" and "Webhooks for Messenger Platform" sample
//     responses; the link https://www.facebook.com/games/?app_id=... as a real answer quoted in public
//     notes shows it); it needs pages_manage_metadata and pages_show_list and the CREATE_CONTENT, MANAGE
//     or MODERATE task ("Page Subscribed Apps", Reading). Another Page's token is refused as for POST.
//   debug_token: fake_meta_health.ts.
// The lifetimes this fake gives ("Long-Lived Access Tokens" answers expires_in; these exact values are a
// guess, as above), and a Page token got with a short-lived user token: "These Page access tokens are
// valid for 1 hour" ("Get a Page Access Token").
const SHORT_LIVED_SECONDS = 5_183_944;
const LONG_LIVED_SECONDS = 5_184_000;
const PAGE_TOKEN_MS = 3_600_000;
// RFC 7636 4.1, as Meta's message words it (not re-checked against a source here).
const CODE_VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const INVALID_CODE_VERIFIER =
  "Invalid code verifier. Code verifier should be a cryptographically random string using the characters A-Z, a-z, 0-9, and the punctuation characters -._~ (hyphen, period, underscore, and tilde), between 43 and 128 characters long.";
// "Page Subscribed Apps": a Page token "requested by a person who can perform the CREATE_CONTENT, MANAGE,
// or MODERATE" task. Not modelled: "Webhooks for Pages" also asks, for the messages-related fields, the
// MESSAGING task and pages_messaging (see the report on issue 15: the Instagram messaging docs do not).
const SUBSCRIBE_TASKS = ["CREATE_CONTENT", "MANAGE", "MODERATE"];
// The Page subscription fields Meta accepts: supabase/functions/_shared/meta/page_fields.ts, the list
// Meta itself gave when it refused `messaging_seen` on a Page, quoted in restfb/restfb#1210 ("Webhook
// event messaging_seen", 2022-05), plus `message_edits` ("message_edits Webhook Event Reference"). The
// quote breaks off after `page_change_proposal`, so the tail of Meta's list is missing and refused here.
// A field outside it is refused with Meta's words, naming the index of the first bad field:
//   (#100) Param subscribed_fields[2] must be one of {feed, mention, ...} - got "messaging_seen"
// (Graph code 100, OAuthException, HTTP 400).

export class FakeMeta {
  readonly calls: Record<Step, number> = {
    dialog: 0,
    code_exchange: 0,
    token_exchange: 0,
    list_pages: 0,
    subscribe: 0,
    unsubscribe: 0,
    revoke: 0,
    debug_token: 0,
    read_subscriptions: 0,
    ig_dialog: 0,
    ig_code_exchange: 0,
    ig_token_exchange: 0,
    ig_refresh: 0,
    ig_me: 0,
    ig_subscribe: 0,
    ig_unsubscribe: 0,
    ig_read_subscriptions: 0,
  };
  /**
   * Business Login for Instagram on the same server, under /ig-www, /ig-api and /ig-graph
   * (fake_meta_instagram.ts); its calls are counted in `calls` and its faults queued with `inject`.
   */
  readonly instagram: FakeInstagram;
  /** Every Page token handed out, newest last, by Page id: what a link should end up storing. */
  readonly pageTokens = new Map<string, string[]>();
  /** Each Page's webhook subscription: the fields, as the last subscribe set them. */
  readonly subscriptions = new Map<string, string[]>();
  /** App-scoped ids of users whose permissions were revoked, in order. */
  readonly revocations: string[] = [];
  /** Every paging.next link handed out (Meta's carry the token but no appsecret_proof). */
  readonly pagingLinks: string[] = [];
  /** Where paging.next links point (this fake's own origin unless a test says otherwise). */
  pagingOrigin?: string;
  /** Every secret this fake issued or was given (codes, tokens, proofs), for leak checks. */
  readonly secrets = new Set<string>();
  latencyMs: number;
  /** Race tests: every Graph call passes it before it runs, and may be held there (step_gate.ts). */
  gate?: StepGate;
  /** Pages per accounts answer (Meta's default is 25); small values exercise paging.next. */
  accountsPageSize: number;
  requireAppSecretProof: boolean;

  #server: Deno.HttpServer<Deno.NetAddr>;
  #users = new Map<string, FakeUser>();
  /** The named sandbox accounts offered on the consent page; throwaway test users are not listed. */
  #listed = new Set<string>();
  #codes = new Map<string, CodeGrant>();
  #tokens = new Map<string, Token>();
  #faults = new Map<Step, Fault[]>();
  /** Other apps subscribed to a Page, by Page id (GET subscribed_apps lists them beside ours). */
  #otherApps = new Map<string, { id: string; name: string; fields: string[] }[]>();
  #usage: { app?: Usage; business?: Usage } = {};
  #nextId = 1;

  constructor(private options: FakeMetaOptions) {
    this.latencyMs = options.latencyMs ?? 0;
    this.accountsPageSize = options.accountsPageSize ?? 25;
    this.requireAppSecretProof = options.requireAppSecretProof ?? true;
    this.#server = Deno.serve(
      { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
      (request) => this.#handle(request),
    );
    this.addUser("demo", []);
    this.instagram = new FakeInstagram({
      appId: this.instagramAppId,
      appSecret: this.instagramAppSecret,
      now: () => Date.now(),
      take: (step) => this.#faults.get(step)?.shift(),
      count: (step) => this.calls[step]++,
      pass: (step) => this.gate?.pass(`meta ${step}`) ?? Promise.resolve(),
      wait: (ms, signal) => sleep(ms, signal),
      latencyMs: () => this.latencyMs,
      secrets: this.secrets,
    });
  }

  get instagramAppId(): string {
    return this.options.instagramAppId ?? DEFAULT_INSTAGRAM_APP.id;
  }

  get instagramAppSecret(): string {
    return this.options.instagramAppSecret ?? DEFAULT_INSTAGRAM_APP.secret;
  }

  /** The three INSTAGRAM_LOGIN_*_BASE_URL values that point Instagram Login at this fake. */
  get instagramBaseUrls(): { dialog: string; api: string; graph: string } {
    return { dialog: `${this.url}/ig-www`, api: `${this.url}/ig-api`, graph: `${this.url}/ig-graph` };
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}`;
  }

  /** A named sandbox account who manages these Pages, offered on the consent page. */
  addUser(userId: string, pages: FakePage[]): string {
    this.#listed.add(userId);
    this.#setUser(userId, pages);
    return userId;
  }

  /** A throwaway Meta user (approved by id, not listed on the consent page) with `count` Pages (each with an Instagram account unless `withInstagram` is false). */
  newUser(count = 1, withInstagram = true): { userId: string; pages: FakePage[]; appScopedId: string } {
    const userId = `user${this.#nextId++}`;
    const pages = Array.from({ length: count }, () => this.newPage(withInstagram));
    return { userId, pages, appScopedId: this.#setUser(userId, pages).appScopedId };
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

  /** The app-scoped id Graph gives this user (what Meta's signed requests name). */
  appScopedId(userId: string): string {
    return this.#user(userId).appScopedId;
  }

  /** What the user has granted and declined so far. */
  permissionsOf(userId: string): { granted: string[]; declined: string[] } {
    const user = this.#user(userId);
    return { granted: [...user.granted].sort(), declined: [...user.declined].sort() };
  }

  /** Queues faults for the next calls of a step, in order. */
  inject(step: Step, ...faults: Fault[]): void {
    this.#faults.set(step, [...(this.#faults.get(step) ?? []), ...faults]);
  }

  clearFaults(): void {
    this.#faults.clear();
  }

  resetCounts(): void {
    for (const step of Object.keys(this.calls) as Step[]) this.calls[step] = 0;
  }

  // ---- A link's life after it is made (fake_meta_health.ts has the answers and their sources) ----

  /**
   * Kills every Page token issued so far for `pageId`, as Meta does after a password change (460), the
   * app's removal (458), a lost Page role (492), ...: each Graph call with one answers 190 with `subcode`
   * (none: a plain 190), and debug_token reports it invalid with that error. Tokens issued later (the
   * doctor reconnecting) work. Answers how many were killed.
   */
  killPageTokens(pageId: string, subcode?: number): number {
    let killed = 0;
    for (const token of this.#tokens.values()) {
      if (token.kind !== "page" || token.pageId !== pageId) continue;
      token.dead = deadTokenError(this.options.appId, subcode);
      killed++;
    }
    return killed;
  }

  /** Removes the Page's subscription to this app, as another app or a Page admin could. */
  dropSubscription(pageId: string): boolean {
    return this.subscriptions.delete(pageId);
  }

  /** Another app subscribed to the Page (GET subscribed_apps lists it; ours is told apart by its id). */
  subscribeOtherApp(pageId: string, app: { id: string; name: string; fields: string[] }): void {
    this.#otherApps.set(pageId, [...(this.#otherApps.get(pageId) ?? []), app]);
  }

  /**
   * When the app's access to the user's data ends: debug_token reports it as data_access_expires_at, and
   * once it is past, every Graph call with the user's tokens answers 190/493 (MrSwitch/hello.js#548). The
   * user's next Allow renews it for 90 days.
   */
  setDataAccessExpiry(userId: string, at: Date): void {
    this.#user(userId).dataAccessExpiresAt = at.getTime();
  }

  /**
   * The user takes a permission back in the app's settings: for every Page, or (with `pageId`) only for
   * that Page (and its Instagram account), which then leaves the permission's granular targets. Graph
   * calls that need it answer (#200); debug_token no longer lists it (or that target). Taken back for
   * every Page, it counts as declined, so the dialog asks again only with auth_type=rerequest (guess: as
   * for a permission declined in the dialog).
   */
  removePermission(userId: string, permission: string, pageId?: string): void {
    const user = this.#user(userId);
    if (pageId === undefined) {
      user.granted.delete(permission);
      user.declined.add(permission);
      return;
    }
    user.excludedPages.set(permission, new Set([...(user.excludedPages.get(permission) ?? []), pageId]));
  }

  /**
   * The figures of the usage headers ("Rate Limits"): `app` for calls with the app's or a user's token
   * (X-App-Usage), `business` for calls with a Page token (X-Business-Use-Case-Usage); a number sets
   * both. None: no usage headers, as before enough calls were made.
   */
  setUsage(usage?: number | { app?: UsageSetting; business?: UsageSetting }): void {
    const { app, business } = typeof usage === "number" ? { app: usage, business: usage } : usage ?? {};
    this.#usage = {
      app: app === undefined ? undefined : usageOf(app),
      business: business === undefined ? undefined : usageOf(business),
    };
  }

  /**
   * Makes `token` (issued earlier, outside this fake: the demo's seeded link) a Page token of `userId` for
   * `pageId`, got with a long-lived user token after the user granted `granted`, so it works here like one
   * this fake issued.
   */
  adoptPageToken(token: string, userId: string, pageId: string, granted: readonly string[] = []): void {
    const user = this.#user(userId);
    for (const permission of granted) user.granted.add(permission);
    this.#tokens.set(token, { userId, kind: "page", pageId, from: "long", issuedAt: Date.now() });
    this.pageTokens.set(pageId, [...(this.pageTokens.get(pageId) ?? []), token]);
  }

  /** A Page token another app issued for the user's Page: Meta will not tell this app about it. */
  otherAppPageToken(userId: string, pageId: string): string {
    return this.#issueToken({ userId, kind: "page", pageId, from: "long", otherApp: true });
  }

  /** The user whose newest Page token is for `pageId` (who a link of that Page acts as). */
  pageTokenOwner(pageId: string): string | undefined {
    const newest = this.pageTokens.get(pageId)?.at(-1);
    return newest === undefined ? undefined : this.#tokens.get(newest)?.userId;
  }

  /** What the browser does when the doctor presses Allow (as `userId`, declining `declined`). */
  async approve(dialogUrl: string, userId: string, declined: string[] = []): Promise<string> {
    return await decideDialog(dialogUrl, { decision: "allow", user: userId, declined: declined.join(",") });
  }

  async cancel(dialogUrl: string): Promise<string> {
    return await decideDialog(dialogUrl, { decision: "cancel" });
  }

  async close(): Promise<void> {
    await this.#server.shutdown();
  }

  #setUser(userId: string, pages: FakePage[]): FakeUser {
    const existing = this.#users.get(userId);
    const user = existing ? { ...existing, pages } : {
      // Random high digits: the fakes of several test stacks share one database and must not collide.
      appScopedId: String(10_200_000_000_000 + Math.floor(Math.random() * 1e6) * 1e6 + this.#nextId++),
      pages,
      granted: new Set<string>(),
      declined: new Set<string>(),
      dataAccessExpiresAt: Date.now() + DATA_ACCESS_DAYS * 86_400_000,
      excludedPages: new Map<string, Set<string>>(),
    };
    this.#users.set(userId, user);
    return user;
  }

  #user(userId: string): FakeUser {
    const user = this.#users.get(userId);
    if (!user) throw new Error(`no fake Meta user ${userId}`);
    return user;
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname.replace(`/${this.options.graphVersion}`, "");
    // Its own address (the dev banner prints it): what it is, rather than a Graph error.
    if (url.pathname === "/" && request.method === "GET") {
      return new Response(
        "Local Meta sandbox (not Meta): its consent page opens from the demo dashboard's Connect Instagram, with the flow's state.\n",
        { headers: { "content-type": "text/plain; charset=utf-8" } },
      );
    }
    if (/^\/ig-(www|api|graph)\//.test(url.pathname)) {
      return await this.instagram.handle(request, url) ??
        graphError(400, 2500, "Unknown path components", "OAuthException");
    }
    if (path === "/dialog/oauth" && request.method === "GET") return this.#dialog(url);
    if (path === "/dialog/oauth/decision" && request.method === "POST") {
      return this.#decision(new URLSearchParams(await request.text()));
    }
    const route = this.#route(request.method, path, url.searchParams);
    if (!route) return graphError(400, 2500, "Unknown path components", "OAuthException");
    const response = await this.#answer(request, url.searchParams, route);
    // Usage headers ride on Graph's answers, refusals included ("Rate Limits": "most API responses").
    const token = this.#tokens.get(url.searchParams.get("access_token") ?? "");
    const caller = { pageId: token?.kind === "page" ? token.pageId : undefined };
    for (const [name, value] of Object.entries(usageHeaders(this.#usage, caller))) {
      if (!response.headers.has(name)) response.headers.set(name, value);
    }
    return response;
  }

  async #answer(
    request: Request,
    q: URLSearchParams,
    route: { step: Step; handle: () => Response | Promise<Response> },
  ): Promise<Response> {
    this.calls[route.step]++;
    await this.gate?.pass(`meta ${route.step}`);
    for (const value of q.values()) {
      for (const part of value.split("|")) if (part.length > 20) this.secrets.add(part);
    }
    const fault = this.#faults.get(route.step)?.shift();
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
        fault.headers,
      );
    }
    if (route.step === "code_exchange" || route.step === "token_exchange") return await route.handle();
    // debug_token wants the app token before anything else (fake_meta_health.ts).
    if (route.step === "debug_token" && q.get("access_token") !== this.#appToken) {
      return graphError(
        400,
        100,
        "(#100) You must provide an app access token, or a user access token that is an owner or developer of the app",
        "OAuthException",
      );
    }
    const refused = await this.#checkProof(q);
    if (refused) return refused;
    // A dead token fails every call it is used for with its 190 ("Handling Errors").
    const token = this.#tokens.get(q.get("access_token") ?? "");
    const dead = token && this.#deadness(token);
    if (dead) return graphError(400, 190, dead.message, "OAuthException", dead.subcode);
    return await route.handle();
  }

  get #appToken(): string {
    return `${this.options.appId}|${this.options.appSecret}`;
  }

  /** Why a token no longer works, if it does not: killed, its user's data access over, or expired. */
  #deadness(token: Token): DeadToken | undefined {
    if (token.dead) return token.dead;
    if (this.#users.get(token.userId)!.dataAccessExpiresAt <= Date.now()) {
      return deadTokenError(this.options.appId, 493);
    }
    const expiresAt = this.#expiresAt(token);
    if (expiresAt !== undefined && expiresAt <= Date.now()) return deadTokenError(this.options.appId, 463);
  }

  /** When a token expires (ms), or undefined for never (fake_meta_health.ts: expires_at). */
  #expiresAt(token: Token): number | undefined {
    if (token.kind === "page") return token.from === "long" ? undefined : token.issuedAt + PAGE_TOKEN_MS;
    return token.issuedAt + (token.kind === "long" ? LONG_LIVED_SECONDS : SHORT_LIVED_SECONDS) * 1000;
  }

  /** Whether the user granted `permission` for this Page (not taken back for it alone). */
  #grants(user: FakeUser, permission: string, pageId: string): boolean {
    return user.granted.has(permission) && !user.excludedPages.get(permission)?.has(pageId);
  }

  #route(method: string, path: string, q: URLSearchParams) {
    const segments = path.split("/").filter(Boolean);
    if (method === "GET" && path === "/oauth/access_token") {
      return q.get("grant_type") === "fb_exchange_token"
        ? { step: "token_exchange" as const, handle: () => this.#exchangeToken(q) }
        : { step: "code_exchange" as const, handle: () => this.#exchangeCode(q) };
    }
    if (method === "GET" && path === "/me") return { step: "list_pages" as const, handle: () => this.#me(q) };
    if (method === "GET" && segments.length === 2 && segments[1] === "accounts") {
      return { step: "list_pages" as const, handle: () => this.#accountsOf(segments[0], q) };
    }
    if (method === "GET" && path === "/debug_token") {
      return { step: "debug_token" as const, handle: () => this.#debugToken(q) };
    }
    if (segments.length === 2 && segments[1] === "subscribed_apps") {
      if (method === "GET") {
        return { step: "read_subscriptions" as const, handle: () => this.#readSubscriptions(segments[0], q) };
      }
      if (method === "POST") {
        return {
          step: "subscribe" as const,
          handle: () => this.#subscribe(segments[0], q),
        };
      }
      if (method === "DELETE") {
        return { step: "unsubscribe" as const, handle: () => this.#unsubscribe(segments[0], q) };
      }
    }
    if (method === "DELETE" && segments.length === 2 && segments[1] === "permissions") {
      return { step: "revoke" as const, handle: () => this.#revoke(segments[0], q) };
    }
  }

  /** "Require App Secret": the proof must be HMAC-SHA256(app secret, access_token), hex. */
  async #checkProof(q: URLSearchParams): Promise<Response | undefined> {
    const token = q.get("access_token");
    if (!token) {
      return graphError(400, 104, "An access token is required to request this resource.", "OAuthException");
    }
    const proof = q.get("appsecret_proof");
    if (!proof && !this.requireAppSecretProof) return;
    if (!proof) {
      return graphError(
        400,
        100,
        "API calls from the server require an appsecret_proof argument",
        "GraphMethodException",
      );
    }
    // Another app's token is proved with that app's secret, which no call made here has.
    if (proof !== await hmacHex(this.options.appSecret, token) || this.#tokens.get(token)?.otherApp) {
      return graphError(
        400,
        100,
        "Invalid appsecret_proof provided in the API argument",
        "GraphMethodException",
      );
    }
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
    const users = [...this.#listed].map((id) => ({ id, pages: this.#users.get(id)!.pages }));
    return new Response(consentPage(url, users), { headers: { "content-type": "text/html; charset=utf-8" } });
  }

  #decision(form: URLSearchParams): Response {
    const redirect = new URL(form.get("redirect_uri") ?? "");
    if (form.get("decision") !== "allow") {
      redirect.searchParams.set("error", "access_denied");
      redirect.searchParams.set("error_code", "200");
      redirect.searchParams.set("error_description", "Permissions error");
      redirect.searchParams.set("error_reason", "user_denied");
      redirect.searchParams.set("state", form.get("state") ?? "");
      return new Response(null, { status: 302, headers: { location: `${redirect}#_=_` } });
    }
    const userId = form.get("user") ?? "demo";
    const user = this.#users.get(userId);
    if (!user) return new Response("Unknown sandbox user", { status: 400 });

    const requested = (form.get("scope") ?? "").split(",").filter(Boolean);
    const declinedNow = form.has("scopes_listed")
      ? requested.filter((scope) => !form.getAll("grant").includes(scope))
      : (form.get("declined") ?? "").split(",").filter(Boolean);
    const rerequest = form.get("auth_type") === "rerequest";
    for (const scope of requested) {
      // Meta does not ask again for what was declined, unless the app asks with auth_type=rerequest.
      if (declinedNow.includes(scope) || (user.declined.has(scope) && !rerequest)) {
        user.declined.add(scope);
        user.granted.delete(scope);
      } else {
        user.granted.add(scope);
        user.declined.delete(scope);
      }
    }
    user.granted.add("public_profile");
    // Allowing is the user's activity that renews the app's data access ("Authentication Versus Data Access").
    user.dataAccessExpiresAt = Date.now() + DATA_ACCESS_DAYS * 86_400_000;
    // Facebook Login for Business asks again which Pages to share, and a sandbox user shares all of theirs:
    // an Allow grants the permissions for each of them again, so one taken back for a single Page (the
    // sandbox's remove-permission with page_only) returns with a reconnect (guess).
    user.excludedPages.clear();

    const code = `AQ${randomToken(120)}`;
    this.secrets.add(code);
    const challenge = form.get("code_challenge");
    this.#codes.set(code, {
      userId,
      redirectUri: form.get("redirect_uri")!,
      expiresAt: Date.now() + 600_000,
      used: false,
      pkce: challenge
        ? { challenge, method: form.get("code_challenge_method") === "plain" ? "plain" : "S256" }
        : undefined,
    });
    redirect.searchParams.set("state", form.get("state") ?? "");
    redirect.searchParams.set("code", code);
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
      access_token: this.#issueToken({ userId: grant.userId, kind: "short" }),
      token_type: "bearer",
      expires_in: SHORT_LIVED_SECONDS,
    });
  }

  #exchangeToken(q: URLSearchParams): Response {
    const bad = this.#checkApp(q);
    if (bad) return bad;
    const token = this.#tokens.get(q.get("fb_exchange_token") ?? "");
    if (!token || token.kind === "page") return invalidToken();
    return Response.json({
      access_token: this.#issueToken({ userId: token.userId, kind: "long" }),
      token_type: "bearer",
      expires_in: LONG_LIVED_SECONDS,
    });
  }

  #userToken(
    q: URLSearchParams,
  ): { userId: string; user: FakeUser; token: string; kind: "short" | "long" } | Response {
    const value = q.get("access_token") ?? "";
    const token = this.#tokens.get(value);
    if (!token || token.kind === "page") return invalidToken();
    return { userId: token.userId, user: this.#users.get(token.userId)!, token: value, kind: token.kind };
  }

  #me(q: URLSearchParams): Response {
    const owner = this.#userToken(q);
    if (owner instanceof Response) return owner;
    let fields: FieldSelection[];
    try {
      fields = parseFields(q.get("fields") ?? "id,name");
    } catch (error) {
      return graphError(400, 100, `Syntax error: ${(error as Error).message}`, "OAuthException");
    }
    const body: Record<string, unknown> = {};
    for (const field of fields) {
      if (field.name === "id") body.id = owner.user.appScopedId;
      if (field.name === "name") body.name = owner.userId;
      if (field.name === "permissions") {
        body.permissions = {
          data: [
            ...[...owner.user.granted].map((permission) => ({ permission, status: "granted" })),
            ...[...owner.user.declined].map((permission) => ({ permission, status: "declined" })),
          ],
        };
      }
      if (field.name === "accounts") {
        const limit = Number(field.modifiers.limit ?? 25);
        body.accounts = this.#pageList(owner, field.children, limit, 0);
      }
    }
    return Response.json(body);
  }

  #accountsOf(id: string, q: URLSearchParams): Response {
    const owner = this.#userToken(q);
    if (owner instanceof Response) return owner;
    if (id !== owner.user.appScopedId && id !== "me") {
      return graphError(400, 100, "Unsupported get request.", "GraphMethodException", 33);
    }
    const fields = parseFields(q.get("fields") ?? "id,name");
    const offset = q.get("after") ? Number(atob(q.get("after")!)) : 0;
    return Response.json(this.#pageList(owner, fields, Number(q.get("limit") ?? 25), offset));
  }

  /** One page of Pages; its paging.next carries the token but not the proof, as Meta's do. */
  #pageList(
    { userId, user, token, kind }: { userId: string; user: FakeUser; token: string; kind: "short" | "long" },
    fields: FieldSelection[],
    limit: number,
    offset: number,
  ) {
    const size = Math.min(limit, this.accountsPageSize);
    const asked = (name: string) => fields.find((field) => field.name === name);
    const data = user.pages.slice(offset, offset + size).map((page) => {
      const item: Record<string, unknown> = { id: page.id };
      if (asked("name")) item.name = page.name;
      if (asked("tasks")) item.tasks = page.tasks ?? ADMIN_TASKS;
      if (asked("access_token")) {
        const pageToken = this.#issueToken({ userId, kind: "page", pageId: page.id, from: kind });
        this.pageTokens.set(page.id, [...(this.pageTokens.get(page.id) ?? []), pageToken]);
        item.access_token = pageToken;
      }
      const instagram = asked("instagram_business_account");
      // Reading the Instagram account needs instagram_basic ("IG User", Page reference).
      if (instagram && page.instagram && this.#grants(user, "instagram_basic", page.id)) {
        item.instagram_business_account = instagram.children.some((field) => field.name === "username")
          ? { id: page.instagram.id, username: page.instagram.username }
          : { id: page.instagram.id };
      }
      return item;
    });
    const after = btoa(String(offset + size));
    const list: Record<string, unknown> = {
      data,
      paging: { cursors: { before: btoa(String(offset)), after } },
    };
    if (offset + size < user.pages.length) {
      const next = new URL(
        `${this.pagingOrigin ?? this.url}/${this.options.graphVersion}/${user.appScopedId}/accounts`,
      );
      next.searchParams.set("access_token", token);
      next.searchParams.set("fields", formatFields(fields));
      next.searchParams.set("limit", String(limit));
      next.searchParams.set("after", after);
      (list.paging as Record<string, unknown>).next = next.toString();
      this.pagingLinks.push(next.toString());
    }
    return list;
  }

  #pageToken(pageId: string, q: URLSearchParams): { user: FakeUser; page: FakePage } | Response {
    const token = this.#tokens.get(q.get("access_token") ?? "");
    if (!token) return invalidToken();
    if (token.kind !== "page" || token.pageId !== pageId) {
      return graphError(
        400,
        210,
        "A page access token is required to request this resource.",
        "OAuthException",
      );
    }
    const user = this.#users.get(token.userId)!;
    return { user, page: user.pages.find((page) => page.id === pageId)! };
  }

  /**
   * "Page Subscribed Apps": a Page token of someone who can perform CREATE_CONTENT, MANAGE or MODERATE
   * on the Page, with the permissions the call needs.
   */
  #subscriptionRefusal(
    owner: { user: FakeUser; page: FakePage },
    permissions: string[],
  ): Response | undefined {
    if (!permissions.every((permission) => this.#grants(owner.user, permission, owner.page.id))) {
      return graphError(400, 200, "(#200) Permissions error", "OAuthException");
    }
    if (!(owner.page.tasks ?? ADMIN_TASKS).some((task) => SUBSCRIBE_TASKS.includes(task))) {
      return graphError(
        400,
        200,
        "(#200) The user must be able to perform a task on the Page",
        "OAuthException",
      );
    }
  }

  #subscribe(pageId: string, q: URLSearchParams): Response {
    const owner = this.#pageToken(pageId, q);
    if (owner instanceof Response) return owner;
    const refused = this.#subscriptionRefusal(owner, ["pages_manage_metadata"]);
    if (refused) return refused;
    const fields = (q.get("subscribed_fields") ?? "").split(",").filter(Boolean);
    if (!fields.length) {
      return graphError(400, 100, "(#100) The parameter subscribed_fields is required", "OAuthException");
    }
    const bad = fields.findIndex((field) => !isPageWebhookField(field));
    if (bad >= 0) return graphError(400, 100, pageFieldRefusal(bad, fields[bad]), "OAuthException");
    this.subscriptions.set(pageId, fields);
    return Response.json({ success: true });
  }

  /** Our subscription and other apps' ("Page Subscribed Apps", Reading: also pages_show_list). */
  #readSubscriptions(pageId: string, q: URLSearchParams): Response {
    const owner = this.#pageToken(pageId, q);
    if (owner instanceof Response) return owner;
    const refused = this.#subscriptionRefusal(owner, ["pages_manage_metadata", "pages_show_list"]);
    if (refused) return refused;
    const ours = this.subscriptions.get(pageId);
    const apps = [
      ...(this.#otherApps.get(pageId) ?? []),
      ...(ours ? [{ id: this.options.appId, name: APP_NAME, fields: ours }] : []),
    ];
    return Response.json({
      data: apps.map((app) => ({
        category: "Business",
        link: `https://www.facebook.com/games/?app_id=${app.id}`,
        name: app.name,
        id: app.id,
        subscribed_fields: app.fields,
      })),
    });
  }

  /** What a token is (fake_meta_health.ts has each answer's source). The app token was checked first. */
  #debugToken(q: URLSearchParams): Response {
    const token = this.#tokens.get(q.get("input_token") ?? "");
    if (!token) {
      return Response.json({
        data: {
          error: { code: 190, message: "Invalid OAuth access token - Cannot parse access token" },
          is_valid: false,
          scopes: [],
        },
      });
    }
    if (token.otherApp) {
      return graphError(
        400,
        100,
        "(#100) The App_id in the input_token did not match the Viewing App",
        "OAuthException",
      );
    }
    const user = this.#users.get(token.userId)!;
    const dead = this.#deadness(token);
    const longLived = token.kind === "long" || (token.kind === "page" && token.from === "long");
    return Response.json({
      data: {
        app_id: this.options.appId,
        type: token.kind === "page" ? "PAGE" : "USER",
        application: APP_NAME,
        data_access_expires_at: unixSeconds(user.dataAccessExpiresAt),
        ...(dead ? { error: { code: 190, message: dead.message, subcode: dead.subcode } } : {}),
        expires_at: unixSeconds(this.#expiresAt(token) ?? 0),
        is_valid: !dead,
        ...(longLived ? { issued_at: unixSeconds(token.issuedAt) } : {}),
        ...(token.kind === "page" ? { profile_id: token.pageId } : {}),
        scopes: [...user.granted],
        granular_scopes: [...user.granted].filter((scope) => /^(pages|instagram)_/.test(scope)).map((
          scope,
        ) => ({
          scope,
          target_ids: user.pages
            .filter((page) => this.#grants(user, scope, page.id))
            .map((page) => scope.startsWith("instagram_") ? page.instagram?.id : page.id)
            .filter((id) => id !== undefined),
        })),
        user_id: user.appScopedId,
      },
    });
  }

  #unsubscribe(pageId: string, q: URLSearchParams): Response {
    const owner = this.#pageToken(pageId, q);
    if (owner instanceof Response) return owner;
    this.subscriptions.delete(pageId);
    return Response.json({ success: true });
  }

  /** With the app token ({app-id}|{app-secret}) or the user's own; all their tokens die with it. */
  #revoke(appScopedId: string, q: URLSearchParams): Response {
    const entry = [...this.#users].find(([, user]) => user.appScopedId === appScopedId);
    if (!entry) return graphError(400, 100, "(#100) Invalid user id", "OAuthException");
    const [userId, user] = entry;
    const token = q.get("access_token") ?? "";
    const isAppToken = token === `${this.options.appId}|${this.options.appSecret}`;
    if (!isAppToken && this.#tokens.get(token)?.userId !== userId) return invalidToken();
    for (const [value, issued] of this.#tokens) if (issued.userId === userId) this.#tokens.delete(value);
    user.granted.clear();
    this.revocations.push(appScopedId);
    return Response.json({ success: true });
  }

  #issueToken(token: TokenKind & { otherApp?: boolean }): string {
    const value = `EAAG${token.kind}${randomToken(180)}`;
    this.#tokens.set(value, { ...token, issuedAt: Date.now() });
    this.secrets.add(value);
    return value;
  }
}

/** Meta's refusal of a field that is not a Page field (restfb/restfb#1210 quotes it). */
export function pageFieldRefusal(index: number, field: string): string {
  return `(#100) Param subscribed_fields[${index}] must be one of {${
    PAGE_WEBHOOK_FIELDS.join(", ")
  }} - got "${field}"`;
}

function unixSeconds(ms: number): number {
  return Math.floor(ms / 1000);
}

function invalidToken(): Response {
  return graphError(400, 190, "Invalid OAuth access token - Cannot parse access token", "OAuthException");
}

function graphError(
  status: number,
  code: number,
  message: string,
  type: string,
  subcode?: number,
  transient?: boolean,
  headers: Record<string, string> = {},
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
  }, {
    status,
    headers: { "www-authenticate": `OAuth "Facebook Platform" "${type}" "${message}"`, ...headers },
  });
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

async function hmac(secret: string, message: string): Promise<Uint8Array<ArrayBuffer>> {
  const key = await crypto.subtle.importKey(
    "raw",
    new TextEncoder().encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message)));
}

async function hmacHex(secret: string, message: string): Promise<string> {
  return Array.from(await hmac(secret, message), (byte) => byte.toString(16).padStart(2, "0")).join("");
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
