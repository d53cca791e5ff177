// The data deletion status without a stack: the URL Meta is handed (the app's own page when
// INSTAGRAM_DELETION_STATUS_URL is set, else the callback's own route), what that variable must be, and
// the plain-text status as a person reads it (Supabase serves no HTML from a GET: Edge Functions,
// "Limits"). meta_callbacks_test.ts checks the same answers over HTTP.
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../_shared/config.ts";
import { statusText, statusUrl } from "../instagram-callback/data_deletion.ts";
import { CALLBACK_CONFIG } from "../instagram-callback/deps.ts";

const good: Record<string, string> = {
  INSTAGRAM_APP_ID: "1234567890",
  INSTAGRAM_APP_SECRET: "a-very-secret-app-secret-value-123",
  INSTAGRAM_REDIRECT_URI: "https://project.supabase.co/functions/v1/instagram-callback",
  INSTAGRAM_TOKEN_ENCRYPTION_KEY: "ZGV2LW9ubHkta2V5LWRvLW5vdC11c2UtaW4tcHJvZCE=",
  SUPABASE_URL: "https://project.supabase.co",
  SUPABASE_SECRET_KEYS: JSON.stringify({ default: "sb_secret_value_never_printed_0123" }),
};
const CODE = "Zx8_Qm-3vT1aB2cD4eF5gH";

Deno.test("the status URL: the callback's own route, or INSTAGRAM_DELETION_STATUS_URL with the code", () => {
  assert.equal(
    statusUrl(loadConfig(CALLBACK_CONFIG, good), CODE),
    `https://project.supabase.co/functions/v1/instagram-callback/data-deletion?code=${CODE}`,
  );
  const withPage = loadConfig(CALLBACK_CONFIG, {
    ...good,
    INSTAGRAM_DELETION_STATUS_URL: "https://app.example.com/deletion/{code}#code={code}",
  });
  assert.equal(statusUrl(withPage, CODE), `https://app.example.com/deletion/${CODE}#code=${CODE}`);
});

Deno.test("INSTAGRAM_DELETION_STATUS_URL is refused without {code}, without https, or with {code} in the host", () => {
  const message =
    "INSTAGRAM_DELETION_STATUS_URL must be an https URL with {code} where the confirmation code goes, such as https://app.example.com/data-deletion?code={code}";
  for (
    const bad of [
      "https://app.example.com/data-deletion",
      "https://app.example.com/data-deletion?code=",
      "http://app.example.com/data-deletion?code={code}",
      "http://localhost:3000/data-deletion?code={code}", // Meta's user cannot reach anyone's localhost
      "ftp://app.example.com/{code}",
      "app.example.com/data-deletion?code={code}",
      "https://{code}.example.com/",
    ]
  ) {
    assert.throws(
      () => loadConfig(CALLBACK_CONFIG, { ...good, INSTAGRAM_DELETION_STATUS_URL: bad }),
      (error) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [message], bad);
        return true;
      },
    );
  }
});

Deno.test("the plain-text status names the service, what was deleted and when, and the code", () => {
  const config = loadConfig(CALLBACK_CONFIG, { ...good, INSTAGRAM_SERVICE_NAME: "Dr. Ana's practice" });
  assert.equal(config.deletion.serviceName, "Dr. Ana's practice");
  const completed = statusText(config.deletion.serviceName, {
    confirmation_code: CODE,
    status: "completed",
    requested_at: "2026-12-02T16:40:00.000Z",
    completed_at: "2026-12-02T16:40:01.000Z",
    events_deleted: 3,
  });
  assert.equal(
    completed,
    [
      "Dr. Ana's practice: data deletion request",
      "",
      `Confirmation code: ${CODE}`,
      "Status: completed. Your data was deleted on Wed, 02 Dec 2026 16:40:01 GMT.",
      "",
      "What was deleted, for the Facebook account that asked:",
      "- the links between doctors' accounts and its Instagram professional accounts, with their Facebook Page access tokens;",
      "- connections to Instagram that were started but not finished;",
      "- the stored webhook events (Instagram messages and notifications) received through those links: 3.",
      "",
      "This record keeps only the confirmation code, the status and the times: nothing that identifies you.",
      "",
    ].join("\n"),
  );
  const received = statusText("Clinic", {
    confirmation_code: CODE,
    status: "received",
    requested_at: "2026-12-02T16:40:00.000Z",
    completed_at: null,
  });
  assert.match(
    received,
    /^Status: in progress\. Your request was received on Wed, 02 Dec 2026 16:40:00 GMT; deletion is in progress\.$/m,
  );
  assert.match(received, /^What is being deleted/m);

  // A service name is one line: no control characters that would break the text apart.
  assert.throws(() => loadConfig(CALLBACK_CONFIG, { ...good, INSTAGRAM_SERVICE_NAME: "a\nb" }), ConfigError);
});
