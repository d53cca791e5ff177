// The Graph API calls of the link's life, each with a timeout, all under the caller's deadline.
// Transient failures (see error_class.ts) are retried with capped, jittered exponential backoff. The
// code exchange is retried only when Meta never answered: a code is single-use, so once Meta has
// answered, a retry could only fail. Every call that carries a token also carries appsecret_proof
// (required when the app has "Require App Secret" on), re-attached to Meta's paging links, which
// drop it. Every answer's usage headers are reported to `onUsage` ("Rate Limits"; usage.ts).
//
// Only the code exchange needs the OAuth client's settings (`login`: the redirect URI and PKCE); every
// other call needs the app alone (`meta`), so a caller without a login flow (instagram-maintenance)
// loads only `meta` and gets a MetaGraph without exchangeCode.
import * as z from "zod/mini";
import type { Config } from "../config.ts";
import { hmacSha256Hex } from "../crypto/digest.ts";
import { AppError } from "../errors.ts";
import { META_ID } from "../ids.ts";
import type { Logger } from "../log.ts";
import { classifyGraphError, type GraphFailure, type GraphStep } from "./error_class.ts";
import { highestUsagePercent } from "./usage.ts";

export { highestUsagePercent };

const MAX_PAGING_REQUESTS = 10;
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;
const PAGE_FIELDS = "id,name,access_token,tasks,instagram_business_account{id,username}";

const NUMERIC_ID = z.string().check(z.regex(META_ID));
const Paging = z.optional(z.object({ next: z.optional(z.string()) }));

const TokenResponse = z.object({ access_token: z.string().check(z.minLength(1)) });

const FacebookPage = z.object({
  id: NUMERIC_ID,
  name: z.optional(z.string()),
  access_token: z.optional(z.string().check(z.minLength(1))),
  tasks: z.optional(z.array(z.string())),
  instagram_business_account: z.optional(z.object({ id: NUMERIC_ID, username: z.optional(z.string()) })),
});
const PageList = z.object({ data: z.array(FacebookPage), paging: Paging });
const PermissionList = z.object({
  data: z.array(z.object({ permission: z.string(), status: z.string() })),
  paging: Paging,
});
const UserResponse = z.object({
  id: NUMERIC_ID,
  permissions: z.optional(PermissionList),
  accounts: z.optional(PageList),
});
const Success = z.object({ success: z.literal(true) });

/** An id Meta sends as a string (or, in older answers, a number): compared, never stored from here. */
const AnyId = z.pipe(z.union([z.string(), z.number()]), z.transform(String));

// "Debug Token" (Graph API reference), fields: app_id, type, application, expires_at ("Timestamp when
// this access token expires"), data_access_expires_at, is_valid, issued_at, metadata, profile_id ("For
// impersonated access tokens, the ID of the page this token contains"), scopes, granular_scopes
// ("shape('scope' => string,'target_ids' => ?int[],)[]"; "If permission applies to all, targets will not
// be shown"), user_id, and error {code, message, subcode} ("Any error that a request to the graph api
// would return due to the access token"). A token Meta no longer accepts is answered HTTP 200 with
// is_valid false and that error, as recorded real answers show (bk-rs/facebook-apis-rs test fixtures:
// subcode 460 "The session has been invalidated because the user changed their password...", 463
// "Session has expired on ...", 466; a token it cannot read: code 190 without subcode, "Invalid OAuth
// access token - Cannot parse access token"). expires_at 0 means it never expires (same fixtures, and
// "Access Token Guide": Page tokens from a long-lived user token have no expiry).
const DebugTokenAnswer = z.object({
  data: z.object({
    is_valid: z.boolean(),
    type: z.optional(z.string()),
    app_id: z.optional(AnyId),
    profile_id: z.optional(AnyId),
    user_id: z.optional(AnyId),
    expires_at: z.optional(z.number()),
    data_access_expires_at: z.optional(z.number()),
    scopes: z._default(z.array(z.string()), []),
    granular_scopes: z._default(
      z.array(z.object({ scope: z.string(), target_ids: z.nullish(z.array(AnyId)) })),
      [],
    ),
    error: z.optional(z.object({
      code: z.optional(z.number()),
      subcode: z.optional(z.number()),
      message: z.optional(z.string()),
    })),
  }),
});

// "Page Subscribed Apps" (reading) and "Webhooks for Instagram Messaging" (sample response):
// {"data":[{"category","link","name","id":"<APP_ID>","subscribed_fields":["messages"]}]}; "If your Page
// has not installed any apps, the API will return an empty data set".
const SubscribedApps = z.object({
  data: z.array(z.object({ id: AnyId, subscribed_fields: z._default(z.array(z.string()), []) })),
  paging: Paging,
});

export type FacebookPage = z.infer<typeof FacebookPage>;

/** What Meta says about a token (debug_token), in our words; see DebugTokenAnswer for the sources. */
export interface DebugToken {
  isValid: boolean;
  /**
   * Meta would not inspect it because another app issued it: "(#100) The App_id in the input_token did
   * not match the Viewing App" (then nothing else is known about it).
   */
  otherApp: boolean;
  /** "PAGE" for a Page token, "USER", "APP", ... */
  type?: string;
  appId?: string;
  /** For a Page token: the Page it acts as. */
  profileId?: string;
  userId?: string;
  /** When the token expires; undefined when it never does (expires_at 0) or Meta did not say. */
  expiresAt?: Date;
  /** When the app's access to the user's data ends ("Data Access Expiration"), when Meta says. */
  dataAccessExpiresAt?: Date;
  scopes: string[];
  /** targetIds undefined: granted for every Page (or account), not for some of them. */
  granularScopes: { scope: string; targetIds?: string[] }[];
  /** Why the token is not valid, as a Graph call with it would fail. */
  error?: { code?: number; subcode?: number; message?: string };
}

/** One app's webhook subscription on a Page. */
export interface PageSubscription {
  appId: string;
  fields: string[];
}

export interface FacebookUser {
  /** The app-scoped Facebook user id: what deauthorize and data deletion callbacks name. */
  id: string;
  grantedScopes: string[];
  pages: FacebookPage[];
}

/** The Graph calls that need only the app (the `meta` part of the configuration). */
export interface MetaGraph {
  exchangeForLongLivedToken(shortLivedToken: string, deadline: AbortSignal): Promise<string>;
  /** One read (plus Meta's paging) for the user's id, granted permissions and Pages. */
  readUser(userToken: string, deadline: AbortSignal): Promise<FacebookUser>;
  subscribePage(
    pageId: string,
    pageToken: string,
    fields: readonly string[],
    deadline: AbortSignal,
  ): Promise<void>;
  unsubscribePage(pageId: string, pageToken: string, deadline: AbortSignal): Promise<void>;
  /** Removes every permission the user granted the app (and so invalidates all their tokens for it). */
  revokePermissions(facebookUserId: string, deadline: AbortSignal): Promise<void>;
  /**
   * What Meta says about `inputToken` (GET /debug_token with the app token). A token Meta no longer
   * accepts is an answer (isValid false, with Meta's error), not a failure; the call fails only when
   * Meta could not be asked (AppError meta_error / meta_timeout / meta_rate_limited).
   */
  debugToken(inputToken: string, deadline: AbortSignal): Promise<DebugToken>;
  /** Every app subscribed to the Page's webhooks and its fields (GET /{page-id}/subscribed_apps). */
  pageSubscriptions(pageId: string, pageToken: string, deadline: AbortSignal): Promise<PageSubscription[]>;
}

/** Plus the code exchange, which needs the OAuth client's settings (the `login` part). */
export interface MetaLoginGraph extends MetaGraph {
  /** `codeVerifier`: the flow's PKCE verifier, sent when PKCE is on. */
  exchangeCode(code: string, codeVerifier: string, deadline: AbortSignal): Promise<string>;
}

export interface MetaGraphOptions {
  /**
   * Called after every call Meta answered (successfully or not) that carried usage headers, with the
   * highest percentage among them (highestUsagePercent): how close the app is to being throttled.
   */
  onUsage?: (percent: number) => void;
}

export function createMetaGraph(
  config: Config<"meta" | "login">,
  log: Logger,
  options?: MetaGraphOptions,
): MetaLoginGraph;
export function createMetaGraph(config: Config<"meta">, log: Logger, options?: MetaGraphOptions): MetaGraph;
export function createMetaGraph(
  config: Config<"meta"> & Partial<Config<"login">>,
  log: Logger,
  options: MetaGraphOptions = {},
): MetaGraph | MetaLoginGraph {
  const base = `${config.meta.graphBaseUrl}/${config.meta.graphVersion}`;
  /**
   * The Facebook Login app, which every call here needs. Only Instagram Login configured: each call
   * refuses before reaching Meta, with a catalogue error rather than a crash.
   */
  function app(): { appId: string; appSecret: string } {
    if (!config.meta.facebook) throw new AppError("login_path_not_configured");
    return config.meta.facebook;
  }
  const appAccessToken = () => `${app().appId}|${app().appSecret}`;

  /** A Graph URL carrying `token` and its appsecret_proof. */
  async function withToken(url: URL, token: string): Promise<URL> {
    url.searchParams.set("access_token", token);
    url.searchParams.set("appsecret_proof", await hmacSha256Hex(app().appSecret, token));
    return url;
  }

  async function call<T>(
    step: GraphStep,
    request: { url: URL; method?: "GET" | "POST" | "DELETE" },
    schema: z.ZodMiniType<T>,
    deadline: AbortSignal,
  ): Promise<T> {
    // Meta answering the code exchange consumes the code, whatever it answered.
    const retryWhenAnswered = step !== "code_exchange";
    for (let attempt = 0;; attempt++) {
      const started = performance.now();
      let failure: GraphFailure & { answered: boolean };
      try {
        const response = await fetch(request.url, {
          method: request.method ?? "GET",
          headers: { accept: "application/json" },
          signal: AbortSignal.any([deadline, AbortSignal.timeout(config.meta.callTimeoutMs)]),
        });
        const body = await response.json().catch(() => undefined);
        const usage = highestUsagePercent(response.headers);
        if (usage !== undefined) options.onUsage?.(usage);
        if (response.ok) {
          const parsed = schema.safeParse(body);
          if (parsed.success) return parsed.data;
          failure = {
            answered: true,
            transient: false,
            error: new AppError("meta_error"),
            detail: { reason: "unexpected_response", status: response.status },
          };
        } else {
          failure = { answered: true, ...classifyGraphError(step, response.status, body, response.headers) };
        }
      } catch (error) {
        if (deadline.aborted) {
          log.warn("meta_call_failed", { step, attempt, reason: "deadline", ms: elapsed(started) });
          throw new AppError("meta_timeout", { cause: error });
        }
        const timedOut = error instanceof DOMException && error.name === "TimeoutError";
        failure = {
          answered: false,
          transient: true,
          error: new AppError(timedOut ? "meta_timeout" : "meta_error", { cause: error }),
          detail: { reason: timedOut ? "timeout" : "network", error },
        };
      }

      const retry = failure.transient && (retryWhenAnswered || !failure.answered) &&
        attempt < config.meta.maxRetries;
      log.warn("meta_call_failed", {
        step,
        attempt,
        retry,
        ms: elapsed(started),
        error_code: failure.error.code,
        ...failure.detail,
      });
      if (!retry) throw failure.error;
      await sleep(backoff(attempt), deadline).catch(() => {
        throw new AppError("meta_timeout");
      });
    }
  }

  /** Follows Meta's `paging.next`, only back to the Graph API (it carries the token) and with the proof. */
  async function nextPage(
    next: string | undefined,
    token: string,
    requests: number,
  ): Promise<URL | undefined> {
    if (!next) return undefined;
    const url = URL.canParse(next) ? new URL(next) : undefined;
    if (url?.origin !== new URL(base).origin || requests >= MAX_PAGING_REQUESTS) {
      // Not followed: the answer so far is all there is. Said, because it can look like a missing Page.
      log.warn("paging_link_ignored", {
        reason: url ? (requests >= MAX_PAGING_REQUESTS ? "limit" : "origin") : "malformed",
      });
      return undefined;
    }
    return await withToken(url, token);
  }

  async function* followPaging<T extends { data: unknown[]; paging?: { next?: string } }>(
    step: GraphStep,
    first: T | undefined,
    schema: z.ZodMiniType<T>,
    token: string,
    deadline: AbortSignal,
  ) {
    let answer = first;
    for (let requests = 0; answer; requests++) {
      yield* answer.data as T["data"][number][];
      const url = await nextPage(answer.paging?.next, token, requests);
      answer = url ? await call(step, { url }, schema, deadline) : undefined;
    }
  }

  const graph: MetaGraph = {
    async exchangeForLongLivedToken(shortLivedToken, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        grant_type: "fb_exchange_token",
        client_id: app().appId,
        client_secret: app().appSecret,
        fb_exchange_token: shortLivedToken,
      }).toString();
      return (await call("token_exchange", { url }, TokenResponse, deadline)).access_token;
    },

    async readUser(userToken, deadline) {
      const url = new URL(`${base}/me`);
      url.searchParams.set("fields", `id,permissions,accounts.limit(100){${PAGE_FIELDS}}`);
      const user = await call("read_user", { url: await withToken(url, userToken) }, UserResponse, deadline);
      const permissions = [];
      for await (
        const permission of followPaging("read_user", user.permissions, PermissionList, userToken, deadline)
      ) {
        permissions.push(permission);
      }
      const pages = [];
      for await (const page of followPaging("read_user", user.accounts, PageList, userToken, deadline)) {
        pages.push(page);
      }
      return {
        id: user.id,
        grantedScopes: permissions.filter((p) => p.status === "granted").map((p) => p.permission),
        pages,
      };
    },

    async subscribePage(pageId, pageToken, fields, deadline) {
      const url = new URL(`${base}/${pageId}/subscribed_apps`);
      url.searchParams.set("subscribed_fields", fields.join(","));
      await call(
        "subscribe_page",
        { url: await withToken(url, pageToken), method: "POST" },
        Success,
        deadline,
      );
    },

    async unsubscribePage(pageId, pageToken, deadline) {
      const url = new URL(`${base}/${pageId}/subscribed_apps`);
      await call(
        "unsubscribe_page",
        { url: await withToken(url, pageToken), method: "DELETE" },
        Success,
        deadline,
      );
    },

    async revokePermissions(facebookUserId, deadline) {
      const url = new URL(`${base}/${facebookUserId}/permissions`);
      await call(
        "revoke_permissions",
        { url: await withToken(url, appAccessToken()), method: "DELETE" },
        Success,
        deadline,
      );
    },

    async debugToken(inputToken, deadline) {
      const url = new URL(`${base}/debug_token`);
      url.searchParams.set("input_token", inputToken);
      try {
        const answer = await call(
          "debug_token",
          { url: await withToken(url, appAccessToken()) },
          DebugTokenAnswer,
          deadline,
        );
        return debugTokenOf(answer.data);
      } catch (error) {
        // Another app's token: Meta refuses to inspect it, which tells all there is to know about it.
        if (
          error instanceof AppError &&
          (error.cause as { reason?: string } | undefined)?.reason === "other_app"
        ) {
          return { isValid: false, otherApp: true, scopes: [], granularScopes: [] };
        }
        throw error;
      }
    },

    async pageSubscriptions(pageId, pageToken, deadline) {
      const url = new URL(`${base}/${pageId}/subscribed_apps`);
      const first = await call(
        "read_subscriptions",
        { url: await withToken(url, pageToken) },
        SubscribedApps,
        deadline,
      );
      const subscriptions = [];
      for await (
        const app of followPaging("read_subscriptions", first, SubscribedApps, pageToken, deadline)
      ) {
        subscriptions.push({ appId: app.id, fields: app.subscribed_fields });
      }
      return subscriptions;
    },
  };

  const login = config.login;
  if (!login) return graph;
  return {
    ...graph,
    async exchangeCode(code, codeVerifier, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        client_id: app().appId,
        client_secret: app().appSecret,
        redirect_uri: login.redirectUri,
        code,
        ...(login.pkce ? { code_verifier: codeVerifier } : {}),
      }).toString();
      return (await call("code_exchange", { url }, TokenResponse, deadline)).access_token;
    },
  } satisfies MetaLoginGraph;
}

function debugTokenOf(data: z.infer<typeof DebugTokenAnswer>["data"]): DebugToken {
  return {
    isValid: data.is_valid,
    otherApp: false,
    type: data.type,
    appId: data.app_id,
    profileId: data.profile_id,
    userId: data.user_id,
    expiresAt: unixTime(data.expires_at),
    dataAccessExpiresAt: unixTime(data.data_access_expires_at),
    scopes: data.scopes,
    granularScopes: data.granular_scopes.map(({ scope, target_ids }) => ({
      scope,
      targetIds: target_ids ?? undefined,
    })),
    error: data.error,
  };
}

/** Meta's unix seconds; 0 (never) and absence are both undefined. */
function unixTime(seconds: number | undefined): Date | undefined {
  return seconds ? new Date(seconds * 1000) : undefined;
}

function backoff(attempt: number): number {
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (attempt + 1));
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
