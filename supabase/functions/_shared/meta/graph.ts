// The Graph API calls of the link's life, each with a timeout, all under the caller's deadline.
// Transient failures (see error_class.ts) are retried with capped, jittered exponential backoff. The
// code exchange is retried only when Meta never answered: a code is single-use, so once Meta has
// answered, a retry could only fail. Every call that carries a token also carries appsecret_proof
// (required when the app has "Require App Secret" on), re-attached to Meta's paging links, which
// drop it.
import * as z from "zod/mini";
import type { Config } from "../config.ts";
import { hmacSha256Hex } from "../crypto/digest.ts";
import { AppError } from "../errors.ts";
import { META_ID } from "../ids.ts";
import type { Logger } from "../log.ts";
import { classifyGraphError, type GraphFailure, type GraphStep } from "./error_class.ts";

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

export type FacebookPage = z.infer<typeof FacebookPage>;

export interface FacebookUser {
  /** The app-scoped Facebook user id: what deauthorize and data deletion callbacks name. */
  id: string;
  grantedScopes: string[];
  pages: FacebookPage[];
}

export interface MetaGraph {
  /** `codeVerifier`: the flow's PKCE verifier, sent when PKCE is on. */
  exchangeCode(code: string, codeVerifier: string, deadline: AbortSignal): Promise<string>;
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
}

export function createMetaGraph(config: Config<"meta" | "login">, log: Logger): MetaGraph {
  const base = `${config.meta.graphBaseUrl}/${config.meta.graphVersion}`;
  const appAccessToken = `${config.meta.appId}|${config.meta.appSecret}`;

  /** A Graph URL carrying `token` and its appsecret_proof. */
  async function withToken(url: URL, token: string): Promise<URL> {
    url.searchParams.set("access_token", token);
    url.searchParams.set("appsecret_proof", await hmacSha256Hex(config.meta.appSecret, token));
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
    first: T | undefined,
    schema: z.ZodMiniType<T>,
    token: string,
    deadline: AbortSignal,
  ) {
    let answer = first;
    for (let requests = 0; answer; requests++) {
      yield* answer.data as T["data"][number][];
      const url = await nextPage(answer.paging?.next, token, requests);
      answer = url ? await call("read_user", { url }, schema, deadline) : undefined;
    }
  }

  return {
    async exchangeCode(code, codeVerifier, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        client_id: config.meta.appId,
        client_secret: config.meta.appSecret,
        redirect_uri: config.login.redirectUri,
        code,
        ...(config.login.pkce ? { code_verifier: codeVerifier } : {}),
      }).toString();
      return (await call("code_exchange", { url }, TokenResponse, deadline)).access_token;
    },

    async exchangeForLongLivedToken(shortLivedToken, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        grant_type: "fb_exchange_token",
        client_id: config.meta.appId,
        client_secret: config.meta.appSecret,
        fb_exchange_token: shortLivedToken,
      }).toString();
      return (await call("token_exchange", { url }, TokenResponse, deadline)).access_token;
    },

    async readUser(userToken, deadline) {
      const url = new URL(`${base}/me`);
      url.searchParams.set("fields", `id,permissions,accounts.limit(100){${PAGE_FIELDS}}`);
      const user = await call("read_user", { url: await withToken(url, userToken) }, UserResponse, deadline);
      const permissions = [];
      for await (const permission of followPaging(user.permissions, PermissionList, userToken, deadline)) {
        permissions.push(permission);
      }
      const pages = [];
      for await (const page of followPaging(user.accounts, PageList, userToken, deadline)) pages.push(page);
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
        { url: await withToken(url, appAccessToken), method: "DELETE" },
        Success,
        deadline,
      );
    },
  };
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
