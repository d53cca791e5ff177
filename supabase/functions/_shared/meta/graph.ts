// The three Graph API calls of the flow, each with a timeout, all under the callback's deadline.
// Transient failures (network, timeouts, HTTP 5xx, Graph codes 1, 2, 4, 17, 341 or is_transient)
// are retried with capped, jittered exponential backoff. The code exchange is retried only when
// Meta never answered: a code is single-use, so once Meta has answered, a retry could only fail.
import { z } from "zod";
import type { Config } from "../config.ts";
import { hmacSha256Hex } from "../crypto/digest.ts";
import { AppError } from "../errors.ts";
import type { Logger } from "../log.ts";

const TRANSIENT_GRAPH_CODES = new Set([1, 2, 4, 17, 341]);
const MAX_ACCOUNT_PAGES = 10;
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

const GraphErrorBody = z.object({
  error: z.object({
    message: z.string().optional(),
    type: z.string().optional(),
    code: z.number().optional(),
    error_subcode: z.number().optional(),
    is_transient: z.boolean().optional(),
    fbtrace_id: z.string().optional(),
  }),
});

const TokenResponse = z.object({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  expires_in: z.number().optional(),
});

const AccountsResponse = z.object({
  data: z.array(z.object({
    id: z.string().regex(/^\d{1,32}$/),
    name: z.string().optional(),
    access_token: z.string().min(1).optional(),
    instagram_business_account: z.object({
      id: z.string().regex(/^\d{1,32}$/),
      username: z.string().optional(),
    }).optional(),
  })),
  paging: z.object({ next: z.string().optional() }).optional(),
});

export type FacebookPage = z.infer<typeof AccountsResponse>["data"][number];

type Step = "code_exchange" | "token_exchange" | "list_pages";

export interface MetaGraph {
  /** `codeVerifier`: the flow's PKCE verifier, sent when PKCE is on. */
  exchangeCode(code: string, codeVerifier: string, deadline: AbortSignal): Promise<string>;
  exchangeForLongLivedToken(shortLivedToken: string, deadline: AbortSignal): Promise<string>;
  listPages(userToken: string, deadline: AbortSignal): Promise<FacebookPage[]>;
}

export function createMetaGraph(config: Config, log: Logger): MetaGraph {
  const base = `${config.graphBaseUrl}/${config.graphVersion}`;

  async function call<T>(step: Step, url: URL, schema: z.ZodType<T>, deadline: AbortSignal): Promise<T> {
    const retryWhenAnswered = step !== "code_exchange";
    for (let attempt = 0;; attempt++) {
      const started = performance.now();
      let failure: {
        transient: boolean;
        answered: boolean;
        error: AppError;
        detail: Record<string, unknown>;
      };
      try {
        const response = await fetch(url, {
          headers: { accept: "application/json" },
          signal: AbortSignal.any([deadline, AbortSignal.timeout(config.metaTimeoutMs)]),
        });
        const body = await response.json().catch(() => undefined);
        if (response.ok) {
          const parsed = schema.safeParse(body);
          if (parsed.success) return parsed.data;
          failure = {
            transient: false,
            answered: true,
            error: new AppError("meta_error"),
            detail: { reason: "unexpected_response", status: response.status },
          };
        } else {
          failure = classifyGraphError(step, response.status, body);
        }
      } catch (error) {
        if (deadline.aborted) {
          log.warn("meta_call_failed", { step, attempt, reason: "deadline", ms: elapsed(started) });
          throw new AppError("meta_timeout", { cause: error });
        }
        const timedOut = error instanceof DOMException && error.name === "TimeoutError";
        failure = {
          transient: true,
          answered: false,
          error: new AppError(timedOut ? "meta_timeout" : "meta_error", { cause: error }),
          detail: { reason: timedOut ? "timeout" : "network", error },
        };
      }

      const retry = failure.transient && (retryWhenAnswered || !failure.answered) &&
        attempt < config.metaMaxRetries;
      log.warn("meta_call_failed", { step, attempt, retry, ms: elapsed(started), ...failure.detail });
      if (!retry) throw failure.error;
      await sleep(backoff(attempt), deadline).catch(() => {
        throw new AppError("meta_timeout");
      });
    }
  }

  return {
    async exchangeCode(code, codeVerifier, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        client_id: config.appId,
        client_secret: config.appSecret,
        redirect_uri: config.redirectUri,
        code,
        ...(config.pkce ? { code_verifier: codeVerifier } : {}),
      }).toString();
      return (await call("code_exchange", url, TokenResponse, deadline)).access_token;
    },

    async exchangeForLongLivedToken(shortLivedToken, deadline) {
      const url = new URL(`${base}/oauth/access_token`);
      url.search = new URLSearchParams({
        grant_type: "fb_exchange_token",
        client_id: config.appId,
        client_secret: config.appSecret,
        fb_exchange_token: shortLivedToken,
      }).toString();
      return (await call("token_exchange", url, TokenResponse, deadline)).access_token;
    },

    async listPages(userToken, deadline) {
      let url: URL | undefined = new URL(`${base}/me/accounts`);
      url.search = new URLSearchParams({
        fields: "id,name,access_token,instagram_business_account{id,username}",
        limit: "100",
        access_token: userToken,
        // Proves the call comes from our server, as Meta recommends for server-side calls.
        appsecret_proof: await hmacSha256Hex(config.appSecret, userToken),
      }).toString();
      const pages: FacebookPage[] = [];
      for (let page = 0; url && page < MAX_ACCOUNT_PAGES; page++) {
        const result: z.infer<typeof AccountsResponse> = await call(
          "list_pages",
          url,
          AccountsResponse,
          deadline,
        );
        pages.push(...result.data);
        url = nextPageUrl(result.paging?.next, base);
      }
      return pages;
    },
  };
}

function classifyGraphError(step: Step, status: number, body: unknown) {
  const graph = GraphErrorBody.safeParse(body).data?.error;
  const transient = status >= 500 || graph?.is_transient === true ||
    (graph?.code !== undefined && TRANSIENT_GRAPH_CODES.has(graph.code));
  // On the code exchange, code 100 is Meta's answer to a used, expired or foreign code, and "Invalid
  // code verifier" (code 1) to a code redeemed with another flow's PKCE verifier.
  const codeRefused = step === "code_exchange" && status < 500 &&
    (graph?.code === 100 || /code verifier/i.test(graph?.message ?? ""));
  return {
    transient: transient && !codeRefused,
    answered: true,
    error: new AppError(codeRefused ? "oauth_code_invalid" : "meta_error"),
    detail: {
      status,
      meta_code: graph?.code,
      meta_subcode: graph?.error_subcode,
      meta_type: graph?.type,
      fbtrace_id: graph?.fbtrace_id,
    },
  };
}

/** Follows Meta's `paging.next` only back to the Graph API: it carries the user token. */
function nextPageUrl(next: string | undefined, base: string): URL | undefined {
  if (!next) return undefined;
  const url = new URL(next);
  const expected = new URL(base);
  return url.origin === expected.origin ? url : undefined;
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
