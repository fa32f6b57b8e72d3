// An authenticated agent turned hostile, against a real `warren relay` process: a raw WebSocket
// with a valid agent token completes the HELLO, then sends floods, credit violations and
// oversized frames. Each attack must end that one session with GOAWAY carrying its code, after
// processing no more frames than the session's budget allows (the relay's defaults: PING 20/s
// burst 100, idle frames 500/s burst 2000, refused streams 200/s burst 1000), while another
// tenant's preview, served by a real `warren agent` process, keeps answering.
//
// Counting what the relay processed: it answers every PING it reads with a PONG and reads nothing
// after the violation, so PINGs woven into a flood (one per group of frames) count the groups it
// got through. Refused OPENs are counted directly by the RSTs that answer them.
import t, { type Test } from 'tap';
import { ERRORS, FrameType, encodeDataHeader, encodeOpen, encodeWindow, writeHeader, type ErrorCode } from '../../protocol/index.js';
import { WINDOW_FRAMES_PER_DATA_FRAME } from '../../protocol/stream.js';
import { makeTestIdentity } from '../helpers/identity.js';
import { startTestApp } from '../helpers/apps.js';
import { previewRequest, startAgentProcess, startRelayProcess, TEST_DOMAIN } from '../helpers/cluster.js';
import { pingFrame, rawHandshake, type RawPeer } from '../helpers/raw-peer.js';

const id = await makeTestIdentity();
t.teardown(() => id.remove());
const relay = await startRelayProcess(id);
t.teardown(() => relay.proc.stop('SIGKILL'));
const app = await startTestApp();
t.teardown(() => app.close());
const tenant = await startAgentProcess(id, relay, id.token('agent', 'tenant', [app.port]), ['--port', String(app.port)]);
t.teardown(() => tenant.stop());
const tenantHost = `${app.port}-tenant.${TEST_DOMAIN}`;

/** The relay's default budgets (protocol/config.ts), which the CLI does not change. */
const PING = { perSecond: 20, burst: 100 };
const IDLE = { perSecond: 500, burst: 2000 };
const RESET = { perSecond: 200, burst: 1000 };

/**
 * The most frames a budget lets through while an attack lasted `ms` (measured by the attacker
 * from its first byte to the GOAWAY, so longer than the relay's own processing): the burst, what
 * refilled meanwhile, and the frame that found the bucket empty.
 */
function allowance(rate: { perSecond: number; burst: number }, ms: number): number {
  return rate.burst + Math.ceil((rate.perSecond * ms) / 1000) + 1;
}
/** The port the hostile agent claims; nothing needs to listen there, it answers streams itself. */
const HOSTILE_PORT = 9;

let attackers = 0;

/** A hostile agent: a raw peer that completed the HELLO with a valid agent token for a fresh tunnel. */
async function hostileAgent(): Promise<{ peer: RawPeer; tunnel: string }> {
  const tunnel = `hostile-${++attackers}`;
  const peer = await rawHandshake(`${relay.url}/v1/agent`, id.caPem, id.token('agent', tunnel, [HOSTILE_PORT]), { ports: [{ port: HOSTILE_PORT }] });
  t.teardown(() => peer.close());
  return { peer, tunnel };
}

/**
 * Makes the relay open a stream to the hostile agent: a preview request for its tunnel. Resolves
 * with the stream id once the relay's OPEN (and the request head in DATA) arrived; the request
 * itself settles whenever the session ends.
 */
async function liveStream(peer: RawPeer, tunnel: string): Promise<number> {
  previewRequest(relay, `${HOSTILE_PORT}-${tunnel}.${TEST_DOMAIN}`, '/').catch(() => undefined);
  await peer.waitFor(() => peer.count(FrameType.DATA) > 0, "the relay's OPEN and request head");
  const open = peer.frames.find((f) => f.type === FrameType.OPEN)!;
  return open.streamId;
}

/** Asserts the GOAWAY code, that the relay closed the WebSocket, and that the other tenant still answers. */
async function endsWith(t: Test, peer: RawPeer, code: ErrorCode, started = performance.now()): Promise<number> {
  const goAway = await peer.goAway();
  const ms = performance.now() - started;
  t.equal(goAway.code, ERRORS[code].wire, `GOAWAY carries ${code} (got ${goAway.code}: ${goAway.message})`);
  await peer.whenClosed();
  t.equal(peer.frames.at(-1)?.type, FrameType.GOAWAY, 'nothing follows the GOAWAY');
  const res = await previewRequest(relay, tenantHost, '/');
  t.equal(res.status, 200, "another tenant's preview still answers");
  return ms;
}

/** `groups` groups of `perGroup` frames made by `frame`, each group preceded by a numbered PING. */
function withPings(groups: number, perGroup: number, frame: (i: number) => Buffer): Buffer {
  const out: Buffer[] = [];
  for (let g = 0; g < groups; g++) {
    out.push(pingFrame(g));
    for (let i = 0; i < perGroup; i++) out.push(frame(g * perGroup + i));
  }
  return Buffer.concat(out);
}

/**
 * Asserts that the idle budget stopped a flood sampled with one PING per `per` frames: at least
 * the burst got through (a peer within budget is never cut short) and at most the allowance plus
 * the group in which it ran out (and `earned` frames the relay's own DATA paid for).
 */
function idleWithin(t: Test, peer: RawPeer, per: number, ms: number, what: string, earned = 0): void {
  const groups = pongsBeforeGoAway(peer);
  const most = allowance(IDLE, ms) + earned + per;
  t.ok(groups * per >= IDLE.burst, `the first ${IDLE.burst} ${what} frames were all processed (${groups} groups of ${per})`);
  t.ok(groups * per <= most, `at most ${groups * per} of 4000 ${what} frames processed (burst ${IDLE.burst}, at most ${most} in ${ms.toFixed(0)} ms)`);
}

/** PONGs the relay sent before its GOAWAY. */
function pongsBeforeGoAway(peer: RawPeer): number {
  return peer.count(FrameType.PONG, peer.indexOf(FrameType.GOAWAY));
}

t.test('a PING flood ends the session with ERR_WARREN_FLOOD after answering the burst', async (t) => {
  const { peer } = await hostileAgent();
  // The other tenant is asked while the flood is processed, not only after it.
  const during = previewRequest(relay, tenantHost, '/');
  const started = performance.now();
  peer.send(Buffer.concat(Array.from({ length: 5_000 }, (_, i) => pingFrame(i))));
  const ms = await endsWith(t, peer, 'ERR_WARREN_FLOOD', started);
  const answered = pongsBeforeGoAway(peer);
  t.ok(answered >= PING.burst && answered <= allowance(PING, ms), `${answered} of 5000 PINGs answered (burst ${PING.burst}, at most ${allowance(PING, ms)} in ${ms.toFixed(0)} ms)`);
  t.equal((await during).status, 200, 'a preview of another tenant sent during the flood answers');
});

t.test('an empty-DATA flood on a live stream ends with ERR_WARREN_FLOOD within the idle burst', async (t) => {
  const { peer, tunnel } = await hostileAgent();
  const stream = await liveStream(peer, tunnel);
  const PER = 50;
  const started = performance.now();
  peer.send(withPings(80, PER, () => encodeDataHeader(stream, 0)));
  const ms = await endsWith(t, peer, 'ERR_WARREN_FLOOD', started);
  idleWithin(t, peer, PER, ms, 'empty DATA');
});

t.test('a WINDOW flood on a live stream ends with ERR_WARREN_FLOOD within the idle burst', async (t) => {
  // WINDOW(1) frames are each valid, but a peer may only return credit for data it was sent:
  // the relay sent one DATA frame (the request head), so nearly all of these carry nothing.
  const { peer, tunnel } = await hostileAgent();
  const stream = await liveStream(peer, tunnel);
  const PER = 50;
  const started = performance.now();
  peer.send(withPings(80, PER, () => encodeWindow(stream, 1)));
  const ms = await endsWith(t, peer, 'ERR_WARREN_FLOOD', started);
  idleWithin(t, peer, PER, ms, 'WINDOW', WINDOW_FRAMES_PER_DATA_FRAME);
});

t.test('a WINDOW flood on a closed stream ends with ERR_WARREN_FLOOD within the idle burst', async (t) => {
  const { peer } = await hostileAgent();
  // An OPEN from the agent is refused (agents serve streams, they do not open them): stream 1 is closed.
  peer.send(encodeOpen(1, 80, Buffer.alloc(0)));
  await peer.waitFor(() => peer.count(FrameType.RST) === 1, 'the RST refusing stream 1');
  const PER = 50;
  const started = performance.now();
  peer.send(withPings(80, PER, () => encodeWindow(1, 1)));
  const ms = await endsWith(t, peer, 'ERR_WARREN_FLOOD', started);
  idleWithin(t, peer, PER, ms, 'WINDOW');
});

t.test('a flood of refused OPENs ends with ERR_WARREN_FLOOD after the reset burst', async (t) => {
  const { peer } = await hostileAgent();
  const started = performance.now();
  peer.send(Buffer.concat(Array.from({ length: 3_000 }, (_, i) => encodeOpen(2 * i + 1, 80, Buffer.alloc(0)))));
  const ms = await endsWith(t, peer, 'ERR_WARREN_FLOOD', started);
  const refused = peer.count(FrameType.RST, peer.indexOf(FrameType.GOAWAY));
  const most = allowance(RESET, ms);
  t.ok(refused >= RESET.burst && refused <= most, `${refused} of 3000 OPENs refused with RST before the GOAWAY (burst ${RESET.burst}, at most ${most} in ${ms.toFixed(0)} ms)`);
});

t.test('a WINDOW that lifts the credit past 2^31-1 ends with ERR_WARREN_FLOW_CONTROL', async (t) => {
  const { peer, tunnel } = await hostileAgent();
  const stream = await liveStream(peer, tunnel);
  peer.send(encodeWindow(stream, 0x7fff_ffff));
  await endsWith(t, peer, 'ERR_WARREN_FLOW_CONTROL');
});

t.test('DATA beyond the credit window ends with ERR_WARREN_FLOW_CONTROL', async (t) => {
  const { peer, tunnel } = await hostileAgent();
  const stream = await liveStream(peer, tunnel);
  // A valid HTTP answer (so the relay keeps reading), filling the relay's 256 KiB window exactly, then one byte more.
  const window = 256 * 1024;
  const head = Buffer.from('HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n');
  const first = Buffer.concat([head, Buffer.alloc(window - head.length, 0x61)]);
  peer.send(encodeDataHeader(stream, first.length), first, encodeDataHeader(stream, 1), Buffer.from('b'));
  await endsWith(t, peer, 'ERR_WARREN_FLOW_CONTROL');
});

t.test('a frame over the maximum size ends with ERR_WARREN_FRAME_TOO_LARGE before its payload is read', async (t) => {
  const { peer } = await hostileAgent();
  peer.send(encodeDataHeader(1, 256 * 1024 + 1)); // the header alone: the size is checked first
  await endsWith(t, peer, 'ERR_WARREN_FRAME_TOO_LARGE');
  const { peer: other } = await hostileAgent();
  const extension = Buffer.alloc(12);
  writeHeader(extension, 0, 0x80 as FrameType, 0, 16 * 1024 * 1024);
  other.send(extension); // an extension type is skipped, but not at any size
  await endsWith(t, other, 'ERR_WARREN_FRAME_TOO_LARGE');
});

t.test('OPEN metadata over the maximum ends with ERR_WARREN_METADATA_TOO_LARGE', async (t) => {
  const { peer } = await hostileAgent();
  const metadata = Buffer.from(JSON.stringify({ pad: 'x'.repeat(4100) }));
  peer.send(encodeOpen(1, 80, metadata));
  await endsWith(t, peer, 'ERR_WARREN_METADATA_TOO_LARGE');
});

t.test('after every attack the relay process runs on and serves the other tenant', async (t) => {
  const results = await Promise.all(Array.from({ length: 20 }, (_, i) => previewRequest(relay, tenantHost, `/after/${i}`)));
  t.equal(results.filter((r) => r.status === 200).length, 20, '20 of 20 requests to the other tenant answer 200');
  t.equal(relay.proc.child.exitCode, null, 'the relay process is running');
});
