// Stands in for Supabase Auth's token signing: an ES256 key pair made at start, its public half
// published as a JWKS (what SUPABASE_JWKS holds on the platform), and tokens shaped like Auth's.
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";

export interface JwtIssuer {
  jwks: { keys: JWK[] };
  /** A session token for a user, as Supabase Auth would issue it. */
  sign(claims: Record<string, unknown>, options?: { expiresIn?: string | number }): Promise<string>;
}

export async function createJwtIssuer(kid = `test-${crypto.randomUUID().slice(0, 8)}`): Promise<JwtIssuer> {
  const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg: "ES256", use: "sig" };
  return {
    jwks: { keys: [jwk] },
    sign: (claims, options = {}) =>
      new SignJWT({ role: "authenticated", aud: "authenticated", ...claims })
        .setProtectedHeader({ alg: "ES256", kid, typ: "JWT" })
        .setIssuedAt()
        .setExpirationTime(options.expiresIn ?? "1h")
        .sign(privateKey),
  };
}
