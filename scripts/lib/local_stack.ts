// Everything the functions talk to, on loopback, behind one origin laid out like `supabase start`'s
// API (port 54321 in development): /functions/v1/<name>, /rest/v1/*, /auth/v1/.well-known/jwks.json.
// Used by the tests, `deno task dev` and `deno task bench`.
import { edgeFunctions } from "./edge_functions.ts";
import { FakeMeta } from "./fake_meta.ts";
import { type FunctionProcess, startFunction } from "./function_process.ts";
import { createJwtIssuer, type JwtIssuer } from "./jwt_issuer.ts";
import { createRestGateway, type RestGateway } from "./rest_gateway.ts";
import { StepGate } from "./step_gate.ts";
import { loadConfig } from "../../supabase/functions/_shared/config.ts";
import { importTokenKeyring, type TokenKeyring } from "../../supabase/functions/_shared/crypto/page_token.ts";

/** A function of supabase/config.toml (scripts/lib/edge_functions.ts): the stack runs every one. */
export type FunctionName = string;

// The Supabase CLI's well-known local keys: not secrets, the same on every developer's machine.
export const LOCAL_PUBLISHABLE_KEY = "sb_publishable_ACJWlzQHlZjBrEguHvfOxg_3BJgxAaH";
export const LOCAL_SECRET_KEY = "sb_secret_N7UND0UgjKTVK-Uodkm0Hg_xSvEMPvz";
/** The local stack's webhook Verify Token (a real one is chosen in the App Dashboard). */
export const LOCAL_WEBHOOK_VERIFY_TOKEN = "local-only-webhook-verify-token";

export interface StackOptions {
  databaseUrl: string;
  port?: number;
  metaLatencyMs?: number;
  /** Extra or overriding variables for the functions; a function of the stack's origin when they name it. */
  env?: Record<string, string> | ((origin: string) => Record<string, string>);
  /** Serve extra paths on the same origin (the dev dashboard). */
  extraRoutes?: (request: Request, url: URL) => Response | undefined | Promise<Response | undefined>;
  /** Each line a function prints (`deno task dev` shows them). */
  onFunctionLine?: (name: FunctionName, line: string) => void;
  /** More functions behind the same router, with the same variables (the benchmark's floor). */
  extraFunctions?: { name: string; entry: string }[];
}

export interface LocalStack {
  url: string;
  meta: FakeMeta;
  jwt: JwtIssuer;
  gateway: RestGateway;
  /** Every Meta call and query, in order; a race test holds one open (step_gate.ts). */
  gate: StepGate;
  functions: Record<FunctionName, FunctionProcess>;
  extraFunctions: FunctionProcess[];
  env: Record<string, string>;
  /** Queries through the gateway, by kind ("rpc") and by kind and name ("rpc claim_oauth_state"). */
  dbCalls: Record<string, number>;
  functionUrl(name: FunctionName): string;
  /** Restarts one function with changed variables (same stack otherwise). */
  restart(name: FunctionName, env?: Record<string, string>): Promise<void>;
  stop(): Promise<void>;
}

export async function startLocalStack(options: StackOptions): Promise<LocalStack> {
  const jwt = await createJwtIssuer();
  const appId = "1234567890123";
  const appSecret = "0123456789abcdef0123456789abcdef";
  const graphVersion = "v27.0";
  // Both paths configured: the Facebook app and the Instagram Login app (its own id and secret).
  const instagramAppId = "9876543210123";
  const instagramAppSecret = "fedcba9876543210fedcba9876543210";
  const meta = new FakeMeta({
    appId,
    appSecret,
    graphVersion,
    latencyMs: options.metaLatencyMs,
    instagramAppId,
    instagramAppSecret,
  });
  const dbCalls: Record<string, number> = {};
  const gate = new StepGate();
  meta.gate = gate;
  const gateway = createRestGateway({
    databaseUrl: options.databaseUrl,
    secretKey: LOCAL_SECRET_KEY,
    publishableKey: LOCAL_PUBLISHABLE_KEY,
    jwks: jwt.jwks,
    gate,
    onQuery: (kind, target) => {
      for (const key of [kind, `${kind} ${target}`]) dbCalls[key] = (dbCalls[key] ?? 0) + 1;
    },
  });

  const functions = {} as Record<FunctionName, FunctionProcess>;
  const extraFunctions: FunctionProcess[] = [];
  const router = Deno.serve(
    { hostname: "127.0.0.1", port: options.port ?? 0, onListen: () => {} },
    async (request) => {
      const url = new URL(request.url);
      const proxied = await proxyToFunction(request, url, [...Object.values(functions), ...extraFunctions]);
      if (proxied) return proxied;
      if (url.pathname.startsWith("/rest/v1/")) {
        return await gateway.handle(
          request,
          url.pathname.slice("/rest/v1".length),
        );
      }
      if (url.pathname === "/auth/v1/.well-known/jwks.json") return Response.json(jwt.jwks);
      return (await options.extraRoutes?.(request, url)) ?? new Response("Not found", { status: 404 });
    },
  );
  const origin = `http://127.0.0.1:${router.addr.port}`;

  const env: Record<string, string> = {
    INSTAGRAM_APP_ID: appId,
    INSTAGRAM_APP_SECRET: appSecret,
    INSTAGRAM_REDIRECT_URI: `${origin}/functions/v1/instagram-callback`,
    INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
    INSTAGRAM_WEBHOOK_VERIFY_TOKEN: LOCAL_WEBHOOK_VERIFY_TOKEN,
    INSTAGRAM_GRAPH_VERSION: graphVersion,
    INSTAGRAM_GRAPH_BASE_URL: meta.url,
    INSTAGRAM_DIALOG_BASE_URL: meta.url,
    INSTAGRAM_LOGIN_APP_ID: instagramAppId,
    INSTAGRAM_LOGIN_APP_SECRET: instagramAppSecret,
    INSTAGRAM_LOGIN_DIALOG_BASE_URL: meta.instagramBaseUrls.dialog,
    INSTAGRAM_LOGIN_API_BASE_URL: meta.instagramBaseUrls.api,
    INSTAGRAM_LOGIN_GRAPH_BASE_URL: meta.instagramBaseUrls.graph,
    SUPABASE_URL: origin,
    SUPABASE_PUBLISHABLE_KEYS: JSON.stringify({ default: LOCAL_PUBLISHABLE_KEY }),
    SUPABASE_SECRET_KEYS: JSON.stringify({ default: LOCAL_SECRET_KEY }),
    SUPABASE_JWKS: JSON.stringify(jwt.jwks),
    ...(typeof options.env === "function" ? options.env(origin) : options.env),
  };

  const start = async (name: FunctionName, extra: Record<string, string> = {}) => {
    const onLine = options.onFunctionLine && ((line: string) => options.onFunctionLine!(name, line));
    functions[name] = await startFunction(name, { ...env, ...extra }, { onLine });
  };
  const stop = async () => {
    await Promise.all([...Object.values(functions), ...extraFunctions].map((fn) => fn.stop()));
    await router.shutdown();
    await meta.close();
    await gateway.close();
  };
  const starting = await Promise.allSettled([
    ...edgeFunctions().map(({ name }) => start(name)),
    ...(options.extraFunctions ?? []).map(async ({ name, entry }) => {
      extraFunctions.push(await startFunction(name, env, { entry }));
    }),
  ]);
  const failed = starting.find((result) => result.status === "rejected");
  if (failed) {
    // The ones that did start would outlive this process (children are not stopped at exit): stop them.
    await stop();
    throw failed.reason;
  }

  return {
    url: origin,
    meta,
    jwt,
    gateway,
    gate,
    functions,
    extraFunctions,
    env,
    dbCalls,
    functionUrl: (name) => `${origin}/functions/v1/${name}`,
    async restart(name, extra) {
      await functions[name].stop();
      await start(name, extra);
    },
    stop,
  };
}

/**
 * The token key ring the functions build from these variables (config part `tokens`), for what writes
 * or reads stored tokens beside them: the demo's seed, the benchmark, the tests.
 */
export async function tokenKeyringOf(env: Record<string, string>): Promise<TokenKeyring> {
  return await importTokenKeyring(loadConfig(["tokens"], env).tokens.keys);
}

/**
 * As the platform does: /functions/v1/<name>/... reaches the function as /<name>/..., query untouched.
 * The body is streamed through as it arrives, never read whole here: the function's own limits (16 KiB
 * for JSON, its streaming reads) decide what a large or slow body costs, as on the platform, and the
 * router holds no more of it than a chunk in flight. A client's Content-Length goes along with it.
 */
export async function proxyToFunction(
  request: Request,
  url: URL,
  functions: FunctionProcess[],
): Promise<Response | undefined> {
  const match = url.pathname.match(/^\/functions\/v1\/([\w-]+)(\/.*)?$/);
  const target = functions.find((fn) => fn.name === match?.[1]);
  if (!match || !target) return undefined;
  return await fetch(`${target.url}/${match[1]}${match[2] ?? ""}${url.search}`, {
    method: request.method,
    headers: request.headers,
    body: ["GET", "HEAD"].includes(request.method) ? undefined : request.body,
    redirect: "manual",
  }).catch(() =>
    Response.json({ code: 503, message: `function ${match[1]} is not running` }, { status: 503 })
  );
}
