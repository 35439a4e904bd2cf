// ParallelWriter: coalesced positional writes from many producers (seed 004).
export { ParallelWriter, Producer, WriteError, WRITER_LAYOUTS } from "./parallel-writer.ts";
export type { ParallelWriterOptions, WriterDescriptor, WriterLayout, WriterStats } from "./parallel-writer.ts";
export { LibcCarrier } from "./carrier.ts";
export type { WriteCarrier } from "./carrier.ts";
export { probeFileSystem, writerSizing, lustreStripeFromLayout, LUSTRE_SUPER_MAGIC, DEFAULT_STRIPE_SIZE } from "./sizing.ts";
export type { FileSystemInfo, WriterSizing } from "./sizing.ts";
