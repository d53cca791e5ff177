// Meta's Data Deletion Request callback ("Data Deletion Request Callback"):
//   POST /instagram-callback/data-deletion (signed_request): deletes everything of that Facebook user
//     (as deauthorize, audited as instagram.deleted_by_meta), records the request (a random
//     confirmation code and its status, no personal data) and answers { url, confirmation_code };
//     a replay of the same signed_request answers the same request and deletes nothing more.
//     `url` is INSTAGRAM_DELETION_STATUS_URL with the code in it when that is set (a page of the app's
//     own), else this function's status URL below.
//   GET /instagram-callback/data-deletion?code=...: the request's status, where Meta sends the user.
//     Plain text, never HTML: Supabase rewrites a GET's text/html answer to text/plain (Edge Functions,
//     "Limits": HTML is served only on a custom domain), so markup would reach the user as tags. JSON
//     to `Accept: application/json`, for the app's own status page.
import type { Context } from "hono";
import * as z from "zod/mini";
import { primaryAppSecret } from "../_shared/config.ts";
import { deriveHmacKey } from "../_shared/crypto/derived_key.ts";
import { hmacSha256Hex, randomBase64Url } from "../_shared/crypto/digest.ts";
import type { DataDeletionRequest } from "../_shared/database.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { parseInput } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { CallbackDeps } from "./deps.ts";
import { readSignedRequest } from "./signed_request_body.ts";

const INCOMPLETE_LINK =
  "This link is incomplete: its confirmation code is missing or malformed. Open the link exactly as Facebook showed it.";
const StatusQuery = z.object({ code: z.string().check(z.regex(/^[A-Za-z0-9_-]{16,64}$/)) });

export async function dataDeletion({ config, db, signedRequests }: CallbackDeps) {
  // Replays are recognised by a keyed hash of the signature: nothing that identifies the user is kept.
  const requestKeys = await deriveHmacKey(
    primaryAppSecret(config),
    "instagram-connect data deletion request v1",
    [
      "sign",
    ],
  );
  const requestKey = (signature: string) => hmacSha256Hex(requestKeys, signature);
  const statusOrigin = config.deletion.statusUrl
    ? new URL(config.deletion.statusUrl.replaceAll("{code}", "code")).origin
    : undefined;

  return {
    request: async (c: Context<AppEnv>) => {
      const request = await readSignedRequest(c, signedRequests);
      const recorded = await db.requestDataDeletion({
        facebookUserId: request.facebookUserId,
        requestKey: await requestKey(request.signature),
        confirmationCode: randomBase64Url(16),
        issuedAt: request.issuedAt,
        correlationId: c.var.correlationId,
      });
      c.var.log.info("meta_data_deletion_requested", { status: recorded.status, replay: recorded.replay });
      return c.json({
        url: statusUrl(config, recorded.confirmation_code),
        confirmation_code: recorded.confirmation_code,
      });
    },

    status: async (c: Context<AppEnv>) => {
      // The app's own status page reads the JSON from its origin in the browser; the code in the URL
      // is all it takes to read a status, so no credentials are involved.
      if (statusOrigin) c.header("access-control-allow-origin", statusOrigin);
      c.header("vary", "accept");
      const json = wantsJson(c.req.header("accept"));
      try {
        const { code } = parseInput(StatusQuery, { code: c.req.query("code") });
        const request = await db.dataDeletionStatus(code);
        return json ? c.json(request) : c.text(statusText(config.deletion.serviceName, request));
      } catch (error) {
        // A person with a mistyped or truncated link reads a sentence, not JSON; the app's page gets JSON.
        const failure = asAppError(c, error);
        if (json) return jsonError(c, failure);
        const sentence = failure.code === "invalid_request" ? INCOMPLETE_LINK : failure.message;
        const reference = `Reference: ${c.var.correlationId}`;
        return c.text(
          `${config.deletion.serviceName}: data deletion request\n\n${sentence}\n${reference}\n`,
          failure.status as 400,
        );
      }
    },
  };
}

/** Where Meta sends the user to follow the request: the app's page, or this function's status route. */
export function statusUrl(config: CallbackDeps["config"], code: string): string {
  if (config.deletion.statusUrl) {
    return config.deletion.statusUrl.replaceAll("{code}", encodeURIComponent(code));
  }
  const url = new URL(config.login.redirectUri);
  url.pathname = `${url.pathname.replace(/\/+$/, "")}/data-deletion`;
  url.search = new URLSearchParams({ code }).toString();
  return url.toString();
}

/** JSON only when asked for by name and not alongside HTML: a browser (Meta's user) always reads text. */
function wantsJson(accept = ""): boolean {
  return accept.includes("application/json") && !accept.includes("text/html");
}

/**
 * The status as a person reads it in a browser's plain-text view: which service, what was deleted (all
 * that request_data_deletion() removes) and when, and the confirmation code Meta showed them.
 */
export function statusText(serviceName: string, request: DataDeletionRequest): string {
  const done = request.status === "completed";
  const when = (at: string | null | undefined) => new Date(at ?? Date.now()).toUTCString();
  const events = request.events_deleted ?? 0;
  return [
    `${serviceName}: data deletion request`,
    "",
    `Confirmation code: ${request.confirmation_code}`,
    done
      ? `Status: completed. Your data was deleted on ${when(request.completed_at)}.`
      : `Status: in progress. Your request was received on ${
        when(request.requested_at)
      }; deletion is in progress.`,
    "",
    done
      ? "What was deleted, for the Facebook account that asked:"
      : "What is being deleted, for the Facebook account that asked:",
    "- the links between doctors' accounts and its Instagram professional accounts, with their Facebook Page access tokens;",
    "- connections to Instagram that were started but not finished;",
    done
      ? `- the stored webhook events (Instagram messages and notifications) received through those links: ${events}.`
      : "- the stored webhook events (Instagram messages and notifications) received through those links.",
    "",
    "This record keeps only the confirmation code, the status and the times: nothing that identifies you.",
    "",
  ].join("\n");
}
