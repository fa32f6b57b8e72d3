/**
 * The part of the `ssh2` package (pure-JS SSH, a devDependency) that bench/run-ssh2.ts uses; the
 * package ships no type declarations.
 */
declare module 'ssh2' {
  import type { EventEmitter } from 'node:events';
  import type { Duplex } from 'node:stream';

  interface Algorithms {
    cipher?: string[];
  }
  interface ServerConnection extends EventEmitter {
    forwardOut(boundAddr: string, boundPort: number, remoteAddr: string, remotePort: number, cb: (err: Error | undefined, channel: Duplex) => void): void;
    setNoDelay(noDelay: boolean): void;
    end(): void;
  }
  interface ServerConfig {
    hostKeys: string[];
    algorithms?: Algorithms;
  }
  class Server extends EventEmitter {
    constructor(config: ServerConfig, onConnection: (client: ServerConnection) => void);
    listen(port: number, host: string, cb: () => void): void;
    address(): { port: number };
    close(): void;
  }
  interface ConnectConfig {
    host: string;
    port: number;
    username: string;
    algorithms?: Algorithms;
    hostVerifier?: () => boolean;
    readyTimeout?: number;
  }
  interface TcpConnectionInfo {
    destIP: string;
    destPort: number;
  }
  class Client extends EventEmitter {
    connect(config: ConnectConfig): this;
    setNoDelay(noDelay: boolean): void;
    forwardIn(addr: string, port: number, cb: (err: Error | undefined, port: number) => void): void;
    end(): void;
  }
  const utils: { generateKeyPairSync(type: 'ed25519'): { private: string; public: string } };
  export { Client, Server, utils };
  export type { TcpConnectionInfo };
}
