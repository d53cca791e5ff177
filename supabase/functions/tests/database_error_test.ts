// toAppError, the mapping from PostgREST's answer to what the doctor sees: by SQLSTATE, not by the HTTP
// status PostgREST chose for it (its table answers a read-only database's 25006 with 405 and a shutting
// down server's 57P01 with 500). The statuses below are the ones scripts/lib/rest_gateway.ts's copy of
// that table gives, so each case is what a real Data API would answer.
import assert from "node:assert/strict";
import { DATABASE_RETRY_AFTER_SECONDS, toAppError } from "../_shared/database.ts";
import { httpStatusFor } from "../../../scripts/lib/rest_gateway.ts";

const mapped = (code: string | undefined, status?: number, extra: Record<string, string> = {}) =>
  toAppError({ code, message: "m", ...extra }, status ?? httpStatusFor(code ?? "", "service_role"));

Deno.test("SQLSTATEs that mean the database cannot write or answer now: 503 database_unavailable", () => {
  const cases: [string, number][] = [
    ["25006", 405], // read_only_sql_transaction: Supabase's read-only mode, a standby
    ["53000", 503],
    ["53100", 503], // disk_full
    ["53200", 503], // out_of_memory
    ["53300", 503], // too_many_connections
    ["57014", 500], // statement_timeout
    ["57P01", 500], // admin_shutdown
    ["57P02", 500], // crash_shutdown
    ["57P03", 500], // cannot_connect_now
    ["08000", 503],
    ["08006", 503], // connection_failure
    ["08P01", 503], // protocol_violation: any 08xxx
  ];
  for (const [code, status] of cases) {
    assert.equal(httpStatusFor(code, "service_role"), status, `PostgREST answers ${code} with ${status}`);
    const error = mapped(code);
    assert.equal(error.code, "database_unavailable", code);
    assert.equal(error.status, 503, code);
    assert.equal(error.retryAfterSeconds, DATABASE_RETRY_AFTER_SECONDS, `${code}: Retry-After`);
  }
});

Deno.test("no answer from the database: PostgREST's connection codes, a proxy's 5xx, our own timeout", () => {
  for (const [code, status] of [["PGRST000", 503], ["PGRST001", 503], ["PGRST002", 503], ["PGRST003", 504]]) {
    assert.equal(mapped(code as string, status as number).code, "database_unavailable", code as string);
  }
  // A body without a SQLSTATE: what answered was not the database (a gateway in front, or nothing).
  for (const status of [0, 502, 503, 504, 520]) {
    assert.equal(toAppError({ message: "upstream" }, status).code, "database_unavailable", `${status}`);
    assert.equal(toAppError({ code: "", message: "" }, status).code, "database_unavailable", `'' ${status}`);
  }
});

Deno.test("a SQLSTATE that is a bug stays 500 internal_error, whatever status it came with", () => {
  for (
    const code of [
      "XX000",
      "42P17",
      "42883",
      "42703",
      "22023",
      "53400",
      "54001",
      "P0001",
      "PGRST202",
    ]
  ) {
    const error = mapped(code);
    assert.equal(error.code, "internal_error", code);
    assert.equal(error.retryAfterSeconds, undefined, code);
  }
  // The old rule (any status >= 500 meant unavailable) would have called these unavailable.
  assert.equal(httpStatusFor("XX000", "service_role"), 500);
  assert.equal(toAppError({ code: "XX000", message: "m" }, 503).code, "internal_error");
});

Deno.test("our own PTxyz codes and the deleted user keep their meaning", () => {
  const limited = mapped("PT429", undefined, { details: "too_many_requests", hint: "37" });
  assert.equal(limited.code, "too_many_requests");
  assert.equal(limited.retryAfterSeconds, 37);
  const conflict = mapped("PT409", undefined, {
    details: "page_already_linked",
    message: "Page X is linked",
  });
  assert.equal(conflict.code, "page_already_linked");
  assert.equal(conflict.message, "Page X is linked");
  assert.equal(mapped("PT404", undefined, { details: "not_connected" }).code, "not_connected");
  assert.equal(mapped("23503").code, "unauthorized");
  // A PTxyz whose DETAIL is not a catalogue code is a bug in our SQL.
  assert.equal(mapped("PT400", undefined, { details: "no_such_code" }).code, "internal_error");
});
