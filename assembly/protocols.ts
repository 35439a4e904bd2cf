// The built-in protocols. Each registers its hooks (reactor/protocol.ts) at
// init under its PROTO_* id (abi.ts, the id a listener serves): adding a
// protocol is one line here.
import { PROTO_ECHO, PROTO_HTTP, PROTO_PROXY_TCP, PROTO_PROXY_HTTP, PROTO_PROXY_PROBE, PROTO_METRICS, PROTO_STREAM } from "./abi";
import { protocolRegister } from "./reactor/protocol";
import { echoProtocol } from "./proto/echo";
import { httpProtocol } from "./proto/http";
import { proxyTcpProtocol } from "./proxy/tcp";
import { proxyHttpProtocol } from "./proxy/http";
import { healthProtocol } from "./proxy/health";
import { streamProtocol } from "./reactor/stream";
import { metricsProtocol } from "./proto/metrics";

export function protocolsInit(): void {
  protocolRegister(PROTO_ECHO, echoProtocol());
  protocolRegister(PROTO_HTTP, httpProtocol());
  protocolRegister(PROTO_PROXY_TCP, proxyTcpProtocol());
  // after tcp: it owns OP_SOCKET / OP_CONNECT and routes tcp mode's back to it
  protocolRegister(PROTO_PROXY_HTTP, proxyHttpProtocol());
  // After the proxies: it reads their upstream table and takes OP_SOCKET /
  // OP_CONNECT over, handing theirs back (proxy/health.ts).
  protocolRegister(PROTO_PROXY_PROBE, healthProtocol());
  // JS's stream connections (Reactor.adopt)
  protocolRegister(PROTO_STREAM, streamProtocol());
  // Last: it sizes its snapshots by the upstream table the proxies loaded.
  protocolRegister(PROTO_METRICS, metricsProtocol());
}
