// Graceful shutdown (beginShutdown) and closing everything (closeAll).
import { OP_STOP, STAT_LIVE_CONNS, C_STATE, C_PROTO, PROTO_METRICS } from "../abi";
import { ctlI32, submit, sqRoom, now, setCurrentFd } from "./ctl";
import { maxFds } from "./handlers";
import { cget, PROTO_LISTENER, draining, setDraining, connCloseSoon } from "./conn";
import { listenersStop } from "./listener";
import { timerAdd } from "./timers";
import { TimerKind } from "./timerkind";
import { protoDrain } from "./protocol";

// ---- graceful shutdown -----------------------------------------------------

let stopSent = false;

/**
 * Starts a graceful shutdown (nginx's "graceful quit"): stop accepting, close
 * idle connections now, let requests in progress finish (HTTP answers them
 * with `Connection: close`), and after `graceMs` close whatever is left. When
 * no connection remains the core emits OP_STOP and the host ends the loop.
 * Returns the number of connections still open.
 */
export function beginShutdown(graceMs: f64): i32 {
  if (!draining) {
    setDraining();
    listenersStop();
    for (let fd = 0; fd < maxFds; fd++) {
      if (cget(fd, C_STATE) == 0 || cget(fd, C_PROTO) == PROTO_LISTENER) continue;
      setCurrentFd(fd);
      protoDrain(cget(fd, C_PROTO), fd);
    }
    setCurrentFd(-1);
    timerAdd(now() + (graceMs > 0 ? graceMs : 0), 0, TimerKind.SHUTDOWN, 0);
  }
  return ctlI32(STAT_LIVE_CONNS);
}

/**
 * Closes every connection now (the host is closing the loop: nothing may
 * stay open behind it). The closes go out with the next flush(). Returns
 * how many connections there were.
 */
export function closeAll(): i32 {
  const n = ctlI32(STAT_LIVE_CONNS);
  closeAllConns(true);
  return n;
}

/** Closes every connection; the metrics listener's only when the loop closes (`metrics`). */
export function closeAllConns(metrics: bool = false): void {
  for (let fd = 0; fd < maxFds; fd++) {
    if (cget(fd, C_STATE) == 0 || cget(fd, C_PROTO) == PROTO_LISTENER) continue;
    if (!metrics && cget(fd, C_PROTO) == PROTO_METRICS) continue;
    connCloseSoon(fd);
  }
}

/** End of a graceful shutdown: the last connection is gone, tell the host (once). */
export function shutdownDone(): void {
  if (draining && !stopSent && ctlI32(STAT_LIVE_CONNS) == 0 && sqRoom() > 0) {
    stopSent = true;
    submit(OP_STOP, -1, 0, 0, 0, 0);
  }
}
