// wasm-reactor: the package entry point.
export { Reactor, EventWatcher, WatchFlag, READABLE, WRITABLE, ERROR, HANGUP, EDGE } from "./reactor.ts";
export type { IoCallback, ErrorCallback, RegisterOptions, ReactorOptions } from "./reactor.ts";
export { Loop, defaultMaxFds } from "./loop.ts";
export type { LoopOptions, LogLevel, FileOpener } from "./loop.ts";
export { Core, defaultCoreConfig, corePath } from "./core.ts";
export type { CoreConfig, CoreExports } from "./core.ts";
export { Server } from "./server.ts";
export type { ServerOptions, ShutdownResult } from "./server.ts";
export { listenTcp } from "./net.ts";
export type { Listener, ListenOptions } from "./net.ts";
export { RemoteLoop, QueueFullError } from "./remote.ts";
export type { RemoteDescriptor } from "./remote.ts";
export { libc, errno, SysError, describeErrno, errnoName } from "./libc.ts";
export * as abi from "../assembly/abi.ts";
export { replay, replayCommand, RecordingError } from "./replay.ts";
export type { ReplaySummary, ReplayOptions } from "./replay.ts";
export { Recorder, FileSink, MemorySink, sha256File, FORMAT_VERSION } from "./record.ts";
