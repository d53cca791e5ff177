// The body of Meta's Deauthorize and Data Deletion Request callbacks: a form with one field,
// signed_request. Anything else (too large, not a form, no or a bad signed_request) is a 400 that
// touches nothing.
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { AppError } from "../_shared/errors.ts";
import type { AppEnv } from "../_shared/http/request_context.ts";
import type { SignedRequest, SignedRequestVerifier } from "../_shared/meta/signed_request.ts";

export const limitSignedRequestBody = bodyLimit({
  maxSize: 8 * 1024,
  onError: () => {
    throw new AppError("signed_request_invalid", { cause: { reason: "oversized" } });
  },
});

export async function readSignedRequest(
  c: Context<AppEnv>,
  verifier: SignedRequestVerifier,
): Promise<SignedRequest> {
  const type = c.req.header("content-type")?.split(";")[0].trim().toLowerCase();
  if (type !== "application/x-www-form-urlencoded") {
    throw new AppError("signed_request_invalid", { cause: { reason: "not_a_form" } });
  }
  return await verifier.verify(new URLSearchParams(await c.req.text()).get("signed_request"));
}
