// Meta's login dialog URL. With a Facebook Login for Business configuration id, Meta takes the
// permissions from that configuration and `scope` must not be sent.
import type { Config } from "./config.ts";

export function metaDialogUrl(config: Config, state: string): string {
  const url = new URL(`${config.dialogBaseUrl}/${config.graphVersion}/dialog/oauth`);
  url.searchParams.set("client_id", config.appId);
  url.searchParams.set("redirect_uri", config.redirectUri);
  url.searchParams.set("state", state);
  url.searchParams.set("response_type", "code");
  if (config.configId) url.searchParams.set("config_id", config.configId);
  else url.searchParams.set("scope", config.scopes.join(","));
  return url.toString();
}
