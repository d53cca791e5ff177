// Meta's login dialog URL. With a Facebook Login for Business configuration id, Meta takes the
// permissions from that configuration and `scope` must not be sent. With PKCE on (the default), the
// flow's S256 challenge goes along; Meta then redeems the code only with the matching verifier. Meta
// does not ask again for a permission the user declined unless auth_type=rerequest.
import type { Config } from "../config.ts";
import { AppError } from "../errors.ts";

export function metaDialogUrl(
  config: Config<"meta" | "login">,
  flow: { state: string; codeChallenge: string },
  options: { rerequest?: boolean } = {},
): string {
  // Only Instagram Login configured: the Facebook path is not offered (a catalogue 404, not a crash).
  if (!config.meta.facebook) throw new AppError("login_path_not_configured");
  const url = new URL(`${config.login.dialogBaseUrl}/${config.meta.graphVersion}/dialog/oauth`);
  url.searchParams.set("client_id", config.meta.facebook.appId);
  url.searchParams.set("redirect_uri", config.login.redirectUri);
  url.searchParams.set("state", flow.state);
  url.searchParams.set("response_type", "code");
  if (config.login.configId) url.searchParams.set("config_id", config.login.configId);
  else url.searchParams.set("scope", config.login.scopes.join(","));
  if (options.rerequest) url.searchParams.set("auth_type", "rerequest");
  if (config.login.pkce) {
    url.searchParams.set("code_challenge", flow.codeChallenge);
    url.searchParams.set("code_challenge_method", "S256");
  }
  return url.toString();
}
