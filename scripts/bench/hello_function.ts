// The benchmark's yardstick for cold starts: the smallest function `deno serve` can start.
export default {
  fetch: () => new Response("Hello"),
};
