// The local router (`deno task dev`, the tests' stack: scripts/lib/local_stack.ts's proxyToFunction)
// streams a request body to the function as it arrives, instead of reading it whole first: the client
// sends its second chunk only once the function has the first, and the body arrives intact. How far the
// function lags behind is not asserted: it depends on socket buffers and CPU share (up to ~95 MiB seen
// on a busy 2-core machine), not on the router.
import assert from "node:assert/strict";
import { proxyToFunction } from "../../../scripts/lib/local_stack.ts";
import type { FunctionProcess } from "../../../scripts/lib/function_process.ts";

// Each byte is its offset modulo 251 (a prime), so a lost, repeated or reordered chunk shows; a chunk is
// a whole number of periods, so every chunk is the same bytes.
const PERIOD = 251;
const CHUNK = PERIOD * 4096; // about 1 MiB
const CHUNKS = 16; // about 16 MiB, sent one chunk at a time once the function has the first

interface Received {
  bytes: number;
  mismatches: number;
  contentLength: string | null;
  transferEncoding: string | null;
}

/** A stand-in for a function process: checks the body byte by byte as it reads it, keeping none of it. */
function startFunction() {
  let firstChunk!: () => void;
  const sawFirstChunk = new Promise<void>((resolve) => (firstChunk = resolve));
  let bytes = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    let mismatches = 0;
    for await (const chunk of request.body!) {
      if (bytes === 0) firstChunk();
      for (let i = 0; i < chunk.length; i++) if (chunk[i] !== (bytes + i) % PERIOD) mismatches++;
      bytes += chunk.length;
    }
    const received: Received = {
      bytes,
      mismatches,
      contentLength: request.headers.get("content-length"),
      transferEncoding: request.headers.get("transfer-encoding"),
    };
    return Response.json(received);
  });
  const fn = { name: "echo", url: `http://127.0.0.1:${server.addr.port}` } as FunctionProcess;
  return { fn, server, sawFirstChunk, received: () => bytes };
}

function startRouter(functions: FunctionProcess[]) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    const url = new URL(request.url);
    return await proxyToFunction(request, url, functions) ?? new Response("Not found", { status: 404 });
  });
}

function pattern(): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(CHUNK);
  for (let i = 0; i < CHUNK; i++) bytes[i] = i % PERIOD;
  return bytes;
}

Deno.test("the router streams a request body: the function reads it while the client still sends", async () => {
  const target = startFunction();
  const router = startRouter([target.fn]);
  try {
    const chunk = pattern();
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (sent === 1) {
          // A router that reads the whole body first would forward nothing until the client finished.
          const timeout = new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error("the function never saw the first chunk: buffered")), 10_000)
          );
          await Promise.race([target.sawFirstChunk, timeout]);
        }
        if (sent === CHUNKS) return controller.close();
        controller.enqueue(chunk.slice());
        sent++;
      },
    }, { highWaterMark: 0 });
    const response = await fetch(`http://127.0.0.1:${router.addr.port}/functions/v1/echo/upload`, {
      method: "POST",
      body,
    });
    const received: Received = await response.json();
    assert.equal(response.status, 200);
    assert.equal(received.bytes, CHUNK * CHUNKS, "every byte arrived");
    assert.equal(received.mismatches, 0, "in order, none altered");
    assert.equal(received.transferEncoding, "chunked", "streamed on, not counted first");
  } finally {
    await router.shutdown();
    await target.server.shutdown();
  }
});

Deno.test("a body with a Content-Length goes through whole, with its length", async () => {
  const target = startFunction();
  const router = startRouter([target.fn]);
  try {
    const response = await fetch(`http://127.0.0.1:${router.addr.port}/functions/v1/echo`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: pattern(),
    });
    const received: Received = await response.json();
    assert.deepEqual(received, {
      bytes: CHUNK,
      mismatches: 0,
      contentLength: String(CHUNK),
      transferEncoding: null,
    });
  } finally {
    await router.shutdown();
    await target.server.shutdown();
  }
});
