/**
 * The client endpoint (`/v1/connect`): a client token names one tunnel and the ports it may
 * reach. The handshake refuses a token for another tunnel or a port it does not grant, so the
 * agent is never asked to dial; each stream is then checked again and joined to a new stream on
 * the agent's session.
 */
import { z } from 'zod';
import { ProtocolError, TokenBucket, WarrenError, type ClientHello, type ErrorCode, type MuxStream, type Session } from '../protocol/index.js';
import type { WarrenClaims } from '../certs/token.js';
import { verifyFor, type TokenPolicy } from '../certs/token.js';
import type { Router } from './router.js';
import { joinStreams } from '../transport/join.js';

const clientAppSchema = z.object({
  tunnel: z.string().max(64).optional(),
  ports: z.array(z.int().min(1).max(65535)).max(64).default([]),
});

/** What the relay tells a connected client. */
export interface ClientWelcome extends Record<string, unknown> {
  tunnel: string;
  ports: number[];
  /** Whether the tunnel's agent is connected right now. */
  online: boolean;
}

/**
 * Verifies a client's HELLO; throws the refusal (sent as GOAWAY) without touching any tunnel.
 * `online` tells whether the tunnel can be reached now, for the welcome.
 */
export function acceptClient(policy: TokenPolicy, online: (tunnelId: string) => boolean, hello: ClientHello): { claims: WarrenClaims; welcome: ClientWelcome } {
  const claims = verifyFor(policy, hello.token, ['client']);
  const parsed = clientAppSchema.safeParse(hello.app);
  if (!parsed.success) throw new WarrenError('ERR_WARREN_HANDSHAKE', `bad client HELLO: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const app = parsed.data;
  if (app.tunnel !== undefined && app.tunnel !== claims.sub) {
    throw new WarrenError('ERR_WARREN_FORBIDDEN', `the client token is for tunnel ${claims.sub}, not ${app.tunnel}`);
  }
  const allowed = new Set(claims.ports);
  const denied = app.ports.filter((p) => !allowed.has(p));
  if (denied.length > 0) throw new WarrenError('ERR_WARREN_FORBIDDEN', `the client token allows ports ${claims.ports.join(', ')}, not ${denied.join(', ')}`);
  return { claims, welcome: { tunnel: claims.sub, ports: [...claims.ports], online: online(claims.sub) } };
}

/** Serves a client session: every stream is checked against the token and joined to a stream the router opens. */
export function serveClientSession(session: Session, claims: WarrenClaims, router: Router, remoteAddress: string | undefined): void {
  const allowed = new Set(claims.ports);
  // Refusing a stream costs the relay a stream and an RST, answered even when the client reads
  // nothing: refusals spend the session's reset budget, as the protocol's own refusals do.
  const refusals = new TokenBucket(session.config.resetRate, session.config.now);
  const refuse = (stream: MuxStream, code: ErrorCode, message: string): void => {
    stream.reset(code, message);
    if (!refusals.take()) session.fail(new ProtocolError('ERR_WARREN_FLOOD', 'too many refused streams (ports the token does not allow, or a tunnel that is not connected)'));
  };
  session.on('stream', (stream: MuxStream) => {
    stream.on('error', ignoreStreamError);
    if (!allowed.has(stream.port)) return refuse(stream, 'ERR_WARREN_FORBIDDEN', `the client token does not allow port ${stream.port}`);
    let upstream: MuxStream;
    try {
      upstream = router.open({ tunnelId: claims.sub, port: stream.port, kind: 'client', clientAddress: remoteAddress ?? '' });
    } catch (err) {
      const e = err instanceof WarrenError ? err : new WarrenError('ERR_WARREN_INTERNAL', String(err));
      return refuse(stream, e.code, e.message);
    }
    stream.accept();
    // An error on either side destroys the other with it: its code travels on as RST.
    joinStreams(stream, upstream);
  });
}

/** A failed stream ends alone; its error already went to the other side as RST. One function for every stream. */
function ignoreStreamError(): void {}
