// The Meta sandbox's webhook side, for the demo dashboard: a person trying the demo makes "Meta" send
// events to the Instagram account of their current link. Local only, like /demo/session:
//   POST /demo/sandbox/message   {text}   a patient's direct message
//   POST /demo/sandbox/reaction  {mid}    the patient reacts to that message
//   POST /demo/sandbox/unsend    {mid}    the patient unsends that message
// Each call carries the doctor's session (Authorization: Bearer <JWT>); the link is read through the
// gateway with it (RLS: the doctor's own row only). The delivery is built with fake_meta_webhooks.ts,
// signed as Meta signs it with the secret of the app the link was made through (the Facebook app's for a
// Page link, the Instagram app's for an Instagram Login link: the receiver stores an entry only under its
// own path's secret), and POSTed to the stack's real instagram-webhook, which
// checks the signature and stores it: nothing here writes the table. Its answer is passed back as is.
// The same way, POST /demo/sandbox/<kill-token|drop-subscription|data-access|remove-permission|usage>
// breaks the caller's link as Meta can (demo_sandbox_health.ts), and POST /demo/sandbox/run-maintenance
// runs instagram-maintenance at once, with the secret key held here (demo_sandbox_maintenance.ts).
import { deliverWebhook, directMessage, instagramDelivery, reaction, unsend } from "./fake_meta_webhooks.ts";
import { HEALTH_ACTIONS, type HealthAction, healthControl } from "./demo_sandbox_health.ts";
import { RUN_MAINTENANCE, runMaintenanceControl } from "./demo_sandbox_maintenance.ts";
import { LOCAL_PUBLISHABLE_KEY, type LocalStack } from "./local_stack.ts";
import { type ErrorCode, ERRORS } from "../../supabase/functions/_shared/errors.ts";

/** The demo's one patient: an Instagram-scoped id, fixed so every demo shows the same sender. */
export const SANDBOX_PATIENT_ID = "6100000000000001";
/** Instagram's limit for a direct message's text. */
const MAX_TEXT = 1000;

export async function sandboxRoute(
  stack: LocalStack,
  request: Request,
  url: URL,
): Promise<Response | undefined> {
  const name = url.pathname.match(/^\/demo\/sandbox\/([a-z-]+)$/)?.[1] ?? "";
  const health = (HEALTH_ACTIONS as readonly string[]).includes(name) ? name as HealthAction : undefined;
  const action = ["message", "reaction", "unsend"].includes(name) ? name : undefined;
  if (!action && !health && name !== RUN_MAINTENANCE) return undefined;
  if (request.method !== "POST") return fail("method_not_allowed");
  // Any signed-in doctor, linked or not: a run checks every link, as the schedule's does.
  if (name === RUN_MAINTENANCE) return await runMaintenanceControl(stack, request, fail);

  const link = await linkOfCaller(stack, request);
  if (link instanceof Response) return link;

  const body = await request.json().catch(() => null) as Record<string, unknown> | null;
  if (health) {
    // These act on the Page token; an Instagram Login link has no Page.
    if (link.pageId === null) {
      return fail(
        "invalid_request",
        "This sandbox control breaks a Page link; this link was made with Instagram Login.",
      );
    }
    return healthControl(stack, health, link.pageId, body, fail);
  }
  const accountId = link.accountId;
  let item;
  if (action === "message") {
    const text = body?.text;
    if (typeof text !== "string" || !text.trim() || text.length > MAX_TEXT) return fail("invalid_request");
    item = directMessage(accountId, SANDBOX_PATIENT_ID, text);
  } else {
    const mid = body?.mid;
    if (typeof mid !== "string" || !/^[\w=+/-]{1,512}$/.test(mid)) return fail("invalid_request");
    item = action === "reaction"
      ? reaction(accountId, SANDBOX_PATIENT_ID, mid)
      : unsend(accountId, SANDBOX_PATIENT_ID, mid);
  }
  const secret = link.tokenKind === "instagram_user"
    ? stack.env.INSTAGRAM_LOGIN_APP_SECRET
    : stack.env.INSTAGRAM_APP_SECRET;
  const answer = await deliverWebhook(
    stack.functionUrl("instagram-webhook"),
    secret,
    instagramDelivery([{ accountId, items: [item] }]),
  );
  const result = await answer.json().catch(() => null);
  if (!answer.ok) {
    return Response.json(result ?? { error: { code: "internal_error" } }, { status: answer.status });
  }
  const mid = (item as { message?: { mid?: string } }).message?.mid;
  return Response.json({ sandbox: true, action, mid, webhook: { status: answer.status, result } });
}

/**
 * The Page (null via Instagram Login), Instagram account and path of the caller's link, read through
 * RLS with the caller's own JWT.
 */
async function linkOfCaller(
  stack: LocalStack,
  request: Request,
): Promise<{ pageId: string | null; accountId: string; tokenKind: string } | Response> {
  const authorization = request.headers.get("authorization");
  if (!authorization) return fail("unauthorized");
  const read = await stack.gateway.handle(
    new Request(
      `${stack.url}/rest/v1/doctor_instagram?select=instagram_page_id,instagram_business_account_id,token_kind`,
      { headers: { authorization, apikey: LOCAL_PUBLISHABLE_KEY } },
    ),
    "/doctor_instagram",
  );
  if (read.status === 401) return fail("unauthorized");
  if (!read.ok) return fail("internal_error");
  const [link] = await read.json() as {
    instagram_page_id: string | null;
    instagram_business_account_id: string | null;
    token_kind: string;
  }[];
  if (!link?.instagram_business_account_id) return fail("not_connected");
  return {
    pageId: link.instagram_page_id,
    accountId: link.instagram_business_account_id,
    tokenKind: link.token_kind,
  };
}

function fail(code: ErrorCode, message: string = ERRORS[code][1]): Response {
  return Response.json({ error: { code, message } }, { status: ERRORS[code][0] });
}
