// The fake Meta's login dialog: a clearly marked sandbox consent page (choose a sandbox user, untick a
// permission to decline it, Allow or Cancel) and what a browser does with it, for tests and the load
// generator.
export interface ConsentUser {
  id: string;
  pages: { name: string; instagram?: { username: string } }[];
}

// A permission declined earlier is not asked again without auth_type=rerequest: the fake enforces that
// when it records the decision, whatever the boxes say.
export function consentPage(url: URL, users: ConsentUser[]): string {
  const hidden = [...url.searchParams].map(([name, value]) =>
    `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`
  ).join("");
  const options = users.filter((user) => user.pages.length).map((user) =>
    `<label><input type="radio" name="user" value="${escapeHtml(user.id)}" ${
      user.id === "demo" ? "checked" : ""
    }> ${escapeHtml(user.id)}: ${
      user.pages.map((page) =>
        escapeHtml(`${page.name}${page.instagram ? ` (@${page.instagram.username})` : ""}`)
      )
        .join(", ")
    }</label>`
  ).join("<br>");
  const scopes = (url.searchParams.get("scope") ?? "").split(",").filter(Boolean).map((scope) =>
    `<label><input type="checkbox" name="grant" value="${escapeHtml(scope)}" checked> ${
      escapeHtml(scope)
    }</label>`
  ).join("<br>");
  return `<!doctype html><html><head><meta charset="utf-8"><title>Meta sandbox – not Facebook</title>
<style>body{font-family:system-ui;max-width:40rem;margin:3rem auto}.banner{background:#fde68a;padding:.75rem;border-radius:.5rem}
button{font-size:1rem;padding:.5rem 1.25rem;margin-right:.5rem}</style></head><body>
<p class="banner"><strong>LOCAL META SANDBOX</strong> – a fake of Facebook Login for development. No data leaves this machine.</p>
<h1>Connect your Pages?</h1>
<p>App <code>${escapeHtml(url.searchParams.get("client_id") ?? "")}</code> asks for:</p>
<form method="post" action="${escapeHtml(url.pathname)}/decision">${hidden}
<fieldset><legend>Permissions (untick to decline)</legend><input type="hidden" name="scopes_listed" value="1">${
    scopes || "(Login for Business configuration)"
  }</fieldset>
<fieldset><legend>Sign in to the sandbox as</legend>${options}</fieldset><p>
<button name="decision" value="allow" id="allow">Allow</button>
<button name="decision" value="cancel" id="cancel">Cancel</button></p></form></body></html>`;
}

/**
 * What a browser does on the sandbox's consent page: loads the dialog, submits the decision, and
 * returns where Meta redirects to. Needs only the dialog URL, so a load generator in a Worker can use it.
 * `form.declined` (comma-separated) declines those permissions.
 */
export async function decideDialog(dialogUrl: string, form: Record<string, string>): Promise<string> {
  const dialog = new URL(dialogUrl);
  const page = await fetch(dialog);
  if (!page.ok) throw new Error(`dialog refused: ${page.status} ${await page.text()}`);
  await page.body?.cancel();
  const response = await fetch(`${dialog.origin}${dialog.pathname}/decision`, {
    method: "POST",
    body: new URLSearchParams({ ...Object.fromEntries(dialog.searchParams), ...form }),
    redirect: "manual",
  });
  await response.body?.cancel();
  const location = response.headers.get("location");
  if (response.status !== 302 || !location) throw new Error(`dialog decision failed: ${response.status}`);
  return location;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
