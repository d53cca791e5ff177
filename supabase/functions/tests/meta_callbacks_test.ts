// Meta's Deauthorize and Data Deletion Request callbacks over real HTTP, with signed_request values
// built here exactly as Meta documents them (base64url HMAC-SHA256 of the base64url JSON payload,
// keyed by the app secret). Valid ones remove that Facebook user's data and nothing else; every
// forged, stale or malformed one is a 400 that touches nothing.
import assert from "node:assert/strict";
import { encodeBase64Url } from "../_shared/crypto/base64url.ts";
import {
  auditOf,
  fullFlow,
  link,
  linkOf,
  newDoctor,
  pendingOf,
  post,
  signedRequest,
  stackTest,
  startConnect,
  withStack,
} from "./_support.ts";

const now = () => Math.floor(Date.now() / 1000);

Deno.test("Meta's deauthorize and data deletion callbacks", stackTest, async (t) => {
  await withStack({}, async (stack, sql) => {
    const meta = stack.meta;
    const secret = stack.env.INSTAGRAM_APP_SECRET;
    const sign = (payload: Record<string, unknown>) => signedRequest(secret, payload);
    const form = (value: string) => new URLSearchParams({ signed_request: value });

    /** A Facebook user with a link (doctor A), a pending connection (doctor B) and an open state (B). */
    const scene = async () => {
      const a = await newDoctor(stack, sql);
      const b = await newDoctor(stack, sql);
      const user = meta.newUser(2);
      assert.equal((await link(stack, a.token, user.userId, user.pages[0].id)).finished.status, 200);
      assert.equal((await fullFlow(stack, b.token, user.userId)).result.status, 200);
      await startConnect(stack, b.token);
      const bystander = await newDoctor(stack, sql);
      assert.equal((await link(stack, bystander.token, meta.newUser(1).userId)).finished.status, 200);
      return { a, b, user, bystander };
    };
    const openStates = async (doctorId: string) =>
      (await sql`select count(*)::int as n from private.oauth_states where doctor_id = ${doctorId} and consumed_at is null`)[
        0
      ].n;

    await t.step(
      "deauthorize: that user's link, pending connections and open states go; others stay",
      async () => {
        const { a, b, user, bystander } = await scene();
        const response = await post(
          stack,
          "deauthorize",
          form(
            await sign({
              algorithm: "HMAC-SHA256",
              issued_at: now(),
              user_id: user.appScopedId,
            }),
          ),
        );
        assert.equal(response.status, 200);
        assert.deepEqual(await response.json(), { deauthorized: true });

        assert.equal(await linkOf(sql, a.id), undefined);
        assert.equal((await pendingOf(sql, b.id)).length, 0);
        assert.equal(await openStates(b.id), 0);
        assert.ok(await linkOf(sql, bystander.id), "another Facebook user's link stays");

        const [entryA] = (await auditOf(sql, a.id)).slice(-1);
        assert.equal(entryA.action, "instagram.deauthorized");
        assert.equal(entryA.actor_role, "meta");
        assert.equal(entryA.actor_id, null);
        assert.equal(entryA.correlation_id, response.headers.get("x-correlation-id"));
        const [entryB] = (await auditOf(sql, b.id)).slice(-1);
        assert.deepEqual([entryB.action, entryB.metadata], ["instagram.deauthorized", {
          pending_connections_deleted: 1,
        }]);
      },
    );

    await t.step("data deletion: everything of that user, a confirmation code and a status URL", async () => {
      const { a, b, user, bystander } = await scene();
      const late = await sign({ algorithm: "HMAC-SHA256", issued_at: now() - 60, user_id: user.appScopedId });
      const lateAnswer = await post(stack, "data-deletion", form(late));
      assert.equal(lateAnswer.status, 200);
      await lateAnswer.body?.cancel();
      assert.ok(
        await linkOf(sql, a.id),
        "a request issued before the grant (late, or replayed) leaves it alone",
      );

      const value = await sign({ algorithm: "HMAC-SHA256", issued_at: now(), user_id: user.appScopedId });
      const response = await post(stack, "data-deletion", form(value));
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.match(body.confirmation_code, /^[\w-]{22}$/);
      assert.equal(
        body.url,
        `${stack.env.INSTAGRAM_REDIRECT_URI}/data-deletion?code=${body.confirmation_code}`,
      );
      assert.equal(await linkOf(sql, a.id), undefined);
      assert.equal((await pendingOf(sql, b.id)).length, 0);
      assert.ok(await linkOf(sql, bystander.id));
      assert.equal((await auditOf(sql, a.id)).at(-1)!.action, "instagram.deleted_by_meta");

      const status = await fetch(body.url, { headers: { accept: "application/json" } });
      assert.equal(status.status, 200);
      const state = await status.json();
      assert.equal(state.confirmation_code, body.confirmation_code);
      assert.equal(state.status, "completed");
      assert.ok(Date.parse(state.completed_at) >= Date.parse(state.requested_at));
      assert.equal(
        status.headers.get("access-control-allow-origin"),
        null,
        "no status page of the app's own",
      );

      // Where Meta sends the user: a browser. Supabase rewrites a GET's text/html to text/plain (Edge
      // Functions, "Limits"), so the answer is text that reads as text, whatever is asked for.
      const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
      for (const accept of [browser, "text/html", "text/html, application/json", "*/*", ""]) {
        const page = await fetch(body.url, { headers: accept ? { accept } : {} });
        assert.equal(page.status, 200, accept);
        assert.match(page.headers.get("content-type")!, /^text\/plain; ?charset=utf-8$/i, accept);
        const text = await page.text();
        assert.doesNotMatch(text, /<[a-z!/]/i, `no markup (${accept})`);
        const lines = text.split("\n");
        assert.equal(lines[0], "Instagram connect for doctors: data deletion request");
        assert.ok(lines.includes(`Confirmation code: ${body.confirmation_code}`), accept);
        assert.ok(
          lines.includes(
            `Status: completed. Your data was deleted on ${new Date(state.completed_at).toUTCString()}.`,
          ),
          text,
        );
        assert.ok(lines.some((line) => line.startsWith("- the links between doctors' accounts")), text);
        assert.ok(
          lines.some((line) => line.startsWith("- connections to Instagram that were started")),
          text,
        );
        assert.ok(
          lines.includes(
            `- the stored webhook events (Instagram messages and notifications) received through those links: ${state.events_deleted}.`,
          ),
          text,
        );
      }

      // Meta may deliver the same request twice: the same answer, nothing more deleted or recorded.
      const auditBefore = (await sql`select count(*)::int as n from private.audit_log`)[0].n;
      const replay = await post(stack, "data-deletion", form(value));
      assert.equal(replay.status, 200);
      assert.deepEqual(await replay.json(), body);
      assert.equal((await sql`select count(*)::int as n from private.audit_log`)[0].n, auditBefore);
      const requests = await sql`select confirmation_code from private.data_deletion_requests
                                 where confirmation_code = ${body.confirmation_code}`;
      assert.equal(requests.length, 1);
    });

    await t.step(
      "another spelling of the same signature (padding, spare bits) is refused, not a new request",
      async () => {
        const { user } = await scene();
        const value = await sign({ algorithm: "HMAC-SHA256", issued_at: now(), user_id: user.appScopedId });
        const [signature, body] = value.split(".");
        const first = await post(stack, "data-deletion", form(value));
        assert.equal(first.status, 200);
        const answer = await first.json();
        // 32 bytes in base64url: 43 characters, the last carrying 2 spare bits; both variants decode alike.
        const last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".indexOf(
          signature.at(-1)!,
        );
        const spareBits = signature.slice(0, -1) +
          "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1];
        for (const spelling of [`${signature}=`, `${signature}==`, spareBits]) {
          const again = await post(stack, "data-deletion", form(`${spelling}.${body}`));
          assert.equal(again.status, 400, spelling);
          await again.body?.cancel();
        }
        const replay = await post(stack, "data-deletion", form(value));
        assert.deepEqual(await replay.json(), answer, "the genuine replay still answers the same request");
      },
    );

    await t.step(
      "a deauthorize replayed after the doctor reconnected leaves the new link alone",
      async () => {
        const doctor = await newDoctor(stack, sql);
        const user = meta.newUser(1);
        assert.equal((await link(stack, doctor.token, user.userId)).finished.status, 200);
        const value = await sign({ algorithm: "HMAC-SHA256", issued_at: now(), user_id: user.appScopedId });
        assert.equal((await post(stack, "deauthorize", form(value))).status, 200);
        assert.equal(await linkOf(sql, doctor.id), undefined);

        await new Promise((resolve) => setTimeout(resolve, 1_100)); // issued_at has a resolution of a second
        assert.equal(
          (await link(stack, doctor.token, user.userId)).finished.status,
          200,
          "the user grants again",
        );
        const replay = await post(stack, "deauthorize", form(value));
        assert.equal(replay.status, 200);
        await replay.body?.cancel();
        assert.ok(await linkOf(sql, doctor.id), "the newer grant is not touched by the old request");
      },
    );

    await t.step("status URL: unknown code 404, malformed 400, and only GET and POST", async () => {
      const base = `${stack.functionUrl("instagram-callback")}/data-deletion`;
      const json = { accept: "application/json" };
      const unknown = await fetch(`${base}?code=${"A".repeat(22)}`, { headers: json });
      assert.equal(unknown.status, 404);
      assert.equal((await unknown.json()).error.code, "deletion_request_unknown");
      const malformed = await fetch(`${base}?code=<script>`, { headers: json });
      assert.equal(malformed.status, 400);
      assert.equal((await malformed.json()).error.code, "invalid_request");
      // A person with a truncated or mistyped link reads a sentence, as text, never their input echoed.
      const browser = { accept: "text/html,*/*;q=0.8" };
      const unknownText = await fetch(`${base}?code=${"A".repeat(22)}`, { headers: browser });
      assert.equal(unknownText.status, 404);
      assert.match(unknownText.headers.get("content-type")!, /^text\/plain/);
      const text = await unknownText.text();
      assert.match(
        text,
        /^Instagram connect for doctors: data deletion request\n\nNo data deletion request has this confirmation code\.\nReference: [0-9a-f-]{36}\n$/,
      );
      assert.equal(text.split("Reference: ")[1].trim(), unknownText.headers.get("x-correlation-id"));
      const malformedText = await fetch(`${base}?code=<script>`, { headers: browser });
      assert.equal(malformedText.status, 400);
      assert.match(malformedText.headers.get("content-type")!, /^text\/plain/);
      const incomplete = await malformedText.text();
      assert.match(
        incomplete,
        /\n\nThis link is incomplete: its confirmation code is missing or malformed\./,
      );
      assert.doesNotMatch(incomplete, /<script>/);
      const put = await fetch(base, { method: "PUT" });
      assert.equal(put.status, 405);
      await put.body?.cancel();
      const getDeauthorize = await fetch(`${stack.functionUrl("instagram-callback")}/deauthorize`);
      assert.equal(getDeauthorize.status, 405);
      await getDeauthorize.body?.cancel();
    });

    await t.step("forged, stale, malformed or oversized signed_requests: 400, nothing touched", async () => {
      const { a, user } = await scene();
      const requests = async () =>
        (await sql`select count(*)::int as n from private.data_deletion_requests`)[0].n;
      const requestsBefore = await requests();
      const payload = { algorithm: "HMAC-SHA256", issued_at: now(), user_id: user.appScopedId };
      const genuine = await sign(payload);
      const [signature, body] = genuine.split(".");
      const cases: Record<string, () => Promise<BodyInit> | BodyInit> = {
        "signed with another secret": async () =>
          form(await signedRequest("another-app-secret-0123456789", payload)),
        "a payload swapped under a genuine signature": async () =>
          form(`${signature}.${(await sign({ ...payload, user_id: "1" })).split(".")[1]}`),
        "a flipped signature bit": () => {
          const bytes = atob(signature.replace(/-/g, "+").replace(/_/g, "/"));
          const flipped = String.fromCharCode(bytes.charCodeAt(0) ^ 1) + bytes.slice(1);
          return form(`${btoa(flipped).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")}.${body}`);
        },
        "algorithm HMAC-SHA1": async () => form(await sign({ ...payload, algorithm: "HMAC-SHA1" })),
        "no algorithm": async () => form(await sign({ issued_at: now(), user_id: user.appScopedId })),
        "issued an hour in the future": async () => form(await sign({ ...payload, issued_at: now() + 3600 })),
        "issued two days ago": async () => form(await sign({ ...payload, issued_at: now() - 2 * 86400 })),
        "a user_id that is not an id": async () => form(await sign({ ...payload, user_id: "1 OR 1=1" })),
        "a numeric user_id": async () => form(await sign({ ...payload, user_id: Number(user.appScopedId) })),
        "payload not JSON": async () => {
          const junk = encodeBase64Url(new TextEncoder().encode("not json"));
          return form((await signedRequest(secret, {})).split(".")[0] + "." + junk);
        },
        "garbage": () => form("garbage"),
        "three parts": () => form(`${genuine}.x`),
        "empty": () => form(""),
        "no signed_request field": () => new URLSearchParams({ something: genuine }),
        "a 1 MiB body": () => form(`${genuine}${"A".repeat(1024 * 1024)}`),
      };
      for (const [label, build] of Object.entries(cases)) {
        for (const route of ["deauthorize", "data-deletion"]) {
          const response = await post(stack, route, await build());
          assert.equal(response.status, 400, `${route}: ${label}`);
          assert.equal((await response.json()).error.code, "signed_request_invalid", `${route}: ${label}`);
        }
      }
      const json = await post(
        stack,
        "deauthorize",
        JSON.stringify({ signed_request: genuine }),
        "application/json",
      );
      assert.equal(json.status, 400, "a JSON body is not Meta's form");
      await json.body?.cancel();

      assert.ok(await linkOf(sql, a.id), "nothing was touched");
      assert.equal(await requests(), requestsBefore, "no data deletion request was recorded");
    });
  });
});

Deno.test(
  "INSTAGRAM_DELETION_STATUS_URL: Meta is handed the app's own status page, which may read the JSON",
  stackTest,
  async () => {
    const page = "https://dashboard.example.test/privacy/deletion?code={code}&lang=en";
    await withStack({ env: { INSTAGRAM_DELETION_STATUS_URL: page } }, async (stack) => {
      const value = await signedRequest(stack.env.INSTAGRAM_APP_SECRET, {
        algorithm: "HMAC-SHA256",
        issued_at: now(),
        user_id: "987654321012345",
      });
      const response = await post(stack, "data-deletion", new URLSearchParams({ signed_request: value }));
      assert.equal(response.status, 200);
      const body = await response.json();
      assert.equal(body.url, page.replace("{code}", body.confirmation_code));

      // That page's origin (and only it) may read the status from the browser.
      const own = `${stack.functionUrl("instagram-callback")}/data-deletion?code=${body.confirmation_code}`;
      const status = await fetch(own, {
        headers: { accept: "application/json", origin: "https://dashboard.example.test" },
      });
      assert.equal(status.headers.get("access-control-allow-origin"), "https://dashboard.example.test");
      assert.equal((await status.json()).status, "completed");
      const unknown = await fetch(
        `${stack.functionUrl("instagram-callback")}/data-deletion?code=${"B".repeat(22)}`,
        {
          headers: { accept: "application/json" },
        },
      );
      assert.equal(unknown.status, 404);
      assert.equal(
        unknown.headers.get("access-control-allow-origin"),
        "https://dashboard.example.test",
        "the page can read an unknown code's answer too",
      );
      await unknown.body?.cancel();
    });
  },
);
