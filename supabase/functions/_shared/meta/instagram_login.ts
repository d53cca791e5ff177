// Business Login for Instagram: the calls of an Instagram Login link's life (no Facebook Page), each with
// a timeout, all under the caller's deadline, transient failures retried as graph.ts does (the code
// exchange only when Meta never answered: a code is single-use). The Meta docs each call follows:
//   authorize      GET  {dialog}/oauth/authorize                 "Business Login for Instagram" (the window
//                  on www.instagram.com; api.instagram.com/oauth/authorize reported dead, chatwoot #15575)
//   code exchange  POST {api}/oauth/access_token (form)          "Business Login for Instagram", Step 2
//   long-lived     GET  {graph}/access_token?grant_type=ig_exchange_token    "Access Token" reference
//   refresh        GET  {graph}/refresh_access_token?grant_type=ig_refresh_token  "Refresh Access Token"
//   the account    GET  {graph}/{v}/me?fields=id,user_id,username,account_type   "Get Started"
//   webhooks       POST/GET/DELETE {graph}/{v}/me/subscribed_apps   "Setup Webhooks Subscriptions" (POST);
//                  GET and DELETE are not on that page: the answers peers read (chatwoot) are assumed
// Versions: the references put no version in access_token and refresh_access_token, and one in /me and
// subscribed_apps ("Get Started" uses /v25.0/me): so do we, with INSTAGRAM_GRAPH_VERSION.
// Not sent: PKCE (no code_challenge or code_verifier in any Instagram Login page: the signed, one-time
// state is the CSRF defence) and appsecret_proof (documented for graph.facebook.com only).
// Ids: the code exchange answers `user_id` as a bare JSON integer above 2^53 (a real answer:
// {"access_token":"IGAA…","user_id":27640875392278831,"permissions":["instagram_business_basic"]}), which
// JSON.parse would round; every id is read from the answer's text as digits (idsAsStrings) first.
// Shapes: Meta's pages show the answers wrapped ({"data":[{…}]}, permissions a comma-separated string);
// real answers are flat (permissions an array). Both are read.
import * as z from "zod/mini";
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";
import { idsAsStrings, META_ID } from "../ids.ts";
import type { Logger } from "../log.ts";
import { classifyGraphError, type GraphFailure, type GraphStep } from "./error_class.ts";
import { highestUsagePercent } from "./usage.ts";

const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

const ID = z.string().check(z.regex(META_ID));
const Permissions = z._default(
  z.pipe(
    z.union([z.string(), z.array(z.string())]),
    z.transform((value) =>
      (typeof value === "string" ? value.split(/[\s,]+/) : value).map((item) => item.trim()).filter(Boolean)
    ),
  ),
  [],
);
const CodeAnswer = z.object({
  access_token: z.string().check(z.minLength(1)),
  user_id: ID,
  permissions: Permissions,
});
const TokenAnswer = z.object({
  access_token: z.string().check(z.minLength(1)),
  expires_in: z.number().check(z.int(), z.positive()),
});
const AccountAnswer = z.object({
  id: ID,
  user_id: ID,
  username: z.optional(z.string()),
  account_type: z.optional(z.string()),
});
const Success = z.object({ success: z.literal(true) });
const SubscribedApps = z.object({
  data: z.array(z.object({ subscribed_fields: z._default(z.array(z.string()), []) })),
});

/** api.instagram.com's own error body ("Business Login for Instagram", Sample Rejected Response). */
const InstagramApiError = z.object({
  error_type: z.string(),
  code: z.optional(z.number()),
  error_message: z.optional(z.string()),
});

export interface InstagramCode {
  accessToken: string;
  /** The code exchange's user_id, digit for digit (Meta: "Instagram-scoped user ID"). */
  userId: string;
  permissions: string[];
}

export interface InstagramToken {
  accessToken: string;
  /** Seconds until it expires (60 days for a long-lived or refreshed token). */
  expiresIn: number;
}

export interface InstagramAccount {
  /** The professional account id (`user_id`): what webhooks carry in entry.id; the link's identity. */
  userId: string;
  /** The app-scoped id (`id`): a different number. */
  id: string;
  username?: string;
  accountType?: string;
}

export interface InstagramLogin {
  /** The authorize window's URL. `rerequest`: Meta asks for the Instagram credentials again (force_reauth). */
  authorizeUrl(flow: { state: string }, options?: { rerequest?: boolean }): string;
  /** `codeVerifier` is accepted for symmetry with the Facebook path and not sent (no PKCE documented here). */
  exchangeCode(code: string, codeVerifier: string | undefined, deadline: AbortSignal): Promise<InstagramCode>;
  exchangeForLongLivedToken(shortLivedToken: string, deadline: AbortSignal): Promise<InstagramToken>;
  readAccount(token: string, deadline: AbortSignal): Promise<InstagramAccount>;
  subscribe(token: string, fields: readonly string[], deadline: AbortSignal): Promise<void>;
  unsubscribe(token: string, deadline: AbortSignal): Promise<void>;
  /** The fields the account is subscribed to for this app (empty: none). */
  subscriptions(token: string, deadline: AbortSignal): Promise<string[]>;
  /** A new 60-day token; Meta refuses a token under 24 hours old or expired. */
  refresh(token: string, deadline: AbortSignal): Promise<InstagramToken>;
}

export interface InstagramLoginOptions {
  /** As graph.ts: the highest usage percentage of an answer's usage headers. */
  onUsage?: (percent: number) => void;
}

type Step = Extract<GraphStep, "code_exchange" | `ig_${string}`>;

/** Without the Instagram Login app every call refuses, before reaching Meta (not a crash). */
export function createInstagramLogin(
  config: Config<"meta" | "instagramLogin">,
  log: Logger,
  options: InstagramLoginOptions = {},
): InstagramLogin {
  const app = () => {
    if (!config.instagramLogin) throw new AppError("login_path_not_configured");
    return config.instagramLogin;
  };
  const versioned = (path: string) => new URL(`${app().graphBaseUrl}/${config.meta.graphVersion}${path}`);

  async function call<T>(
    step: Step,
    request: { url: URL; method?: "GET" | "POST" | "DELETE"; form?: URLSearchParams },
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
          method: request.method ?? (request.form ? "POST" : "GET"),
          headers: { accept: "application/json" },
          body: request.form,
          signal: AbortSignal.any([deadline, AbortSignal.timeout(config.meta.callTimeoutMs)]),
        });
        const text = await response.text();
        const body = parseJson(text);
        const usage = highestUsagePercent(response.headers);
        if (usage !== undefined) options.onUsage?.(usage);
        if (response.ok) {
          const parsed = schema.safeParse(unwrap(body));
          if (parsed.success) return parsed.data;
          failure = {
            answered: true,
            transient: false,
            error: new AppError("meta_error"),
            detail: { reason: "unexpected_response", status: response.status },
          };
        } else {
          failure = { answered: true, ...classify(step, response.status, body, response.headers) };
        }
      } catch (error) {
        if (error instanceof AppError) throw error;
        if (deadline.aborted) {
          log.warn("meta_call_failed", { step, attempt, reason: "deadline", ms: elapsed(started) });
          throw new AppError("meta_timeout", { cause: error });
        }
        const timedOut = error instanceof DOMException && error.name === "TimeoutError";
        failure = {
          answered: false,
          transient: true,
          error: new AppError(timedOut ? "meta_timeout" : "meta_error", { cause: error }),
          // The error's message may hold the URL (and so a token): the logger scrubs it.
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

  return {
    authorizeUrl(flow, { rerequest = false } = {}) {
      const login = app();
      const url = new URL(`${login.dialogBaseUrl}/oauth/authorize`);
      url.searchParams.set("client_id", login.appId);
      url.searchParams.set("redirect_uri", login.redirectUri);
      url.searchParams.set("response_type", "code");
      // "A comma-separated or URL-encoded space-separated list of permissions".
      url.searchParams.set("scope", login.scopes.join(","));
      url.searchParams.set("state", flow.state);
      if (rerequest) url.searchParams.set("force_reauth", "true");
      return url.toString();
    },

    async exchangeCode(code, _codeVerifier, deadline) {
      const login = app();
      const form = new URLSearchParams({
        client_id: login.appId,
        client_secret: login.appSecret,
        grant_type: "authorization_code",
        redirect_uri: login.redirectUri,
        code,
      });
      const answer = await call(
        "code_exchange",
        { url: new URL(`${login.apiBaseUrl}/oauth/access_token`), form },
        CodeAnswer,
        deadline,
      );
      return { accessToken: answer.access_token, userId: answer.user_id, permissions: answer.permissions };
    },

    async exchangeForLongLivedToken(shortLivedToken, deadline) {
      const url = new URL(`${app().graphBaseUrl}/access_token`);
      url.search = new URLSearchParams({
        grant_type: "ig_exchange_token",
        client_secret: app().appSecret,
        access_token: shortLivedToken,
      }).toString();
      const answer = await call("ig_token_exchange", { url }, TokenAnswer, deadline);
      return { accessToken: answer.access_token, expiresIn: answer.expires_in };
    },

    async readAccount(token, deadline) {
      const url = versioned("/me");
      url.searchParams.set("fields", "id,user_id,username,account_type");
      url.searchParams.set("access_token", token);
      const answer = await call("ig_read_account", { url }, AccountAnswer, deadline);
      return {
        userId: answer.user_id,
        id: answer.id,
        username: answer.username,
        accountType: answer.account_type,
      };
    },

    async subscribe(token, fields, deadline) {
      const url = versioned("/me/subscribed_apps");
      // One comma-joined value, as the page's example sends it.
      url.searchParams.set("subscribed_fields", fields.join(","));
      url.searchParams.set("access_token", token);
      await call("ig_subscribe", { url, method: "POST" }, Success, deadline);
    },

    async unsubscribe(token, deadline) {
      const url = versioned("/me/subscribed_apps");
      url.searchParams.set("access_token", token);
      await call("ig_unsubscribe", { url, method: "DELETE" }, Success, deadline);
    },

    async subscriptions(token, deadline) {
      const url = versioned("/me/subscribed_apps");
      url.searchParams.set("access_token", token);
      // The account's own list: this app's entry, when subscribed (guess: peers read data[0]).
      const answer = await call("ig_read_subscriptions", { url }, SubscribedApps, deadline);
      return [...new Set(answer.data.flatMap((app) => app.subscribed_fields))];
    },

    async refresh(token, deadline) {
      const url = new URL(`${app().graphBaseUrl}/refresh_access_token`);
      url.search = new URLSearchParams({ grant_type: "ig_refresh_token", access_token: token }).toString();
      const answer = await call("ig_refresh", { url }, TokenAnswer, deadline);
      return { accessToken: answer.access_token, expiresIn: answer.expires_in };
    },
  };
}

/**
 * graph.instagram.com answers Graph's error body (classifyGraphError); api.instagram.com's code exchange
 * its own flat {error_type, code, error_message}: any 4xx there means the code cannot be used (used,
 * expired, another redirect_uri), e.g. "Matching code was not found or was already used".
 */
function classify(step: Step, status: number, body: unknown, headers: Headers): GraphFailure {
  const flat = InstagramApiError.safeParse(body).data;
  if (step === "code_exchange" && flat && status < 500) {
    const detail = { status, meta_type: flat.error_type, meta_code: flat.code };
    return { transient: false, error: new AppError("oauth_code_invalid", { cause: detail }), detail };
  }
  return classifyGraphError(step, status, body, headers);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(idsAsStrings(text));
  } catch {
    return undefined;
  }
}

/** Meta's pages show {"data":[{…}]} for the code exchange and /me; real answers are the object itself. */
function unwrap(body: unknown): unknown {
  if (body && typeof body === "object" && !("access_token" in body) && !("id" in body)) {
    const data = (body as { data?: unknown }).data;
    if (Array.isArray(data) && data.length === 1 && data[0] && typeof data[0] === "object") {
      const [first] = data;
      if ("access_token" in first || "user_id" in first) return first;
    }
  }
  return body;
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
