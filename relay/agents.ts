/**
 * The agent endpoint (`/v1/agent`): verifies the agent's token before any tunnel state exists,
 * checks that every port the agent asks to expose is allowed by the token, registers the tunnel
 * (replacing an older agent of the same tunnel) and answers with the preview URLs.
 */
import { z } from 'zod';
import { once } from 'node:events';
import { ConnectionError, WarrenError, type ClientHello, type Session } from '../protocol/index.js';
import { verifyFor, type TokenPolicy } from '../certs/token.js';
import type { ExposedPort, TunnelRegistry } from './registry.js';
import type { TcpEndpoints } from './tcp-endpoints.js';

/** Largest number of ports one agent may expose. */
export const MAX_PORTS_PER_AGENT = 64;

const agentAppSchema = z.object({
  ports: z
    .array(
      z.object({
        port: z.int().min(1).max(65535),
        private: z.boolean().default(false),
        tcp: z.boolean().default(false),
        allow: z.array(z.string().max(64)).max(32).default([]),
      }),
    )
    .min(1)
    .max(MAX_PORTS_PER_AGENT),
});

/** The agent's HELLO `app` fields, validated. */
export type AgentRequest = z.infer<typeof agentAppSchema>;

/** Parses the agent's requested ports; ERR_WARREN_HANDSHAKE when malformed. */
export function parseAgentRequest(app: Record<string, unknown>): AgentRequest {
  const result = agentAppSchema.safeParse(app);
  if (!result.success) {
    throw new WarrenError('ERR_WARREN_HANDSHAKE', `bad agent HELLO: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  const seen = new Set<number>();
  for (const p of result.data.ports) {
    if (seen.has(p.port)) throw new WarrenError('ERR_WARREN_HANDSHAKE', `port ${p.port} is listed twice`);
    seen.add(p.port);
  }
  return result.data;
}

/** What the relay tells a connected agent. */
export interface AgentWelcome extends Record<string, unknown> {
  tunnel: string;
  previews: { port: number; url: string; private: boolean }[];
  tcp: { port: number; endpoint: string }[];
}

/** What the agent endpoint needs from the relay. */
export interface AgentEndpointContext {
  policy: TokenPolicy;
  registry: TunnelRegistry;
  previewUrl(tunnelId: string, port: number): string;
  /** Raw TCP endpoints, when the relay has a port range. */
  tcp?: TcpEndpoints;
}

/**
 * Authenticates an agent's HELLO and registers its tunnel. Throws a WarrenError (sent to the
 * agent as GOAWAY) when the token or the request is refused; nothing is registered then.
 */
export async function acceptAgent(ctx: AgentEndpointContext, hello: ClientHello, session: Session): Promise<AgentWelcome> {
  const claims = verifyFor(ctx.policy, hello.token, ['agent']);
  const request = parseAgentRequest(hello.app);
  const allowed = new Set(claims.ports);
  const privateByToken = new Set(claims.private ?? []);
  for (const p of request.ports) {
    if (!allowed.has(p.port)) {
      throw new WarrenError('ERR_WARREN_FORBIDDEN', `the agent token allows ports ${[...allowed].join(', ')}, not ${p.port}`);
    }
  }
  // map(), not push(): an array grown by push keeps room for 16 more elements for the session's life.
  const ports = request.ports.map((p): ExposedPort => ({ port: p.port, private: p.private || privateByToken.has(p.port) }));
  const tcpRequests = request.ports.filter((p) => p.tcp);
  let tcp = new Map<number, string>();
  if (tcpRequests.length > 0) {
    if (!ctx.tcp) throw new WarrenError('ERR_WARREN_TCP_PORTS_EXHAUSTED', 'this relay offers no raw TCP endpoints (it runs without --tcp-ports)');
    const closed = once(session, 'close');
    tcp = await ctx.tcp.allocate(
      claims.sub,
      closed,
      tcpRequests.map((p) => ({ port: p.port, allow: p.allow })),
    );
    // The agent may have gone while ports were being bound: register nothing for a dead session.
    if (session.closed) throw new ConnectionError('ERR_WARREN_SESSION_CLOSED', 'the agent left during the handshake');
    for (const p of ports) {
      const endpoint = tcp.get(p.port);
      if (endpoint !== undefined) p.tcpEndpoint = endpoint;
    }
  }
  ctx.registry.register({
    tunnelId: claims.sub,
    session,
    ports,
    jti: claims.jti,
    connectedAtMs: Date.now(),
    remoteAddress: session.transport.remoteAddress,
  });
  return {
    tunnel: claims.sub,
    previews: ports.map((p) => ({ port: p.port, url: ctx.previewUrl(claims.sub, p.port), private: p.private })),
    tcp: [...tcp].map(([port, endpoint]) => ({ port, endpoint })),
  };
}
