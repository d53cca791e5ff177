// INSTAGRAM_DOCTOR_CLAIM gates linking, not disconnect: a doctor whose claim is taken away (left the
// practice, role changed) can still remove their own Instagram link:
// otherwise the Page would keep its token in the project and go on delivering their messages.
import assert from "node:assert/strict";
import { link, linkOf, newDoctor, stackTest, withStack } from "./_support.ts";

Deno.test("a doctor whose claim was removed can still disconnect their own link", stackTest, async () => {
  await withStack({ env: { INSTAGRAM_DOCTOR_CLAIM: "app_metadata.role=doctor" } }, async (stack, sql) => {
    const doctor = await newDoctor(stack, sql);
    const asDoctor = await stack.jwt.sign({ sub: doctor.id, app_metadata: { role: "doctor" } });
    const { userId } = stack.meta.newUser(1);
    assert.equal((await link(stack, asDoctor, userId)).finished.status, 200);

    // The practice removes the role; the next session token no longer carries it.
    const afterRemoval = await stack.jwt.sign({ sub: doctor.id, app_metadata: {} });
    const response = await fetch(stack.functionUrl("instagram-connect"), {
      method: "DELETE",
      headers: { authorization: `Bearer ${afterRemoval}` },
    });
    const body = await response.json();
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(await linkOf(sql, doctor.id), undefined, "the link (and its Page token) is gone");
  });
});
