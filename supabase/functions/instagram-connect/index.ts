// instagram-connect: the signed-in doctor's side of the link (Authorization: Bearer <Supabase JWT>).
//   GET|POST /instagram-connect          start: Meta's login dialog URL (JSON, or 302 for navigations)
//   POST     /instagram-connect/finish   confirm a pending connection from the doctor's own session
//   DELETE   /instagram-connect          disconnect: unsubscribe, revoke the grant (Page links), delete
// hono/quick: the LinearRouter registers routes at once instead of compiling them on the first request.
// Few doctors link an account, so most requests meet a new instance: its first answer is what counts.
import { Hono } from "hono/quick";
import { cors } from "hono/cors";
import { AppError } from "../_shared/errors.ts";
import { requireDoctor } from "../_shared/http/doctor_auth.ts";
import { asAppError, jsonError } from "../_shared/http/error_response.ts";
import { onlyMethods } from "../_shared/http/methods.ts";
import { limitBody } from "../_shared/http/request_input.ts";
import { type AppEnv, requestContext } from "../_shared/http/request_context.ts";
import { serveConfigured } from "../_shared/http/serve_configured.ts";
import { CONNECT_CONFIG, connectDeps } from "./deps.ts";
import { disconnect } from "./disconnect.ts";
import { finishConnect } from "./finish.ts";
import { startConnect } from "./start.ts";

export default await serveConfigured(
  "instagram-connect",
  CONNECT_CONFIG,
  async (config) => {
    const deps = await connectDeps(config);
    const doctor = requireDoctor(config);

    const app = new Hono<AppEnv>({ strict: false }).basePath(
      "/instagram-connect",
    );
    app.use("*", requestContext("instagram-connect"));
    app.use(
      "*",
      cors({
        origin: [...config.cors.allowedOrigins],
        exposeHeaders: ["x-correlation-id", "retry-after"],
        maxAge: 600,
      }),
    );

    app.use("/", onlyMethods("GET", "POST", "DELETE"));
    app.on(["GET", "POST"], "/", limitBody, doctor, startConnect(deps));
    app.use("/finish", onlyMethods("POST"));
    app.post("/finish", limitBody, doctor, finishConnect(deps));
    // A former doctor (INSTAGRAM_DOCTOR_CLAIM no longer met) may still end their link.
    app.delete("/", requireDoctor(config, { claim: false }), disconnect(deps));

    app.notFound((c) => jsonError(c, asAppError(c, new AppError("not_found"))));
    app.onError((error, c) => jsonError(c, asAppError(c, error)));

    return app;
  },
);
