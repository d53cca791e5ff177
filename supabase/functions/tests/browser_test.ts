// The demo dashboard in headless Chromium, as a doctor uses it: sign in, Connect Instagram, Allow on
// the Meta sandbox, land back connected, Disconnect; then Cancel; then a Page another doctor holds.
// Each step checks what the page shows and what the database holds. `deno task test` installs
// Chromium when it is missing and passes its path in CHROMIUM_PATH.
import assert from "node:assert/strict";
import postgres from "postgres";
import { type Browser, chromium, type Page } from "playwright-core";
import {
  DEMO_DOCTORS,
  DEMO_PAGES,
  type DevStack,
  SEEDED_PAGE_TOKEN,
  startDevStack,
} from "../../../scripts/lib/dev_stack.ts";
import { ERRORS } from "../_shared/errors.ts";
import { decodeBase64 } from "../_shared/config.ts";
import { decryptPageToken, importTokenKey } from "../_shared/token_crypto.ts";
import { auditOf, databaseUrl, linkOf, stackTest } from "./_support.ts";

const CHROMIUM_PATH = Deno.env.get("CHROMIUM_PATH") ?? "/usr/bin/chromium";
// Chromium's own traffic (updates, sync, safe browsing) would try to leave the machine.
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

Deno.test("demo dashboard in Chromium", stackTest, async (t) => {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const dev = await startDevStack({ databaseUrl });
  let browser: Browser | undefined;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true });
    const page = await browser.newPage();
    const requested = new Set<string>();
    page.on("request", (request) => requested.add(new URL(request.url()).hostname));
    const pageErrors: string[] = [];
    page.on("pageerror", (error) => pageErrors.push(error.message));

    const demo = DEMO_DOCTORS.demo;
    const other = DEMO_DOCTORS.other;
    const tokenKey = await importTokenKey(decodeBase64(dev.stack.env.INSTAGRAM_TOKEN_ENCRYPTION_KEY)!);
    const text = (selector: string) => page.locator(selector).innerText();
    // The audit log is append-only and outlives the demo doctors: count only this run's entries.
    const auditBefore = (await auditOf(sql, demo.id)).length;
    const demoAudit = async () => (await auditOf(sql, demo.id)).slice(auditBefore);

    await t.step("signed in as Dr. Demo, nothing is connected yet", async () => {
      await page.goto(dev.dashboardUrl);
      await page.click("#sign-in-demo");
      await page.locator("#who", { hasText: "Signed in as Dr. Demo" }).waitFor();
      await page.locator("#status", { hasText: "No Instagram account connected." }).waitFor();
      assert.equal(await page.locator("#disconnect").isDisabled(), true);
    });

    await t.step("Connect, Allow on the sandbox: back on the dashboard, connected", async () => {
      await page.click("#connect");
      await page.waitForURL(`${dev.stack.meta.url}/**`);
      assert.match(await page.locator(".banner").innerText(), /LOCAL META SANDBOX/);
      assert.equal(await page.locator('input[name="user"][value="demo"]').isChecked(), true);

      await page.click("#allow");
      await backOnDashboard(page, dev.dashboardUrl);
      await page.locator("#linked-username").waitFor();
      assert.equal(await text("#message"), "Instagram connected.");
      assert.equal(await text("#linked-username"), `@${DEMO_PAGES.sunrise.instagram.username}`);
      assert.equal(await text("#linked-page"), DEMO_PAGES.sunrise.name);
      assert.equal(await page.locator("#disconnect").isEnabled(), true);
      // The query (connected=1) was shown, then dropped from the address bar.
      assert.equal(new URL(page.url()).search, "");

      const link = await linkOf(sql, demo.id);
      assert.equal(link.instagram_page_id, DEMO_PAGES.sunrise.id);
      assert.equal(link.instagram_username, DEMO_PAGES.sunrise.instagram.username);
      const issued = dev.stack.meta.pageTokens.get(DEMO_PAGES.sunrise.id)!;
      assert.equal(
        await decryptPageToken(tokenKey, link.instagram_access_token, {
          doctorId: demo.id,
          pageId: DEMO_PAGES.sunrise.id,
        }),
        issued.at(-1),
      );
      assert.deepEqual((await demoAudit()).map((entry) => entry.action), ["instagram.connected"]);
    });

    await t.step("the dashboard never receives the token", async () => {
      const html = await page.content();
      const issued = dev.stack.meta.pageTokens.get(DEMO_PAGES.sunrise.id)!.at(-1)!;
      assert.equal(html.includes(issued), false);
      assert.equal(html.includes((await linkOf(sql, demo.id)).instagram_access_token), false);
    });

    await t.step("Disconnect: the link is gone from the page and the database, and audited", async () => {
      await page.click("#disconnect");
      await page.locator("#message", { hasText: "Instagram disconnected." }).waitFor();
      await page.locator("#status", { hasText: "No Instagram account connected." }).waitFor();
      assert.equal(await linkOf(sql, demo.id), undefined);
      const audit = await demoAudit();
      assert.deepEqual(audit.map((entry) => entry.action), ["instagram.connected", "instagram.disconnected"]);
      assert.equal(audit[1].actor_id, demo.id);
    });

    await t.step("Cancel on the sandbox: back with the cancellation explained, nothing written", async () => {
      await connectAs(page, dev, "#cancel");
      await expectError(page, "access_denied");
      assert.equal(await linkOf(sql, demo.id), undefined);
      assert.equal((await demoAudit()).length, 2);
    });

    await t.step(
      "a Page Dr. Other holds: the conflict explained, nothing written or taken over",
      async () => {
        const stateCount = async () =>
          (await sql`select count(*)::int as n from private.oauth_states where doctor_id = ${demo.id} and consumed_at is null`)[
            0
          ].n;
        const openStates = await stateCount();
        await connectAs(page, dev, "#allow", "lakeside_admin");
        await expectError(page, "page_already_linked");
        assert.match(await text("#message"), /already linked to another doctor/);

        assert.equal(await linkOf(sql, demo.id), undefined);
        assert.equal((await demoAudit()).length, 2);
        // The refused link consumed nothing: the state it carried is still open.
        assert.equal(await stateCount(), openStates + 1);
        const kept = await linkOf(sql, other.id);
        assert.equal(kept.instagram_page_id, DEMO_PAGES.lakeside.id);
        assert.equal(
          await decryptPageToken(tokenKey, kept.instagram_access_token, {
            doctorId: other.id,
            pageId: DEMO_PAGES.lakeside.id,
          }),
          SEEDED_PAGE_TOKEN,
        );
      },
    );

    await t.step("Dr. Other sees only their own link, read through RLS", async () => {
      await page.click("#sign-in-other");
      await page.locator("#who", { hasText: "Signed in as Dr. Other" }).waitFor();
      await page.locator("#linked-username").waitFor();
      assert.equal(await text("#linked-username"), `@${DEMO_PAGES.lakeside.instagram.username}`);
      assert.equal(await text("#linked-page"), DEMO_PAGES.lakeside.name);
    });

    await t.step("no script error, and the browser never left loopback", () => {
      assert.deepEqual(pageErrors, []);
      assert.deepEqual([...requested].filter((host) => host !== "127.0.0.1"), []);
    });
  } finally {
    await browser?.close();
    await dev.stop();
    await sql`delete from auth.users where id in ${
      sql(Object.values(DEMO_DOCTORS).map((doctor) => doctor.id))
    }`;
    await sql.end();
  }
});

/** Connect Instagram, then press `button` on the sandbox, as `sandboxUser` when given. */
async function connectAs(page: Page, dev: DevStack, button: "#allow" | "#cancel", sandboxUser?: string) {
  await page.click("#connect");
  await page.waitForURL(`${dev.stack.meta.url}/**`);
  if (sandboxUser) await page.check(`input[name="user"][value="${sandboxUser}"]`);
  await page.click(button);
  await backOnDashboard(page, dev.dashboardUrl);
}

/** Meta redirects to the callback, which redirects to the dashboard (with ?connected=…). */
async function backOnDashboard(page: Page, dashboardUrl: string) {
  await page.waitForURL((url) => url.href.startsWith(dashboardUrl));
}

async function expectError(page: Page, code: keyof typeof ERRORS) {
  const message = page.locator(`#message[data-code="${code}"]`);
  await message.waitFor();
  assert.equal(await message.innerText(), ERRORS[code][1]);
  assert.equal(await message.getAttribute("class"), "error");
}
