/**
 * The Warren wire protocol: frame codec, handshake messages, the stream multiplexer and its
 * transports. No sockets are opened and no policy is decided here.
 */
export * from './errors.js';
export * from './frame.js';
export { FrameDecoder, decodeMetadata, type DecoderLimits, type FrameSink } from './decode.js';
export * from './encode.js';
export { DEFAULT_SESSION_CONFIG, verifySessionConfig, type Rate, type SessionConfig, type SessionOptions } from './config.js';
export { MAX_HELLO_TOKEN_CHARS, parseClientHello, parseServerHello, type ClientHello, type ServerHello, type HelloLimits } from './handshake.js';
export { TokenBucket } from './flood-budget.js';
export { MuxStream } from './stream.js';
export { Session, type GoAwayInfo } from './session.js';
export { connectSession, acceptSession, type Authenticate, type ConnectSessionOptions } from './session-handshake.js';
export { socketTransport, webSocketTransport, WS_MAX_MESSAGE_BYTES, type Transport, type TransportHandlers } from './transport.js';
