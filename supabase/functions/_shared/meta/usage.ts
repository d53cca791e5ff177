// How close the app is to Meta's rate limits, from the usage headers Graph sends with its answers
// ("Rate Limits": "Real time rate limit usage statistics are described in headers that are included with
// most API responses once enough calls have been made to an endpoint"). Each figure is a percentage of
// the allowance; whichever is highest is the one that throttles first, so a caller that wants to stop
// early (instagram-maintenance stops past 75%) needs only that one number.
//   X-App-Usage                {"call_count":28,"total_cputime":25,"total_time":25}          ("Rate Limits",
//                              Platform Rate Limits: calls with an app or user token)
//   X-Business-Use-Case-Usage  {"<business-object-id>":[{"type":"pages","call_count":..,"total_cputime":..,
//                              "total_time":..,"estimated_time_to_regain_access":..}]}        ("Rate Limits",
//                              Business Use Case Rate Limits: calls with a Page or system user token)
//   X-Page-Usage               the same three figures as X-App-Usage: Page-level limits ("Improving Rate
//                              Limits for Page Management Apps", 2016); that it still comes with today's
//                              answers is a guess (restfb and other clients still read it).
// estimated_time_to_regain_access is minutes, not a percentage: error_class.ts reads it for Retry-After.
// Figures sometimes come as numeric strings (observed by clients that parse them, e.g. "call_count":"30"),
// so those count too; anything unparsable is skipped rather than trusted.

const FIGURES = ["call_count", "total_cputime", "total_time"] as const;

/** The highest usage percentage in Meta's usage headers, or undefined when none carries a figure. */
export function highestUsagePercent(headers: Headers): number | undefined {
  const figures = [
    ...figuresOf(parse(headers.get("x-app-usage"))),
    ...figuresOf(parse(headers.get("x-page-usage"))),
    ...businessFigures(parse(headers.get("x-business-use-case-usage"))),
  ];
  return figures.length ? Math.max(...figures) : undefined;
}

function parse(value: string | null): unknown {
  if (!value) return undefined;
  try {
    return JSON.parse(value);
  } catch {
    return undefined;
  }
}

/** X-Business-Use-Case-Usage: every business object's list of use cases, each with the three figures. */
function businessFigures(value: unknown): number[] {
  if (!isObject(value)) return [];
  return Object.values(value).flatMap((useCases) =>
    Array.isArray(useCases) ? useCases.flatMap((useCase) => figuresOf(useCase)) : []
  );
}

function figuresOf(value: unknown): number[] {
  if (!isObject(value)) return [];
  return FIGURES.map((name) => percentage(value[name])).filter((figure) => figure !== undefined);
}

function percentage(value: unknown): number | undefined {
  const number = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof number === "number" && Number.isFinite(number) && number >= 0 ? number : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
