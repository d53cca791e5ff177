// Meta's Data Deletion Request callback ("Data Deletion Request Callback"):
//   POST /instagram-callback/data-deletion (signed_request): deletes everything of that Facebook user
//     (as deauthorize, audited as instagram.deleted_by_meta), records the request (a random
//     confirmation code and its status, no personal data) and answers { url, confirmation_code };
//     a replay of the same signed_request answers the same request and deletes nothing more.
//   GET /instagram-callback/data-deletion?code=...: the request's status, where Meta sends the user.
import type { Context } from "hono";
import * as z from "zod/mini";
import { deriveHmacKey } from "../_shared/crypto/derived_key.ts";
import { hmacSha256Hex, randomBase64Url } from "../_shared/crypto/digest.ts";
import type { DataDeletionRequest } from "../_shared/database.ts";
import { parseInput } from "../_shared/http/request_input.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { CallbackDeps } from "./deps.ts";
import { readSignedRequest } from "./signed_request_body.ts";

const StatusQuery = z.object({ code: z.string().check(z.regex(/^[A-Za-z0-9_-]{16,64}$/)) });

export async function dataDeletion({ config, db, signedRequests }: CallbackDeps) {
  // Replays are recognised by a keyed hash of the signature: nothing that identifies the user is kept.
  const requestKeys = await deriveHmacKey(
    config.meta.appSecret,
    "instagram-connect data deletion request v1",
    [
      "sign",
    ],
  );
  const requestKey = (signature: string) => hmacSha256Hex(requestKeys, signature);

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
      const url = new URL(config.login.redirectUri);
      url.pathname = `${url.pathname.replace(/\/+$/, "")}/data-deletion`;
      url.search = new URLSearchParams({ code: recorded.confirmation_code }).toString();
      return c.json({ url: url.toString(), confirmation_code: recorded.confirmation_code });
    },

    status: async (c: Context<AppEnv>) => {
      const { code } = parseInput(StatusQuery, { code: c.req.query("code") });
      const request = await db.dataDeletionStatus(code);
      if (c.req.header("accept")?.includes("text/html")) return c.html(statusPage(request));
      return c.json(request);
    },
  };
}

function statusPage(request: DataDeletionRequest): string {
  const done = request.status === "completed";
  const when = new Date((done ? request.completed_at : request.requested_at) ?? Date.now()).toUTCString();
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Data deletion request</title></head>
<body><h1>Data deletion request</h1><p>Confirmation code <code>${request.confirmation_code}</code>: ${
    done ? `your data was deleted on ${when}.` : `received on ${when}; deletion is in progress.`
  }</p></body></html>`;
}
