// The libc executor: carries the core's requests out with one koffi call
// each (host/libc.ts), in SQ order, synchronously (see the contract in
// host/executor.ts). Host services go to the Services the Loop supplies;
// interest changes go to the event backend, at one call site.
//
// The hot path: SQE fields are read through the core's Int32Array as word
// indices (derived from abi.ts's byte offsets once, at load), results are
// written the same way; nothing is allocated per request.
import * as abi from "../assembly/abi.ts";
import type { Core } from "./core.ts";
import type { Executor, InterestBackend, Services } from "./executor.ts";
import { libc, errno, SOCK_NONBLOCK, SOCK_CLOEXEC } from "./libc.ts";

const SQE_WORDS = abi.SQE_SIZE >> 2;
const W_OP = abi.SQE_OP >> 2, W_FD = abi.SQE_FD >> 2;
const W_A0 = abi.SQE_A0 >> 2, W_A1 = abi.SQE_A1 >> 2, W_A2 = abi.SQE_A2 >> 2, W_A3 = abi.SQE_A3 >> 2;
const ACCEPT_FLAGS = SOCK_NONBLOCK | SOCK_CLOEXEC;

export class LibcExecutor implements Executor {
  constructor(private readonly core: Core, private readonly services: Services, private readonly backend: InterestBackend) {}

  submit(sq: number, cq: number, n: number): void {
    const core = this.core;
    const services = this.services;
    core.refresh();
    let i32 = core.i32;
    const base = core.base;
    let q = sq >> 2;
    const c = cq >> 2;
    for (let i = 0; i < n; i++, q += SQE_WORDS) {
      const op = i32[q + W_OP], fd = i32[q + W_FD], a0 = i32[q + W_A0], a1 = i32[q + W_A1], a2 = i32[q + W_A2];
      let r: number;
      switch (op) {
        case abi.OP_READ: r = libc.read(fd, base + a0, a1); break;
        case abi.OP_WRITE: r = libc.write(fd, base + a0, a1); break;
        case abi.OP_SEND: r = libc.send(fd, base + a0, a1, a2); break;
        case abi.OP_WRITEV: r = libc.writev(fd, base + a0, a1); break;
        case abi.OP_ACCEPT: r = a0 ? libc.accept4(fd, base + a0, base + a0 + abi.SA_LEN, ACCEPT_FLAGS) : libc.accept4(fd, 0, 0, ACCEPT_FLAGS); break;
        case abi.OP_SENDFILE: r = libc.sendfile(fd, a0, base + a1, a2); break;
        case abi.OP_CLOSE: r = libc.close(fd); break;
        case abi.OP_SHUTDOWN: r = libc.shutdown(fd, a0); break;
        case abi.OP_PREAD: r = libc.pread(fd, base + a0, a1, a2); break;
        // Answered by the backend and the services themselves: 0 / >= 0 or -errno.
        case abi.OP_CTL: i32[c + i] = this.backend.setInterest(fd, a0, a1, a2, i32[q + W_A3]); continue;
        case abi.OP_LOG: services.log(a2, a0, a1); i32[c + i] = 0; continue;
        case abi.OP_STOP: services.stop(); i32[c + i] = 0; continue;
        case abi.OP_CALL: r = services.call(a0, a1, fd, a2, i32[q + W_A3]); break;
        case abi.OP_OPEN: r = services.open(a0, a1, a2, i32[q + W_A3] === 1); break;
        case abi.OP_LIST: r = services.list(a0, a1, a2); break;
        default: i32[c + i] = 0; continue;
      }
      if (op === abi.OP_CALL || op === abi.OP_OPEN || op === abi.OP_LIST) {
        // JS ran (a callback, the file server): memory may have grown, views must follow.
        core.refresh();
        i32 = core.i32;
      } else if (r < 0) {
        r = -errno(); // read at once: koffi keeps the last call's
      }
      i32[c + i] = r;
    }
    services.roundDone();
  }
}
