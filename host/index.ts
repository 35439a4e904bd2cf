// wasm-reactor: the package entry point.
export { Reactor, Connection, EventWatcher, WatchFlag, READABLE, WRITABLE, ERROR, HANGUP, EDGE } from "./reactor.ts";
export type { IoCallback, ErrorCallback, RegisterOptions, ReactorOptions, ConnectionHandlers, ConnectionOptions } from "./reactor.ts";
export { Loop, defaultMaxFds } from "./loop.ts";
export type { LoopOptions, LogLevel, FileOpener } from "./loop.ts";
export type { LogOptions, LogLevelName, LogFormat, LogFields } from "./log.ts";
// What the CLI checks at startup for --max-connections (the README's "Kernel tuning").
export { kernelLimitWarnings, fdsNeeded, workerShare, defaultConnectionCap } from "./limits.ts";
export type { KernelLimitOptions, LimitWarning, ConnectionBudget } from "./limits.ts";
export { Core, defaultCoreConfig, corePath } from "./core.ts";
export type { CoreConfig, CoreExports, CoreMemory, CoreModule } from "./core.ts";
export { createBackend, BACKEND_NAMES, backendName, defaultBackendName } from "./backend/index.ts";
export type { Backend, BackendName } from "./backend/index.ts";
export { EpollBackend } from "./backend/epoll.ts";
export { PollBackend } from "./backend/poll.ts";
export { Server } from "./server.ts";
export { Proxy, resolveUpstreams } from "./proxy.ts";
export type { ProxyOptions, Upstream, UpstreamStats as ProxyUpstreamStats } from "./proxy.ts";
// The I/O backend (what carries the core's requests out) and the io_uring ring driver.
export { IO_BACKEND_NAMES, ioBackendName, defaultIoBackendName } from "./io-backend.ts";
export type { IoBackendName } from "./io-backend.ts";
export { uringAvailability, resetUringAvailability, Ring, IORING_OP } from "./uring/ring.ts";
export type { UringAvailability, RingOptions } from "./uring/ring.ts";
export { UringExecutor } from "./executor-uring.ts";
export { LibcExecutor } from "./executor-libc.ts";
export type { ServerOptions, ShutdownResult, ShutdownOptions } from "./server.ts";
export { listenTcp, listenAll, resolveHost, HostError } from "./net.ts";
export type { Listener, ListenOptions } from "./net.ts";
export { RemoteLoop, QueueFullError } from "./remote.ts";
export type { RemoteDescriptor } from "./remote.ts";
export { libc, errno, SysError, describeErrno, errnoName } from "./libc.ts";
// Flag values for the documented bindings (pipe2, socketpair, eventfd, socket, accept4, open).
export {
  O_NONBLOCK, O_CLOEXEC, O_RDONLY, AF_UNIX, AF_INET, AF_INET6, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC,
  EFD_NONBLOCK, EFD_CLOEXEC,
} from "./libc.ts";
export * as abi from "../assembly/abi.ts";
// The upstream table of the proxy: policy names, its config record, its stats records.
export { BALANCE_POLICIES, parseBalancePolicy, writeBalanceConfig, defaultBalanceConfig, readUpstreamStats } from "./balance.ts";
export type { BalanceConfig, BalancePolicyName, UpstreamStats, UpstreamState, StatsExports } from "./balance.ts";
export { replay, replayCommand, describeTrap, RecordingError } from "./replay.ts";
export type { ReplayResult, ReplaySummary, ReplayOptions, ReplayTrap, Divergence, TextOut } from "./replay.ts";
export { readRecording } from "./recording.ts";
export type { Recording, RecordedCall, RecordedRequest, RecordedEvent, MemoryWrite } from "./recording.ts";
export { record, Recorder, MemorySink, sha256File, FORMAT_VERSION } from "./record.ts";
export { FileSink } from "./record-file.ts";
export type { Sink, RecordingHeader } from "./record.ts";
export {
  ParallelWriter, Producer, WriteError, WRITER_LAYOUTS, LibcCarrier, probeFileSystem, writerSizing, lustreStripeFromLayout,
  LUSTRE_SUPER_MAGIC, DEFAULT_STRIPE_SIZE,
} from "./writer/index.ts";
export type { ParallelWriterOptions, WriterDescriptor, WriterLayout, WriterStats, WriteCarrier, FileSystemInfo, WriterSizing } from "./writer/index.ts";
export { io, IoExecutor, IoStats, BackendUnavailableError } from "./io/index.ts";
export type { ExecutorOptions } from "./io/index.ts";
