// One reactor in a worker_thread: the CLI's serving loop. The worker blocks
// in epoll_wait (run()); the main thread keeps its Node event loop for
// signals and reaches the worker through a RemoteLoop (shared-memory queue +
// eventfd), which wakes it even while it is blocked.
import { parentPort, workerData } from "node:worker_threads";
import { Server, type ServerOptions } from "./server.ts";
import { SysError } from "./libc.ts";
import { ParallelWriter, type WriterDescriptor } from "./writer/index.ts";
import { FileSink } from "./record-file.ts";
import { pinThread } from "./affinity.ts";
import type { LogFormat, LogLevelName } from "./log.ts";
import { MetricsBoard, type MetricsBoardDescriptor } from "./metrics.ts";

/**
 * What a worker is started with: its server's options, and the shared files
 * the main thread opened, which it joins as a producer: the access log (one
 * striped file for every worker) and its recording shard.
 */
export interface WorkerStart {
  options: ServerOptions;
  /** This worker's index (the `worker` of its JSON log lines). */
  worker: number;
  log: { format: LogFormat; level: LogLevelName };
  /** --cpu-affinity: the CPU this worker's thread is pinned to. */
  cpu?: number;
  accessLog?: WriterDescriptor;
  record?: { writer: WriterDescriptor; shard: number };
  /**
   * --metrics: every worker's slot of the board (host/metrics.ts). Worker 0
   * (its options carry `metrics`) serves /metrics and sums the others'
   * slots; the others publish into theirs at the end of every tick.
   */
  metrics?: { board: MetricsBoardDescriptor; index: number };
}
export type WorkerMessage =
  | { type: "listening"; port: number; hosts: string[]; somaxconn: number; metricsPort: number; remote: import("./remote.ts").RemoteDescriptor }
  | { type: "error"; message: string; code?: string }
  | { type: "stopped"; stats: ReturnType<Server["stats"]> };

const { options, accessLog, record, worker, log, cpu, metrics } = workerData as WorkerStart;
const board = metrics ? new MetricsBoard(metrics.board) : null;
const serving = board !== null && options.metrics !== undefined; // this worker serves /metrics
const post = (m: WorkerMessage) => parentPort!.postMessage(m);

let server: Server;
let pinned: { tid: number; cpus: number[] } | null = null;
try {
  // Pinned first: threads this one starts (the file pool's) inherit the mask.
  if (cpu !== undefined) pinned = pinThread(cpu);
  // The loop's default log: access lines to stdout, the rest to stderr, never blocking the loop.
  server = new Server({
    ...options,
    log: { ...log, worker },
    handleSignals: false, // the main thread owns signals
    ...(accessLog ? { accessLogFile: ParallelWriter.join(accessLog) } : {}),
    ...(record ? { record: new FileSink(ParallelWriter.join(record.writer, { shard: record.shard })) } : {}),
    ...(serving ? { metricsPeers: board.slots - 1, metricsGather: (addr: number, len: number) => board.gather(metrics!.index, server.reactor.loop.core, addr, len) } : {}),
  });
} catch (e) {
  post({ type: "error", message: (e as Error).message, code: e instanceof SysError ? e.code : undefined });
  process.exit(0);
}
if (pinned) {
  server.reactor.loop.log("info", `worker ${worker} pinned to CPU ${cpu} (tid ${pinned.tid})`, "cpu_affinity",
    { cpu: cpu!, tid: pinned.tid, cpus_allowed: pinned.cpus.join(",") });
}
server.reactor.defineTask("stop", () => server.stop());
server.reactor.defineTask("shutdown", (graceMs) => { void server.shutdown(Number(graceMs)); });
server.reactor.defineTask("unready", () => server.setReady(false));
const loop = server.reactor.loop;
if (serving) {
  // /metrics outlives this worker's drain: the main thread releases it once
  // every other worker has exited. Its service listeners close meanwhile.
  loop.holdAfterDrain = true;
  loop.onDrained = () => server.closeServiceListeners();
  server.reactor.defineTask("release", () => loop.release());
} else if (board !== null) {
  // A publish costs about a microsecond (the copy into shared memory is the
  // slow part): at most one per millisecond while busy, and always before
  // the loop may sleep, so nothing is older than 1 ms plus one tick.
  const core = loop.core, slot = metrics!.index;
  let last = 0, dirty = false;
  const publish = () => { board.publish(slot, core); last = performance.now(); dirty = false; };
  loop.afterTick = () => { dirty = true; if (performance.now() - last >= 1) publish(); };
  loop.beforeSleep = () => { if (dirty) publish(); };
  publish();
}
const remote = server.reactor.remote(16);
post({ type: "listening", port: server.port, hosts: server.listeners.map((l) => l.host), somaxconn: server.listener.somaxconn, metricsPort: server.metricsPort, remote });
server.run();
if (board !== null && !serving) board.publish(metrics!.index, loop.core); // the last word: connections closed
const stats = server.stats();
server.close();
post({ type: "stopped", stats });
