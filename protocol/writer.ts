/**
 * The session's send scheduler. Control frames go out in the order queued (OPEN before a stream's
 * DATA, FIN after it); DATA is taken one frame per stream in turn, so one busy stream cannot
 * starve the others. Frames leave in batches, one transport write each (one syscall or one
 * WebSocket message for small frames), and at most `sendBufferBytes` may be in the transport at
 * once: beyond that, writers wait and their streams' write callbacks are held.
 *
 * When a batch leaves depends on what is in it. Bulk data (a stream with BULK_BYTES or more to
 * send) leaves at the end of the current tick, so each socket read on the other side becomes one
 * write here. Small frames (requests, replies, control frames) wait for the end of the event
 * loop's I/O phase (setImmediate), so that everything many connections sent in one poll, say a
 * busy preview's requests, leaves in one write rather than one per connection.
 */
import type { MuxStream } from './stream.js';
import type { Transport } from './transport.js';

/** A stream with this much to send makes its batch leave at the end of the tick. */
const BULK_BYTES = 16 * 1024;

/** A queued control frame; `after` runs once it is in the outgoing batch (marks OPEN/FIN as sent). */
interface Queued {
  buf: Buffer;
  after?: () => void;
}

/** What the writer asks of its session. */
export interface WriterOwner {
  /** Largest DATA payload the peer accepts. */
  readonly maxSendFrameBytes: number;
}

/** Batches frames into transport writes. Owned by one Session. */
export class FrameWriter {
  // Static after construction.
  private readonly transport: Transport;
  private readonly sendBufferBytes: number;
  private readonly owner: WriterOwner;

  // Owned by flush(). The queues are made when something is queued and dropped once flush()
  // empties them: an idle session keeps none (an emptied array keeps its backing store).
  private control: Queued[] | null = null;
  private ready: MuxStream[] | null = null;
  /** A flush is due at the end of the tick / after the I/O phase. */
  private tickScheduled = false;
  private immediateScheduled = false;
  private inflight = 0;
  private stopped = false;
  /** Total bytes handed to the transport. */
  bytesOut = 0;
  /** DATA frames handed to the transport. */
  dataFramesOut = 0;
  /** Calls to transport.write(). */
  transportWrites = 0;

  constructor(transport: Transport, sendBufferBytes: number, owner: WriterOwner) {
    this.transport = transport;
    this.sendBufferBytes = sendBufferBytes;
    this.owner = owner;
  }

  /** Queues a control frame; `after` runs when it joins an outgoing batch. */
  queue(buf: Buffer, after?: () => void): void {
    if (this.stopped) return;
    (this.control ??= []).push({ buf, after });
    this.schedule(false);
  }

  /** Queues a stream that has data and credit. */
  markReady(stream: MuxStream): void {
    if (this.stopped || stream.queued || !stream.sendable) return;
    stream.queued = true;
    (this.ready ??= []).push(stream);
    this.schedule(stream.bufferedSendBytes >= BULK_BYTES);
  }

  /** Bytes handed to the transport whose write has not completed. */
  get inflightBytes(): number {
    return this.inflight;
  }

  /** Stops sending: queued frames are dropped (the session is closing). */
  stop(): void {
    this.stopped = true;
    this.control = null;
    if (this.ready) for (const s of this.ready) s.queued = false;
    this.ready = null;
  }

  /** Writes what is queued right now, ahead of the next tick (used for the last GOAWAY). */
  flushNow(): void {
    this.flush();
  }

  private schedule(bulk: boolean): void {
    if (this.tickScheduled) return;
    if (bulk) {
      this.tickScheduled = true;
      process.nextTick(() => this.flush());
    } else if (!this.immediateScheduled) {
      this.immediateScheduled = true;
      setImmediate(() => {
        this.immediateScheduled = false;
        if (!this.tickScheduled) this.flush();
      });
    }
  }

  private flush(): void {
    this.tickScheduled = false;
    if (this.stopped) return;
    const out: Buffer[] = [];
    let bytes = 0;
    const max = this.owner.maxSendFrameBytes;
    for (;;) {
      // Control frames first, in order; an OPEN's `after` may make its stream ready.
      for (let q = this.control?.shift(); q; q = this.control?.shift()) {
        out.push(q.buf);
        bytes += q.buf.length;
        q.after?.();
      }
      if (this.inflight + bytes >= this.sendBufferBytes) break;
      const stream = this.ready?.shift();
      if (!stream) break;
      stream.queued = false;
      const frame = stream.takeFrame(max);
      if (frame) {
        out.push(frame[0]!, frame[1]!);
        bytes += frame[0]!.length + frame[1]!.length;
        this.dataFramesOut++;
      }
      // Round robin: a stream with more to send goes to the back of the line, once. takeFrame()
      // may already have put it there: completing its write lets the application write more.
      if (stream.sendable && !stream.queued) {
        stream.queued = true;
        (this.ready ??= []).push(stream);
      }
    }
    if (this.control?.length === 0) this.control = null;
    if (this.ready?.length === 0) this.ready = null;
    if (out.length === 0) return;
    this.inflight += bytes;
    this.bytesOut += bytes;
    this.transportWrites++;
    this.transport.write(out, () => {
      this.inflight -= bytes;
      // Streams held back by the send buffer: more of a bulk transfer, at once.
      if ((this.ready?.length ?? 0) > 0 && !this.stopped) this.schedule(true);
    });
  }
}
