// The benchmark's floor for instagram-webhook: a delivery's I/O with none of our logic. It checks
// X-Hub-Signature-256 (the app secret's HMAC-SHA256 of the raw body bytes, Web Crypto), parses the
// JSON, and makes the one database call the real function makes: POST /rest/v1/rpc/store_instagram_events
// with { p_object, p_entries } and the secret key, through the same router and gateway, storing the same
// rows. It answers 200 with the RPC's JSON. Served by `deno serve` behind the same router as the real
// function. What it leaves out is what the real function adds: Hono, the body limit, the request
// context and its log lines, the shape validation (zod) and the error mapping. So `real p50 / floor p50`
// is the cost of that, on this machine, in this run.
const env = (name: string) => Deno.env.get(name) ?? "";
const RPC_URL = `${env("SUPABASE_URL")}/rest/v1/rpc/store_instagram_events`;
const SECRET_KEY = JSON.parse(env("SUPABASE_SECRET_KEYS")).default;
const APP_KEY = await crypto.subtle.importKey(
  "raw",
  new TextEncoder().encode(env("INSTAGRAM_APP_SECRET")),
  { name: "HMAC", hash: "SHA-256" },
  false,
  ["verify"],
);
const SIGNATURE = /^sha256=([0-9a-f]{64})$/i;

export default {
  async fetch(request: Request): Promise<Response> {
    const body = new Uint8Array(await request.arrayBuffer());
    const hex = request.headers.get("x-hub-signature-256")?.match(SIGNATURE)?.[1];
    const signature = hex && Uint8Array.from(hex.match(/../g)!, (byte) => parseInt(byte, 16));
    if (!signature || !await crypto.subtle.verify("HMAC", APP_KEY, signature, body)) {
      return new Response(null, { status: 401 });
    }
    const delivery = JSON.parse(new TextDecoder().decode(body));
    const response = await fetch(RPC_URL, {
      method: "POST",
      headers: { apikey: SECRET_KEY, "content-type": "application/json" },
      body: JSON.stringify({ p_object: delivery.object, p_entries: delivery.entry }),
    });
    return new Response(response.body, {
      status: response.ok ? 200 : 503,
      headers: { "content-type": "application/json" },
    });
  },
};
