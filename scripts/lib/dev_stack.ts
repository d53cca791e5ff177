// The local stack dressed for a person: two demo doctors, a Meta sandbox with demo Pages (one of them
// already linked to the other doctor) that also sends webhook events, breaks links and runs maintenance
// (/demo/sandbox/*), and the demo dashboard at /demo/. `deno task dev` runs it on
// port 54321; the browser test runs it on a free port. Local only: nothing here is ever deployed.
import postgres from "postgres";
import {
  LOCAL_PUBLISHABLE_KEY,
  type LocalStack,
  type StackOptions,
  startLocalStack,
  tokenKeyringOf,
} from "./local_stack.ts";
import type { TokenKeyring } from "../../supabase/functions/_shared/crypto/page_token.ts";
import { loadConfig } from "../../supabase/functions/_shared/config.ts";
import { ERRORS } from "../../supabase/functions/_shared/errors.ts";
import type { FakePage } from "./fake_meta.ts";
import { sandboxRoute } from "./demo_sandbox.ts";
import { SANDBOX_SUBCODE_NAMES, SANDBOX_SUBCODES } from "./demo_sandbox_health.ts";

export const DEMO_DOCTORS = {
  demo: { id: "11111111-1111-4111-8111-111111111111", name: "Dr. Demo" },
  other: { id: "22222222-2222-4222-8222-222222222222", name: "Dr. Other" },
} as const;
export type DemoDoctor = keyof typeof DEMO_DOCTORS;

export const DEMO_PAGES = {
  sunrise: {
    id: "100000000000001",
    name: "Sunrise Dental",
    instagram: { id: "17841400000000001", username: "sunrise_dental" },
  },
  lakeside: {
    id: "100000000000002",
    name: "Lakeside Physio",
    instagram: { id: "17841400000000002", username: "lakeside_physio" },
  },
  oldTown: { id: "100000000000003", name: "Old Town Clinic (no Instagram)" },
  harbor: {
    id: "100000000000004",
    name: "Harbor Pediatrics",
    instagram: { id: "17841400000000004", username: "harbor_kids" },
  },
} satisfies Record<string, FakePage>;

/**
 * Who can be chosen on the sandbox's consent page, and the Pages each one shares. `demo` has two
 * usable Pages (the picker), `lakeside_admin` only the one Dr. Other holds (the 409), and `visitor`
 * stands for someone a connect URL was forwarded to.
 */
export const SANDBOX_USERS = {
  demo: [DEMO_PAGES.sunrise, DEMO_PAGES.lakeside, DEMO_PAGES.oldTown],
  lakeside_admin: [DEMO_PAGES.lakeside],
  visitor: [DEMO_PAGES.harbor],
} satisfies Record<string, FakePage[]>;

/**
 * The sandbox's Instagram-only doctor account (no Facebook Page), which the fake's Instagram consent page
 * offers (scripts/lib/fake_meta_instagram.ts): what Connect with Instagram links.
 */
export const SANDBOX_INSTAGRAM_ACCOUNT = "ig_demo";

/** Dr. Other's Page token as seeded: stands for a token Meta issued earlier. */
export const SEEDED_PAGE_TOKEN = "EAAGdemoOtherDoctorPageToken";

export interface DevStack {
  url: string;
  dashboardUrl: string;
  stack: LocalStack;
  stop(): Promise<void>;
}

/** Starts on an already migrated database, seeds the demo doctors and Dr. Other's link. */
export async function startDevStack(
  options: {
    databaseUrl: string;
    port?: number;
    onFunctionLine?: StackOptions["onFunctionLine"];
    /** Variables over the stack's own (a test's: one path unconfigured, say). */
    env?: Record<string, string>;
  },
): Promise<DevStack> {
  const dashboard = await Deno.readTextFile(new URL("../demo/dashboard.html", import.meta.url));
  const stack: LocalStack = await startLocalStack({
    databaseUrl: options.databaseUrl,
    port: options.port,
    onFunctionLine: options.onFunctionLine,
    env: (origin) => ({
      INSTAGRAM_FRONTEND_REDIRECT_URI: `${origin}/demo/`,
      INSTAGRAM_ALLOWED_ORIGINS: origin,
      ...options.env,
    }),
    extraRoutes: async (request, url) => {
      if (url.pathname === "/demo" || url.pathname === "/") {
        return Response.redirect(`${url.origin}/demo/`, 302);
      }
      if (url.pathname === "/demo/") return dashboardPage(dashboard, url.origin, stack.env);
      if (url.pathname === "/demo/session" && request.method === "POST") {
        const doctor = DEMO_DOCTORS[url.searchParams.get("doctor") as DemoDoctor] ?? DEMO_DOCTORS.demo;
        const accessToken = await stack.jwt.sign({ sub: doctor.id, email: `${doctor.id}@demo.local` });
        return Response.json({ access_token: accessToken, user_id: doctor.id, name: doctor.name });
      }
      // The Meta sandbox sends webhook events to the doctor's linked account (scripts/lib/demo_sandbox.ts).
      if (url.pathname.startsWith("/demo/sandbox/")) return await sandboxRoute(stack, request, url);
    },
  });
  try {
    for (const [user, pages] of Object.entries(SANDBOX_USERS)) stack.meta.addUser(user, pages);
    // Dr. Other's seeded link works as a real one would: the sandbox knows its token (with the granted
    // permissions) and the Page is subscribed, so a health check finds it fine until the sandbox breaks it.
    const { login, webhooks } = loadConfig(["login", "webhooks"], stack.env);
    stack.meta.adoptPageToken(SEEDED_PAGE_TOKEN, "lakeside_admin", DEMO_PAGES.lakeside.id, login.scopes);
    stack.meta.subscriptions.set(DEMO_PAGES.lakeside.id, [...webhooks.pageFields]);
    await seed(options.databaseUrl, await tokenKeyringOf(stack.env));
  } catch (error) {
    await stack.stop();
    throw error;
  }
  return { url: stack.url, dashboardUrl: `${stack.url}/demo/`, stack, stop: () => stack.stop() };
}

function dashboardPage(template: string, origin: string, env: Record<string, string>): Response {
  // Which paths the functions offer, read from the very variables they run on (config.ts decides, as
  // for them): a Connect button for each. Asking instagram-connect would need a route of its own for the
  // demo's sake; the dev server holds the functions' environment already.
  const apps = loadConfig(["meta", "instagramLogin"], env);
  const config = {
    supabaseUrl: origin,
    paths: { facebook: apps.meta.facebook !== undefined, instagram: apps.instagramLogin !== undefined },
    publishableKey: LOCAL_PUBLISHABLE_KEY,
    connectUrl: `${origin}/functions/v1/instagram-connect`,
    // What the sandbox's health controls offer: the 190 subcodes it can kill a token with, and the
    // permissions the app asks for (any of them can be taken back).
    sandbox: {
      subcodes: SANDBOX_SUBCODES.map((code) => ({ code, name: SANDBOX_SUBCODE_NAMES[code] })),
      permissions: loadConfig(["login"], env).login.scopes,
    },
  };
  const messages = Object.fromEntries(Object.entries(ERRORS).map(([code, [, message]]) => [code, message]));
  const html = template.replace("__CONFIG__", JSON.stringify(config)).replace(
    "__ERRORS__",
    JSON.stringify(messages),
  );
  return new Response(html, { headers: { "content-type": "text/html; charset=utf-8" } });
}

async function seed(databaseUrl: string, keyring: TokenKeyring) {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    for (const doctor of Object.values(DEMO_DOCTORS)) {
      await sql`insert into auth.users (id, email) values (${doctor.id}, ${`${doctor.id}@demo.local`})`;
    }
    await seedLink(sql, keyring, DEMO_DOCTORS.other.id, DEMO_PAGES.lakeside, SEEDED_PAGE_TOKEN);
  } finally {
    await sql.end();
  }
}

/**
 * A link written straight into the table, as if the doctor had finished connecting `page` earlier: the
 * Page token encrypted as the functions encrypt it (the ring's primary key, bound to the doctor and the
 * Page). For the demo's seed and the benchmark's webhook accounts.
 */
export async function seedLink(
  sql: postgres.Sql,
  keyring: TokenKeyring,
  doctorId: string,
  page: FakePage & Required<Pick<FakePage, "instagram">>,
  pageToken: string,
): Promise<void> {
  const token = await keyring.encrypt(pageToken, { doctorId, pageId: page.id });
  await sql`
    insert into public.doctor_instagram
      (doctor_id, instagram_page_id, instagram_access_token, instagram_username, page_name, instagram_business_account_id)
    values (${doctorId}, ${page.id}, ${token}, ${page.instagram.username}, ${page.name}, ${page.instagram.id})`;
}

/**
 * An Instagram Login link written straight into the table, as if the doctor had connected `account`
 * through Instagram Login earlier: no Page, the Instagram user token encrypted bound to the doctor and the
 * account, 60 days to run. For tests of what works on such a link (the sandbox's deliveries).
 */
export async function seedInstagramLink(
  sql: postgres.Sql,
  keyring: TokenKeyring,
  doctorId: string,
  account: { userId: string; id: string; username: string },
  token: string,
): Promise<void> {
  const encrypted = await keyring.encrypt(token, { doctorId, instagramAccountId: account.userId });
  await sql`
    insert into public.doctor_instagram
      (doctor_id, instagram_page_id, instagram_access_token, instagram_username, instagram_business_account_id,
       token_kind, instagram_user_id, token_expires_at, token_refreshed_at)
    values (${doctorId}, null, ${encrypted}, ${account.username}, ${account.userId},
       'instagram_user', ${account.id}, now() + interval '60 days', now())`;
}
