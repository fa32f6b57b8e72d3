/**
 * The shape of the whole-system bench's JSON (bench/run.ts writes it; the report, the charts and
 * `--render` read it back) and the sizes of one run. Types only, so that every part of the bench
 * imports them from here and nothing imports bench/run.ts.
 */
import type { HttpResult } from './run-http.js';
import type { Percentiles } from './run-measure.js';
import type { MuxSummary } from './run-mux.js';
import type { AnyPathName } from './run-paths.js';

/** Sizes of one run. */
export interface Settings {
  quick: boolean;
  bulkBytes: number;
  runs: number;
  streams: number[];
  pingPongCount: number;
  newStreamCount: number;
  httpSeconds: number;
  /** Runs of each HTTP case (interleaved with the other paths'); the median run is reported. */
  httpRuns: number;
  httpConnections: Record<'1k' | '1m', number>;
  memoryAgents: number;
  memoryStreams: number;
  scaleAgents: number;
  scaleRequested: number;
  /** Tunnel records the directory measure registers, and holders() calls it times. */
  directoryRecords: number;
  directoryCalls: number;
}

/** One bulk transfer in the JSON. */
export interface BulkRun {
  mbPerSec: number;
  seconds: number;
  bytes: number;
  /** CPU seconds used during the transfer by each process role of the path (descendants included). */
  cpuSeconds: Record<string, number>;
  /** The client (this process) and the app, for reference. */
  clientCpuSeconds: number;
  appCpuSeconds: number;
}

/** Per path results. */
export interface PathResult {
  name: AnyPathName;
  label: string;
  skipped?: string;
  /** By stream count: every run and the median run's figures. */
  bulk: Record<string, { runs: BulkRun[]; mbPerSec: number; cpuSecPerGiB: Record<string, number> & { total: number } }>;
  pingPongUs?: Percentiles;
  newStreamMs?: Percentiles;
}

/** One HTTP load run and the CPU it cost. */
export interface HttpRun {
  result: HttpResult;
  /** CPU seconds of the app and, through the preview, of the relay and the agent. */
  cpuSeconds: Record<string, number>;
  /** CPU milliseconds per request of every process but the app: relay and agent, and through the network the edge too (0 for direct). */
  pathCpuMsPerRequest: number;
}

/**
 * One HTTP case: the median run by requests/s (its figures at the top level) and, with more than
 * one run (--runs), every run. `other-preview` is the preview of the --compare build;
 * `preview-holder` and `preview-fwd` the preview of the relay network at the relay that holds the
 * agent and at the one that forwards to it (1 KiB only).
 */
export interface HttpCase extends HttpRun {
  path: 'direct' | 'warren-preview' | 'other-preview' | 'preview-holder' | 'preview-fwd';
  size: '1k' | '1m';
  runs?: HttpRun[];
}

/** The whole JSON. */
export interface Results {
  bench: 'run';
  date: string;
  host: string;
  machine: Record<string, unknown>;
  settings: Settings;
  /** The --compare build's CLI, when the run measured one beside this build. */
  compare?: { bin: string };
  paths: PathResult[];
  http?: { tool: string; cases: HttpCase[] };
  memory?: MemoryResult;
  scale?: ScaleResult;
  mux?: MuxSummary;
  /** The relay network's own measures (its paths are in `paths`, its previews in `http`). */
  network?: NetworkResult;
  errors: { part: string; message: string }[];
}

/** Figures of the memory part (bytes). */
export interface MemoryResult {
  /** Agents per measured batch, and batches (the per-agent figures are medians over the batches). */
  agents: number;
  agentBatches: number;
  streams: number;
  relay: { baseline: Snapshot; withAgents: Snapshot; beforeStreams: Snapshot; withStreams: Snapshot };
  relayPerAgentBytes: { rss: number; heap: number };
  relayPerStreamBytes: { rss: number; heap: number };
  bare: { baselineRss: number; withWssRss: number; withTlsRss: number; perWssBytes: number; perTlsBytes: number; perTlsBatchesBytes: number[] };
  /** Relay RSS per agent of each batch. */
  relayPerAgentBatchesBytes: number[];
  /** Relay RSS per agent above the bare server's RSS per raw TLS connection (the agents' transport: raw TLS by ALPN). */
  perAgentAboveBareTlsBytes: number;
}

/** Figures of the scale part. */
export interface ScaleResult {
  requested: number;
  agents: number;
  /** Why fewer agents than requested, when so. */
  capped?: string;
  connectSeconds: number;
  failed: number;
  firstError?: string;
  relay: { baseline: Snapshot; withAgents: Snapshot };
  rssPerAgentBytes: number;
  /** Relay CPU (percent of one core) with the agents connected and idle. */
  relayIdleCpuPercent: number;
  /** Relay RSS for 20,000 agents: measured when that many connected, else extrapolated linearly. */
  rssAt20kBytes: number;
  rssAt20kExtrapolated: boolean;
  busyTunnel: { idlePingPongUs: Percentiles; loadedPingPongUs: Percentiles; loadedNewStreamMs: Percentiles };
}

/** A relay's resident set size and V8 heap used, in bytes, at one moment. */
export interface Snapshot {
  rss: number;
  heapUsed: number;
}

/** The directory lookups of the relay network, on a NatsDirectory pair (bench/run-network.ts). */
export interface DirectoryResult {
  records: number;
  /** From the first register() until the store acknowledged every put. */
  registerSeconds: number;
  /** From the first register() until the other directory's cache held every record. */
  propagateSeconds: number;
  /** A third directory's start() (connect, buckets, initial values of both watches) with the records in the store. */
  coldLoadSeconds: number;
  /** holders() calls timed, on tunnels that are held (one record each) and on tunnels nobody holds. */
  calls: number;
  hitOpsPerSec: number;
  missOpsPerSec: number;
}

/** The relay network part: skipped (with why), or its directory measure. */
export interface NetworkResult {
  skipped?: string;
  directory?: DirectoryResult;
}
