/**
 * The identity a private preview's app receives: `X-Warren-Viewer-Token`, a short-lived JWT the
 * relay signs for each forwarded request, so the app can check who is viewing without trusting
 * the network between it and the relay, and without seeing the viewer's own token.
 *
 * Header `{"alg":"EdDSA","typ":"JWT","kid":<RFC 7638 thumbprint>}`; claims:
 *   iss  the relay's issuer name (RelayOptions.viewerTokenIssuer, default "warren-relay")
 *   aud  the preview host name, lower case, without port ("3000-ab12cd.preview.example.dev")
 *   sub  the viewer (viewer claim of the viewer token, else its jti, else its sub)
 *   iat  now; exp at most VIEWER_TOKEN_TTL_SECONDS later (never after the viewer's session)
 *
 * The public key is served as a JWK Set at JWKS_PATH on the relay's own host. The signing key is
 * made when the relay starts unless one is given (a fleet shares one, or publishes every relay's
 * key in one set).
 */
import { createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { InvalidArgumentError } from '../../protocol/errors.js';
import { jwkThumbprint } from '../../certs/keys.js';

/** Where the relay serves its viewer-token keys (GET on the relay's own host). */
export const JWKS_PATH = '/.well-known/warren/jwks.json';

/** Longest life of a relay-signed viewer token, in seconds. */
export const VIEWER_TOKEN_TTL_SECONDS = 300;

/** Default `iss` of relay-signed viewer tokens. */
export const DEFAULT_VIEWER_TOKEN_ISSUER = 'warren-relay';

/** Signs the identity tokens apps receive, and publishes the key that checks them. */
export class ViewerTokenSigner {
  /** Static after construction. */
  readonly kid: string;
  readonly issuer: string;
  private readonly key: KeyObject;
  private readonly jwks: Buffer;

  /** `key` is an Ed25519 private key; default a fresh one. */
  constructor(options: { key?: KeyObject; issuer?: string } = {}) {
    const key = options.key ?? generateKeyPairSync('ed25519').privateKey;
    if (key.type !== 'private' || key.asymmetricKeyType !== 'ed25519') throw new InvalidArgumentError('viewerTokenKey: not an Ed25519 private key');
    const issuer = options.issuer ?? DEFAULT_VIEWER_TOKEN_ISSUER;
    if (typeof issuer !== 'string' || issuer.length === 0 || issuer.length > 256) throw new InvalidArgumentError('viewerTokenIssuer: not a string of 1-256 characters');
    this.key = key;
    this.issuer = issuer;
    this.kid = jwkThumbprint(key);
    const { x } = createPublicKey(key).export({ format: 'jwk' });
    this.jwks = Buffer.from(`${JSON.stringify({ keys: [{ kty: 'OKP', crv: 'Ed25519', x, kid: this.kid, alg: 'EdDSA', use: 'sig' }] })}\n`);
  }

  /** The JWK Set (JSON bytes) with the public key. */
  jwksJson(): Buffer {
    return this.jwks;
  }

  /**
   * A token for `viewer` on preview host `host`, valid from `nowSeconds` for
   * VIEWER_TOKEN_TTL_SECONDS or until `notAfter` (seconds), whichever is first.
   */
  sign(host: string, viewer: string, nowSeconds: number, notAfter = Infinity): string {
    const iat = Math.floor(nowSeconds);
    const exp = Math.max(iat + 1, Math.min(iat + VIEWER_TOKEN_TTL_SECONDS, Math.floor(notAfter)));
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: this.kid })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ iss: this.issuer, aud: host, sub: viewer, iat, exp })).toString('base64url');
    const input = `${header}.${payload}`;
    return `${input}.${sign(null, Buffer.from(input, 'latin1'), this.key).toString('base64url')}`;
  }
}
